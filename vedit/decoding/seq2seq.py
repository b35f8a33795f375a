"""Encoder-decoder (T5) backend: encoder once, first-step decoder, then the with-past decoder.

Two ways to share decoder calls between rows (``Seq2SeqModel(join_rows=...)``):

Joined (the default; needs an export whose with-past decoder takes the decoder self-attention mask,
``attention_mask``, which vedit exports since manifest v2): every active row joins every call.
Rows feed runs of different lengths, right-padded with the pad token; after the call, each row's
cache is shifted so that its real tokens are contiguous and end at the last position, the holes
(padding) in front and masked in the next call. T5's relative position bias depends only on the
distance between query and key, so right-aligned real tokens see exactly the distances they would
see alone: the outputs equal step-by-step decoding of each row on its own. Within a call the
causal mask keeps real positions from seeing the padding that follows them. Columns that are holes
in every row are cut off. Calls per request = the longest row's model decisions.

Grouped (``join_rows=False``, the previous scheduler, kept to measure against): rows share a call
only when their caches have the same length (no holes ever, an all-ones mask), shorter runs
right-padded and the padding cut from the returned cache; the scheduler feeds the rows with the
shortest cache, so the number of calls is the number of distinct cache lengths at which some row
needs the model.

Everything is driven by the names the sessions declare (``get_inputs()``), so an export that also
wants ``encoder_hidden_states`` in the with-past decoder is served too.

Where the caches live (see :mod:`vedit.decoding.session`): with IO binding (on CUDA), the decoder's
``present`` outputs stay on the device and are bound as the next call's ``past`` inputs as long as
they need no rearranging. Joined: the caches never leave the device. After a call with runs of
different lengths (or when rows finish) a tiny gather graph (:class:`AlignRows`) shifts the rows,
drops finished ones and cuts common holes where the cache is: one device-side copy of the self cache
per such call, and a small int64 index uploaded; without IO binding numpy does the same on the host
arrays, in place when only shifts are needed. Grouped: rows that are fed together again with exact
caches keep them on the device; a new group gets its caches assembled on the host and uploaded once.
The cross-attention cache is computed once by the first decoder call and is re-sliced only when rows
finish (joined, on the device) or regroup (grouped, on the host). Only the logits come back to the
host on every call, one position per row: exports of this vedit compute them there only (the
decoders' ``last_index`` input, fed by :class:`~vedit.decoding.session.Session`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from vedit.decoding.loop import pad_runs, positions
from vedit.decoding.session import Session, op_session
from vedit.errors import ModelDirError

#: the with-past decoder's decoder self-attention mask (optimum's name in a decoder file)
SELF_MASK = "attention_mask"


class Seq2SeqModel:
    """The three sessions of an encoder-decoder export."""

    def __init__(self, export_dir: Path, files: dict[str, str], *, providers=None, threads=None,
                 decoder_start_token_id: int = 0, pad_token_id: int = 0, allow_cpu_fallback: bool = False,
                 io_binding: bool | None = None, join_rows: bool | None = None):
        """``join_rows``: every active row joins every decoder call (default: whenever the export's
        with-past decoder takes the self-attention mask); ``False`` keeps the grouped scheduler."""
        kw = dict(providers=providers, threads=threads, allow_cpu_fallback=allow_cpu_fallback, io_binding=io_binding)
        self.encoder = Session(export_dir / files.get("encoder", "encoder_model.onnx"), **kw)
        self.decoder = Session(export_dir / files.get("decoder", "decoder_model.onnx"), **kw)
        self.decoder_with_past = Session(
            export_dir / files.get("decoder_with_past", "decoder_with_past_model.onnx"), **kw
        )
        self.start_id = decoder_start_token_id
        self.pad_id = pad_token_id
        self.self_names = [n for n in self.decoder.output_names if n.startswith("present.") and ".decoder." in n]
        self.cross_names = [n for n in self.decoder.output_names if n.startswith("present.") and ".encoder." in n]
        self.masked = SELF_MASK in self.decoder_with_past.inputs
        if join_rows and not self.masked:
            raise ModelDirError(f"{export_dir}: the with-past decoder takes no decoder attention mask, so rows cannot "
                                "join one call; export the model again with this vedit (or pass join_rows=False)")
        self.join_rows = self.masked if join_rows is None else bool(join_rows)
        self._aligners: dict[str, AlignRows] = {}

    def aligner(self, value: Any) -> AlignRows:
        """The :class:`AlignRows` for a cache value of the with-past decoder (by its float type)."""
        dtype = np.dtype(np.float16) if "float16" in value.data_type() else np.dtype(np.float32)
        if dtype.name not in self._aligners:
            s = self.decoder_with_past
            opts = s.session.get_provider_options()
            self._aligners[dtype.name] = AlignRows(dtype, s.device, s.device_id, [(p, opts.get(p, {})) for p in s.providers])
        return self._aligners[dtype.name]

    @property
    def providers(self) -> list[str]:
        return self.encoder.session.get_providers()

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray, *, keep: bool = False):
        """Encoder states (a device value with ``keep`` and IO binding, else a numpy array)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.encoder.run(feeds, keep=("last_hidden_state",) if keep else ())["last_hidden_state"]

    def backend(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> "JoinedSeq2SeqBackend | Seq2SeqBackend":
        cls = JoinedSeq2SeqBackend if self.join_rows else Seq2SeqBackend
        return cls(self, input_ids, attention_mask)


class AlignRows:
    """Rearrange a batched self-attention cache where it is (on the device with IO binding): keep
    some rows, right-align each one's real positions, cut to a width.

    The graph (``ops/align_rows_<dtype>.onnx``: Reshape, Gather, Reshape) is built and checked by
    tests/decoding/test_align_rows.py; the runtime needs no ``onnx`` package to use it. Only a small
    int64 index goes up per call; the cache never leaves the device.
    """

    def __init__(self, dtype: np.dtype, device: str, device_id: int, providers: Sequence):
        self.dtype = np.dtype(dtype)
        self.device, self.device_id = device, device_id
        self.session = op_session("align_rows", self.dtype, providers)
        self._index: tuple[Any, np.ndarray | None] = (None, None)

    def __call__(self, cache: Any, rows: Sequence[int], ends: Sequence[int], lengths: Sequence[int], width: int) -> Any:
        """(len(rows), heads, width, dim): row ``rows[i]``'s positions ``ends[i] - lengths[i]`` to
        ``ends[i]`` at the end; the positions in front repeat a real value (masked, finite)."""
        b, h, t, d = cache.shape() if isinstance(cache, ort.OrtValue) else cache.shape
        key = (h, t, tuple(rows), tuple(ends), tuple(lengths), width)
        if self._index[0] != key:  # every layer's key and value of one call share it
            src, n = np.asarray(rows, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
            start = np.asarray(ends, dtype=np.int64) - n
            pos = start[:, None] + np.maximum(np.arange(width)[None, :] - (width - n)[:, None], 0)
            self._index = (key, ((src[:, None, None] * h + np.arange(h)[None, :, None]) * t + pos[:, None, :]).reshape(-1))
        index = self._index[1]
        binding = self.session.io_binding()
        if isinstance(cache, ort.OrtValue):
            binding.bind_ortvalue_input("cache", cache)
        else:
            binding.bind_cpu_input("cache", np.ascontiguousarray(cache))
        binding.bind_cpu_input("flat_shape", np.array([-1, d], dtype=np.int64))
        binding.bind_cpu_input("index", index)
        binding.bind_cpu_input("shape", np.array([len(rows), h, width, d], dtype=np.int64))
        binding.bind_output("aligned", self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0]


@lru_cache(maxsize=None)
def _past(name: str) -> str:
    """The past input fed by a present output (asked for every cache tensor of every call: cached)."""
    return "past_key_values." + name[len("present.") :]


class _Caches:
    """The cache tensors one decoder call returned for its rows (batched, device or host).

    Rows point here (with their batch index) until they are fed again; per-row host slices are
    made only when a row has to join a different group, from one host copy per tensor.
    """

    __slots__ = ("values", "_host")

    def __init__(self, values: dict):
        self.values = values
        self._host: dict[str, np.ndarray] = {}

    def row(self, session: Session, name: str, index: int, length: int | None) -> np.ndarray:
        if name not in self._host:
            self._host[name] = session.to_host(self.values[name])
        a = self._host[name][index : index + 1]
        return a if length is None else a[:, :, :length]


class _Encoded:
    """What both schedulers start from: one batch of prompts through the encoder (its states kept
    on the device with IO binding), and the rows' encoder states for a decoder call."""

    def __init__(self, model: Seq2SeqModel, input_ids: np.ndarray, attention_mask: np.ndarray):
        self.m = model
        self.enc_mask = attention_mask.astype(np.int64)
        self.hidden = model.encode(input_ids.astype(np.int64), self.enc_mask, keep=True)
        self._hidden_host: np.ndarray | None = None
        self.all_rows = tuple(range(len(input_ids)))

    def _hidden(self, key: tuple[int, ...]):
        """Encoder states of rows ``key``: as computed for all rows, else sliced from one host copy."""
        if key == self.all_rows:
            return self.hidden
        if self._hidden_host is None:
            self._hidden_host = self.m.encoder.to_host(self.hidden)
        return self._hidden_host[np.array(key)]


class Seq2SeqBackend(_Encoded):
    """Grouped: per-row KV caches for one batch of prompts, rows of equal cache length fed together
    (see module docstring)."""

    def __init__(self, model: Seq2SeqModel, input_ids: np.ndarray, attention_mask: np.ndarray):
        super().__init__(model, input_ids, attention_mask)
        n = len(input_ids)
        self.length = [0] * n  # self-attention cache length per row
        self._fed: tuple | None = None  # the last call's caches until accept()
        self.self_at: list[tuple[_Caches, int] | None] = [None] * n  # where each row's cache lives
        self.cross_at: list[tuple[_Caches, int] | None] = [None] * n
        self._groups: dict[tuple[int, ...], _Caches] = {}  # exact batched self caches, reusable as is
        self._cross: dict[tuple[int, ...], dict] = {}  # batched cross caches per group of rows

    def schedule(self, active: list[int]) -> list[int]:
        shortest = min(self.length[r] for r in active)
        return [r for r in active if self.length[r] == shortest]

    def feed(self, rows: list[int], tokens: Sequence[list[int]], want: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        key = tuple(rows)
        ids, _ = pad_runs(tokens, self.m.pad_id)
        width = ids.shape[1]
        sel = np.array(rows)
        last = [len(t) - 1 for t in tokens] if want is None else positions(want)  # what the grammar needs
        feeds = {"input_ids": ids, "encoder_attention_mask": self.enc_mask[sel]}
        first = self.length[rows[0]] == 0
        if first:
            feeds["encoder_hidden_states"] = self._hidden(key)
            out = self.m.decoder.run(feeds, keep=self.m.self_names + self.m.cross_names, last=last)
        else:
            if "encoder_hidden_states" in self.m.decoder_with_past.inputs:
                feeds["encoder_hidden_states"] = self._hidden(key)
            feeds.update(self._self_past(key))
            feeds.update(self._cross_past(key))
            if self.m.masked:  # no holes in this path: every past and new position is real
                feeds[SELF_MASK] = np.ones((len(rows), self.length[rows[0]] + width), dtype=np.int64)
            out = self.m.decoder_with_past.run(feeds, keep=self.m.self_names, last=last)
        if first:
            cross = _Caches({n: out[n] for n in self.m.cross_names})
            for i, r in enumerate(rows):
                self.cross_at[r] = (cross, i)
            self._cross[key] = {_past(n): v for n, v in cross.values.items()}
        self._fed = (key, _Caches({n: out[n] for n in self.m.self_names}), self.length[rows[0]] + width)
        if want is None:
            self.accept([len(t) for t in tokens])
        return out["last_logits"]

    def accept(self, kept: Sequence[int]) -> None:
        """After a call with ``want``: each row keeps the first ``kept[i]`` tokens it fed (a rejected
        draft after them is cut off like padding when the cache is next assembled)."""
        key, caches, new_len = self._fed
        for i, r in enumerate(key):
            self.length[r] += kept[i]
            self.self_at[r] = (caches, i)
        self._forget(key)
        if all(self.length[r] == new_len for r in key):  # no padding inside: next call binds it as is
            self._groups[key] = caches
        self._fed = None


    def _self_past(self, key: tuple[int, ...]) -> dict:
        """The batched self-attention cache: bound as is when these rows were fed together last."""
        caches = self._groups.get(key)
        if caches is not None:
            return {_past(n): v for n, v in caches.values.items()}
        s = self.m.decoder_with_past
        out = {}
        for n in self.m.self_names:
            parts = [self.self_at[r][0].row(s, n, self.self_at[r][1], self.length[r]) for r in key]
            out[_past(n)] = s.upload(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return out

    def _cross_past(self, key: tuple[int, ...]) -> dict:
        """The cross-attention cache never changes: assembled and uploaded once per group of rows."""
        if key not in self._cross:
            s = self.m.decoder_with_past
            batch = {}
            for n in self.m.cross_names:
                parts = [self.cross_at[r][0].row(s, n, self.cross_at[r][1], None) for r in key]
                batch[_past(n)] = s.upload(parts[0] if len(parts) == 1 else np.concatenate(parts))
            if len(self._cross) > 64:
                self._cross.clear()
            self._cross[key] = batch
        return self._cross[key]

    def _forget(self, rows: Sequence[int]) -> None:
        """Batched self caches that hold an older state of these rows can never be bound again."""
        moved = set(rows)
        self._groups = {k: c for k, c in self._groups.items() if not moved.intersection(k)}

    def release(self, row: int) -> None:
        self.self_at[row] = None
        self.cross_at[row] = None
        self.length[row] = -1  # never scheduled again
        self._forget([row])
        self._cross = {k: c for k, c in self._cross.items() if row not in k}


class JoinedSeq2SeqBackend(_Encoded):
    """Joined: every active row in every call, one batched cache with each row's real tokens
    right-aligned and the holes in front masked (see module docstring)."""

    def __init__(self, model: Seq2SeqModel, input_ids: np.ndarray, attention_mask: np.ndarray):
        super().__init__(model, input_ids, attention_mask)
        n = len(input_ids)
        self.rows: tuple[int, ...] = self.all_rows  # the rows the batched caches hold, in this order
        self.length = [0] * n  # real self-attention cache length per row
        self._fed: tuple | None = None  # the last call's caches until accept()
        self.width = 0  # cache positions (the longest row's length; shorter rows have holes in front)
        self.self_past: dict[str, Any] = {}  # past name -> (rows, heads, width, head dim)
        self.cross_past: dict[str, Any] = {}
        self._enc_key: tuple[int, ...] | None = None  # the rows of the encoder mask below
        self._enc_rows: np.ndarray | None = None

    def schedule(self, active: list[int]) -> list[int]:
        return list(active)

    def feed(self, rows: list[int], tokens: Sequence[list[int]], want: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        key = tuple(rows)
        if self.width and key != self.rows:
            self._select(key)
        ids, _ = pad_runs(tokens, self.m.pad_id)
        width = ids.shape[1]
        run = [len(t) for t in tokens]
        last = [n - 1 for n in run] if want is None else positions(want)  # what the grammar needs
        if self._enc_key != key:
            self._enc_key, self._enc_rows = key, self.enc_mask[np.array(rows)]
        feeds = {"input_ids": ids, "encoder_attention_mask": self._enc_rows}
        if not self.width:
            feeds["encoder_hidden_states"] = self._hidden(key)
            out = self.m.decoder.run(feeds, keep=self.m.self_names + self.m.cross_names, last=last)
            self.cross_past = {_past(n): out[n] for n in self.m.cross_names}
        else:
            if "encoder_hidden_states" in self.m.decoder_with_past.inputs:
                feeds["encoder_hidden_states"] = self._hidden(key)
            lengths = np.array([self.length[r] for r in rows])
            # holes in front of each row's real past; the new positions all count
            feeds[SELF_MASK] = (np.arange(self.width + width) >= self.width - lengths[:, None]).astype(np.int64)
            feeds.update(self.self_past)
            feeds.update(self.cross_past)
            out = self.m.decoder_with_past.run(feeds, keep=self.m.self_names, last=last)
        self.rows = key
        self._fed = ({_past(n): out[n] for n in self.m.self_names}, width)
        if want is None:
            self.accept(run)
        return out["last_logits"]

    def accept(self, kept: Sequence[int]) -> None:
        """After a call with ``want``: each row keeps the first ``kept[i]`` tokens it fed (the rest, a
        rejected draft, is cut from its cache like padding)."""
        values, width = self._fed
        ends = [self.width + n for n in kept]  # where each row's real tokens end now
        for r, n in zip(self.rows, kept):
            self.length[r] += n
        self.self_past = self._align(values, ends, self.width + width)
        self._fed = None

    def _align(self, values: dict, ends: list[int], total: int) -> dict:
        """Right-align each row's real tokens (they end at ``ends[i]`` of ``total`` positions) and cut
        the columns that are holes in every row; untouched when nothing moves."""
        lengths = [self.length[r] for r in self.rows]
        self.width = max(lengths)
        if self.width == total and all(e == total for e in ends):
            return values
        return {n: self._rearrange(v, range(len(ends)), ends, lengths, self.width) for n, v in values.items()}

    def _select(self, key: tuple[int, ...]) -> None:
        """Keep only ``key``'s rows (the others finished) and cut the holes they all have."""
        index = [self.rows.index(r) for r in key]
        lengths = [self.length[r] for r in key]
        width = max(lengths)
        self.self_past = {n: self._rearrange(v, index, [self.width] * len(key), lengths, width)
                          for n, v in self.self_past.items()}
        self.cross_past = {n: self._rearrange(v, index, None, None, None) for n, v in self.cross_past.items()}
        self.rows, self.width = key, width

    def _rearrange(self, value: Any, rows: Sequence[int], ends: Sequence[int] | None,
                   lengths: Sequence[int] | None, width: int | None) -> Any:
        """Rows ``rows`` of a (rows, heads, positions, dim) cache, each row's ``lengths[i]`` positions
        ending at ``ends[i]`` moved to the end of ``width`` (``ends=None``: the rows as they are).
        Device values stay on the device (:class:`AlignRows`); host arrays are rearranged by numpy."""
        if ends is None:
            ends = lengths = [value.shape()[2] if isinstance(value, ort.OrtValue) else value.shape[2]] * len(rows)
            width = ends[0]
        if isinstance(value, ort.OrtValue):
            return self.m.aligner(value)(value, rows, ends, lengths, width)
        rows = list(rows)
        if rows == list(range(len(value))) and width == value.shape[2] and value.flags.writeable:
            for i, (e, n) in enumerate(zip(ends, lengths)):  # in place; the front keeps finite old values
                if e != width:
                    value[i, :, width - n :] = value[i, :, e - n : e]
            return value
        out = np.zeros((len(rows), value.shape[1], width) + value.shape[3:], dtype=value.dtype)  # holes: finite zeros
        for i, (r, e, n) in enumerate(zip(rows, ends, lengths)):
            out[i, :, width - n :] = value[r, :, e - n : e]
        return out

    def release(self, row: int) -> None:
        self.length[row] = -1  # never fed again; its cache rows go at the next call


__all__ = ["JoinedSeq2SeqBackend", "Seq2SeqBackend", "Seq2SeqModel"]
