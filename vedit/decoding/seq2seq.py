"""Encoder-decoder (T5) backend: encoder once, first-step decoder, then the with-past decoder.

Why rows are grouped by cache length: the exported with-past decoder has no decoder attention
mask, and T5's relative position bias is computed from cache positions, so a row cannot carry
padding holes in its self-attention cache. Rows therefore only share a call when their caches
have the same length. Within a call, rows may feed different numbers of tokens: shorter ones are
right-padded with the pad token, which is exact because attention is causal (real positions never
see the padding) and the padded positions are cut from the returned cache. The scheduler always
feeds the rows with the shortest cache, so rows that reach the same length are fed together; the
number of calls is the number of distinct cache lengths at which some row needs the model.

Everything is driven by the names the sessions declare (``get_inputs()``), so an export that also
wants ``encoder_hidden_states`` in the with-past decoder is served too.

Where the caches live (see :mod:`vedit.decoding.session`): with IO binding (on CUDA), the decoder's
``present`` outputs stay on the device and are bound as the next call's ``past`` inputs when the same
rows are fed together again with exact (unpadded) caches, which is the common case: a row that runs
alone after the rows diverge keeps its cache on the device from call to call. The cross-attention
cache is computed once by the first decoder call and stays on the device for that group of rows; a
new group (rows regrouped after they diverged) gets its caches assembled on the host from per-row
slices and uploaded once. Only the logits come back to the host on every call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vedit.decoding.session import Session


class Seq2SeqModel:
    """The three sessions of an encoder-decoder export."""

    def __init__(self, export_dir: Path, files: dict[str, str], *, providers=None, threads=None,
                 decoder_start_token_id: int = 0, pad_token_id: int = 0, allow_cpu_fallback: bool = False,
                 io_binding: bool | None = None):
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

    @property
    def providers(self) -> list[str]:
        return self.encoder.session.get_providers()

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray, *, keep: bool = False):
        """Encoder states (a device value with ``keep`` and IO binding, else a numpy array)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.encoder.run(feeds, keep=("last_hidden_state",) if keep else ())["last_hidden_state"]

    def backend(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> "Seq2SeqBackend":
        return Seq2SeqBackend(self, input_ids, attention_mask)


def _past(name: str) -> str:
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


class Seq2SeqBackend:
    """Per-row KV caches for one batch of prompts (see module docstring for the grouping rule)."""

    def __init__(self, model: Seq2SeqModel, input_ids: np.ndarray, attention_mask: np.ndarray):
        self.m = model
        self.enc_mask = attention_mask.astype(np.int64)
        self.hidden = model.encode(input_ids.astype(np.int64), self.enc_mask, keep=True)
        self._hidden_host: np.ndarray | None = None
        n = len(input_ids)
        self.all_rows = tuple(range(n))
        self.length = [0] * n  # self-attention cache length per row
        self.self_at: list[tuple[_Caches, int] | None] = [None] * n  # where each row's cache lives
        self.cross_at: list[tuple[_Caches, int] | None] = [None] * n
        self._groups: dict[tuple[int, ...], _Caches] = {}  # exact batched self caches, reusable as is
        self._cross: dict[tuple[int, ...], dict] = {}  # batched cross caches per group of rows

    def schedule(self, active: list[int]) -> list[int]:
        shortest = min(self.length[r] for r in active)
        return [r for r in active if self.length[r] == shortest]

    def feed(self, rows: list[int], tokens: Sequence[list[int]]) -> np.ndarray:
        key = tuple(rows)
        width = max(len(t) for t in tokens)
        ids = np.full((len(rows), width), self.m.pad_id, dtype=np.int64)
        for i, t in enumerate(tokens):
            ids[i, : len(t)] = t
        sel = np.array(rows)
        last = np.array([len(t) - 1 for t in tokens])  # each row's last real token: what the grammar needs
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
            out = self.m.decoder_with_past.run(feeds, keep=self.m.self_names, last=last)
        result = out["last_logits"]
        new_len = self.length[rows[0]] + width
        caches = _Caches({n: out[n] for n in self.m.self_names})
        for i, r in enumerate(rows):
            self.length[r] += len(tokens[i])
            self.self_at[r] = (caches, i)
        self._forget(rows)
        if all(self.length[r] == new_len for r in rows):  # no padding inside: next call binds it as is
            self._groups[key] = caches
        if first:
            cross = _Caches({n: out[n] for n in self.m.cross_names})
            for i, r in enumerate(rows):
                self.cross_at[r] = (cross, i)
            self._cross[key] = {_past(n): v for n, v in cross.values.items()}
        return result

    def _hidden(self, key: tuple[int, ...]):
        if key == self.all_rows:
            return self.hidden
        if self._hidden_host is None:
            self._hidden_host = self.m.encoder.to_host(self.hidden)
        return self._hidden_host[np.array(key)]

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


__all__ = ["Seq2SeqBackend", "Seq2SeqModel"]
