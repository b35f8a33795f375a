"""Per-request checks of the python-backend model (pure: no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

from vedit.triton_repo.requests import BadRequest, decode_intents, output_rows


def _rows(*values) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.object_)


@pytest.mark.parametrize(
    "array, expected",
    [
        (_rows(b"golden hour"), ["golden hour"]),
        (_rows("golden hour".encode(), "😈".encode()), ["golden hour", "😈"]),
        (_rows(b"x" * 16), ["x" * 16]),                  # exactly the limit
        (_rows("é".encode() * 8), ["é" * 8]),              # 16 bytes, 8 characters
        (_rows(b" neon "), [" neon "]),                   # kept as sent: the runtime decides
    ],
)
def test_accepted(array, expected):
    assert decode_intents(array, max_bytes=16) == expected


@pytest.mark.parametrize(
    "array, message",
    [
        (None, "missing input INTENT"),
        (_rows(b""), "empty intent"),
        (_rows(b"  \n"), "empty intent"),
        (_rows(b"\xff\xfe"), "not valid UTF-8 (byte 0)"),
        (_rows(b"ok", b"ab\xc3"), "row 1: not valid UTF-8 (byte 2)"),
        (_rows(b"x" * 17), "17 bytes, over the limit of 16"),
        (_rows("é".encode() * 9), "18 bytes"),
        (np.array([[1]], dtype=np.int32), "must be BYTES"),
        (np.array([b"a", b"b"], dtype=np.object_), "shape [batch, 1], got [2]"),
        (np.array([[b"a", b"b"]], dtype=np.object_), "got [1, 2]"),
        (np.empty((0, 1), dtype=np.object_), "got [0, 1]"),
    ],
)
def test_refused(array, message):
    with pytest.raises(BadRequest) as exc:
        decode_intents(array, max_bytes=16)
    assert message in str(exc.value)


def test_output_rows_are_batch_by_one_utf8():
    out = output_rows(['{"a":1}', '{"name":"none","intensity":0}', "é"])
    assert out.shape == (3, 1) and out.dtype == np.object_
    assert [v.decode() for v in out[:, 0]] == ['{"a":1}', '{"name":"none","intensity":0}', "é"]
