"""Checking one Triton request's INTENT tensor and laying out its answers (pure, no Triton import).

The python-backend model (``model.py``) receives a list of requests per execution; each one is
checked here on its own, so a bad request gets its own error response and the rest of the batch
is still decoded. Triton itself already refuses a wrong datatype, a missing input and a shape that
contradicts ``dims: [1]``; the checks below repeat those (a model must not trust its caller) and add
what only the model can see: empty intents, bytes that are not UTF-8, oversized intents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vedit.intents import intent_problem


class BadRequest(ValueError):
    """One request cannot be answered; the message goes back to the client as is."""


def decode_intents(array: np.ndarray | None, *, max_bytes: int) -> list[str]:
    """The intents of one request (``[batch, 1]`` of bytes), or :class:`BadRequest`."""
    if array is None:
        raise BadRequest("missing input INTENT: send one UTF-8 intent per row, shape [batch, 1]")
    if array.dtype != np.object_ and array.dtype.kind not in ("S", "U"):
        raise BadRequest(f"INTENT must be BYTES (TYPE_STRING), got {array.dtype}")
    if array.ndim != 2 or array.shape[1] != 1 or array.shape[0] < 1:
        raise BadRequest(f"INTENT must have shape [batch, 1], got {list(array.shape)}")
    return [_decode_one(v, row, max_bytes) for row, v in enumerate(array[:, 0])]


def _decode_one(value: object, row: int, max_bytes: int) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, np.bytes_):
        value = bytes(value)
    elif not isinstance(value, bytes):
        raise BadRequest(f"INTENT row {row}: expected bytes, got {type(value).__name__}")
    problem = intent_problem(value, max_bytes)
    if problem is not None:
        raise BadRequest(f"INTENT row {row}: {problem}")
    return value.decode("utf-8")


def output_rows(texts: Sequence[str]) -> np.ndarray:
    """A ``[batch, 1]`` BYTES array of one tool's JSON texts, as Triton expects for TYPE_STRING."""
    out = np.empty((len(texts), 1), dtype=np.object_)
    for i, t in enumerate(texts):
        out[i, 0] = t.encode("utf-8")
    return out


def split_counts(counts: Sequence[int]) -> list[slice]:
    """Slices into the flattened intents of a batch, one per request (``counts`` rows each)."""
    slices, start = [], 0
    for n in counts:
        slices.append(slice(start, start + n))
        start += n
    return slices


__all__ = ["BadRequest", "decode_intents", "output_rows", "split_counts"]
