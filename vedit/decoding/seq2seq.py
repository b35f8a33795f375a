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
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vedit.decoding.session import Session


class Seq2SeqModel:
    """The three sessions of an encoder-decoder export."""

    def __init__(self, export_dir: Path, files: dict[str, str], *, providers=None, threads=None,
                 decoder_start_token_id: int = 0, pad_token_id: int = 0):
        self.encoder = Session(export_dir / files.get("encoder", "encoder_model.onnx"), providers=providers, threads=threads)
        self.decoder = Session(export_dir / files.get("decoder", "decoder_model.onnx"), providers=providers, threads=threads)
        self.decoder_with_past = Session(
            export_dir / files.get("decoder_with_past", "decoder_with_past_model.onnx"), providers=providers, threads=threads
        )
        self.start_id = decoder_start_token_id
        self.pad_id = pad_token_id
        self.self_names = [n for n in self.decoder.output_names if n.startswith("present.") and ".decoder." in n]
        self.cross_names = [n for n in self.decoder.output_names if n.startswith("present.") and ".encoder." in n]

    @property
    def providers(self) -> list[str]:
        return self.encoder.session.get_providers()

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.encoder.run({"input_ids": input_ids, "attention_mask": attention_mask})["last_hidden_state"]

    def backend(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> "Seq2SeqBackend":
        return Seq2SeqBackend(self, input_ids, attention_mask)


def _past(name: str) -> str:
    return "past_key_values." + name[len("present.") :]


class Seq2SeqBackend:
    """Per-row KV caches for one batch of prompts (see module docstring for the grouping rule)."""

    def __init__(self, model: Seq2SeqModel, input_ids: np.ndarray, attention_mask: np.ndarray):
        self.m = model
        self.enc_mask = attention_mask.astype(np.int64)
        self.hidden = model.encode(input_ids.astype(np.int64), self.enc_mask)
        n = len(input_ids)
        self.length = [0] * n  # self-attention cache length per row
        self.self_kv: list[dict[str, np.ndarray] | None] = [None] * n  # per-row views (batch 1)
        self.cross_kv: list[dict[str, np.ndarray] | None] = [None] * n
        self._cross_cache: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
        self._last: tuple[tuple[int, ...], dict[str, np.ndarray], int] | None = None

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
        feeds = {"input_ids": ids, "encoder_attention_mask": self.enc_mask[sel]}
        first = self.length[rows[0]] == 0
        if first:
            feeds["encoder_hidden_states"] = self.hidden[sel]
            out = self.m.decoder.run(feeds)
        else:
            if "encoder_hidden_states" in self.m.decoder_with_past.inputs:
                feeds["encoder_hidden_states"] = self.hidden[sel]
            feeds.update(self._self_past(key))
            feeds.update(self._cross_past(key))
            out = self.m.decoder_with_past.run(feeds)
        logits = out["logits"]
        last = np.array([len(t) - 1 for t in tokens])
        result = logits[np.arange(len(rows)), last].astype(np.float32, copy=False)
        new_len = self.length[rows[0]] + width
        for i, r in enumerate(rows):
            n_real = self.length[r] + len(tokens[i])
            self.self_kv[r] = {n: out[n][i : i + 1, :, :n_real] for n in self.m.self_names}
            if first:
                self.cross_kv[r] = {n: out[n][i : i + 1] for n in self.m.cross_names}
            self.length[r] = n_real
        exact = all(self.length[r] == new_len for r in rows)
        self._last = (key, {n: out[n] for n in self.m.self_names}, new_len) if exact else None
        return result

    def _self_past(self, key: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The batched self-attention cache: reused as is when the same rows were fed together last."""
        if self._last is not None and self._last[0] == key and all(self.length[r] == self._last[2] for r in key):
            return {_past(n): a for n, a in self._last[1].items()}
        if len(key) == 1:
            return {_past(n): a for n, a in self.self_kv[key[0]].items()}
        return {_past(n): np.concatenate([self.self_kv[r][n] for r in key]) for n in self.m.self_names}

    def _cross_past(self, key: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The cross-attention cache never changes: concatenate once per group of rows."""
        if key not in self._cross_cache:
            if len(key) == 1:
                batch = self.cross_kv[key[0]]
            else:
                batch = {n: np.concatenate([self.cross_kv[r][n] for r in key]) for n in self.m.cross_names}
            if len(self._cross_cache) > 64:
                self._cross_cache.clear()
            self._cross_cache[key] = {_past(n): a for n, a in batch.items()}
        return self._cross_cache[key]

    def release(self, row: int) -> None:
        self.self_kv[row] = None
        self.cross_kv[row] = None
        self.length[row] = -1  # never scheduled again


__all__ = ["Seq2SeqBackend", "Seq2SeqModel"]
