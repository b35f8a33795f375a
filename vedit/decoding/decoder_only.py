"""Decoder-only (Llama) backend: one batched cache, left-padded prompts, explicit position ids.

Llama's export takes an attention mask over the whole cache and explicit position ids (RoPE is
applied when a key is written), so rows can carry holes: every call feeds all active rows, each
its own number of tokens, right-padded with masked pad tokens. Masked positions get no attention
and each row's position ids count only its real tokens, so every row computes what it would
compute alone. One call per round serves every row.

With IO binding (on CUDA) the cache never leaves the device between calls: each call's ``present``
outputs are bound as the next call's ``past`` inputs. It comes to the host only when a finished row
is dropped from the batch (:meth:`DecoderOnlyBackend._compact`); the logits come back every call.

Prompt-prefix cache: every request's prompt for a tool starts with the same instructions (the
paper's ``[INST] ... The user request is:``, hundreds of tokens with a preset list). Their KV cache
is computed once per prefix (:meth:`DecoderOnlyModel.add_prefix`, done by the predictor at load) and
a batch starts from it: each row's prefix cache is placed right-aligned in a left-padded past
(masked holes in front), and the first call feeds only the rest of each prompt. Attention over the
prefix is causal and RoPE is applied at the positions the keys were written at, which are the
positions the full prompt gives them, so every row computes what a full prefill computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vedit.decoding.loop import pad_runs, positions
from vedit.decoding.session import Session


class DecoderOnlyModel:
    def __init__(self, export_dir: Path, files: dict[str, str], *, providers=None, threads=None,
                 pad_token_id: int = 0, config: dict | None = None, allow_cpu_fallback: bool = False,
                 io_binding: bool | None = None):
        self.session = Session(export_dir / files.get("decoder", "model.onnx"), providers=providers, threads=threads,
                               allow_cpu_fallback=allow_cpu_fallback, io_binding=io_binding)
        self.pad_id = pad_token_id
        self.past_names = [n for n in self.session.inputs if n.startswith("past_key_values.")]
        self.present_names = ["present." + n[len("past_key_values.") :] for n in self.past_names]
        cfg = config or {}
        self._shape = {}
        for n in self.past_names:
            spec = self.session.inputs[n]
            heads = spec.shape[1] if isinstance(spec.shape[1], int) else cfg.get(
                "num_key_value_heads", cfg.get("num_attention_heads"))
            dim = spec.shape[3] if isinstance(spec.shape[3], int) else cfg.get(
                "head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
            self._shape[n] = (int(heads), int(dim), spec.dtype)
        self.prefixes: dict[tuple[int, ...], dict[str, np.ndarray]] = {}  # prompt prefix -> its KV (host)

    def add_prefix(self, ids: Sequence[int]) -> None:
        """Compute and keep the KV cache of a prompt prefix shared by many requests."""
        ids = tuple(int(i) for i in ids)
        if not ids or ids in self.prefixes:
            return
        n = len(ids)
        out = self.session.run({"input_ids": np.array([ids], dtype=np.int64),
                                "attention_mask": np.ones((1, n), dtype=np.int64),
                                "position_ids": np.arange(n, dtype=np.int64)[None, :], **self.empty_past(1)},
                               last=np.array([n - 1]))
        self.prefixes[ids] = {p: out[q] for p, q in zip(self.past_names, self.present_names)}

    def prefix_of(self, row: Sequence[int]) -> tuple[int, ...]:
        """The longest cached prefix of ``row`` that leaves at least one token to feed (or ``()``)."""
        best: tuple[int, ...] = ()
        for p in self.prefixes:
            if len(best) < len(p) < len(row) and tuple(row[: len(p)]) == p:
                best = p
        return best

    @property
    def providers(self) -> list[str]:
        return self.session.session.get_providers()

    def backend(self, prompts: Sequence[list[int]]) -> "DecoderOnlyBackend":
        backend = DecoderOnlyBackend(self, len(prompts))
        if self.prefixes:
            backend.start_from_prefixes([self.prefix_of(p) for p in prompts])
        return backend

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, h, 0, d), dtype=t) for n, (h, d, t) in self._shape.items()}


class DecoderOnlyBackend:
    """The prompts are the rows' prefixes (fed by the first call), so the loop passes them in."""

    def __init__(self, model: DecoderOnlyModel, n_rows: int):
        self.m = model
        self.slot = {r: r for r in range(n_rows)}  # row -> batch index in the cache
        self.kv: dict[str, np.ndarray] | None = None
        self.mask = np.zeros((n_rows, 0), dtype=np.int64)
        self.next_pos = np.zeros(n_rows, dtype=np.int64)
        self.released: set[int] = set()
        self.skip = [0] * n_rows  # prompt tokens already in the cache (from the prefix cache)
        self._fed: tuple | None = None  # the last call's mask until accept()

    def start_from_prefixes(self, prefixes: Sequence[tuple[int, ...]]) -> None:
        """Start each row from its cached prefix (``()``: none), right-aligned in a left-padded past."""
        width = max(len(p) for p in prefixes)
        if not width:
            return
        n = len(prefixes)
        kv = {name: np.zeros((n, h, width, d), dtype=t) for name, (h, d, t) in self.m._shape.items()}
        for i, p in enumerate(prefixes):
            if p:
                for name, a in self.m.prefixes[p].items():
                    kv[name][i, :, width - len(p):] = a[0]
        self.mask = np.zeros((n, width), dtype=np.int64)
        for i, p in enumerate(prefixes):
            self.mask[i, width - len(p):] = 1
        self.next_pos = np.array([len(p) for p in prefixes], dtype=np.int64)
        self.skip = [len(p) for p in prefixes]
        s = self.m.session
        self.kv = {name: s.upload(a) for name, a in kv.items()}

    def schedule(self, active: list[int]) -> list[int]:
        return list(active)

    def feed(self, rows: list[int], tokens: Sequence[list[int]], want: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        skipped = [self.skip[r] for r in rows]
        if any(skipped):  # the first call: the cached prefixes are not fed again
            tokens = [t[self.skip[r]:] for r, t in zip(rows, tokens)]
            if want is not None:
                want = [[j - k for j in w] for w, k in zip(want, skipped)]
            for r in rows:
                self.skip[r] = 0
        self._compact(rows)
        b = len(rows)
        prefill = self.kv is None  # prefill: left padding, real tokens right-aligned
        ids, real = pad_runs(tokens, self.m.pad_id, left=prefill)
        width = ids.shape[1]
        new_mask = real.astype(np.int64)
        run = [len(t) for t in tokens]
        # the column of each row's first fed token (left padding puts it after the row's holes)
        start = np.array([width - n for n in run] if prefill else [0] * b, dtype=np.int64)
        if prefill:
            pos = np.clip(np.cumsum(new_mask, axis=1) - 1, 0, None)
            past = self.m.empty_past(b)
        else:
            pos = self.next_pos[:, None] + np.arange(width)[None, :]
            past = {n: self.kv[n] for n in self.m.past_names}
        if want is None:
            last = start + np.array(run) - 1
        else:
            last = start[:, None] + positions(want)
        mask = np.concatenate([self.mask, new_mask], axis=1)
        out = self.m.session.run({"input_ids": ids, "attention_mask": mask, "position_ids": pos, **past},
                                 keep=self.m.present_names, last=last)
        self.kv = {p: out[q] for p, q in zip(self.m.past_names, self.m.present_names)}
        self._fed = (mask, start, width, np.array(skipped, dtype=np.int64))
        if want is None:
            self.accept(np.array(run) + self._fed[3])
        return out["last_logits"]

    def accept(self, kept: Sequence[int]) -> None:
        """After a call with ``want``: each row keeps the first ``kept[i]`` tokens it fed; the rest (a
        rejected draft) stays in the cache as masked holes, and the next positions count real tokens.
        ``kept`` counts the tokens given to :meth:`feed`, a cached prompt prefix included."""
        mask, start, width, skipped = self._fed
        kept = np.asarray(kept, dtype=np.int64) - skipped
        cols = np.arange(width)[None, :]
        mask[:, mask.shape[1] - width:] = (cols >= start[:, None]) & (cols < (start + kept)[:, None])
        self.mask = mask
        self.next_pos = self.next_pos + kept
        self._fed = None

    def _compact(self, rows: list[int]) -> None:
        """Drop released rows from the cache so that slot order equals ``rows``."""
        keep = [self.slot[r] for r in rows]
        if keep == list(range(len(self.mask))):
            return
        sel = np.array(keep, dtype=np.int64)
        self.mask = self.mask[sel]
        self.next_pos = self.next_pos[sel]
        if self.kv is not None:
            s = self.m.session
            self.kv = {n: s.upload(s.to_host(a)[sel]) for n, a in self.kv.items()}
        self.slot = {r: i for i, r in enumerate(rows)}

    def release(self, row: int) -> None:
        self.released.add(row)


__all__ = ["DecoderOnlyBackend", "DecoderOnlyModel"]
