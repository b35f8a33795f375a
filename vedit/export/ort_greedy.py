"""Minimal onnxruntime runners and greedy loops over an export directory, for validation only.

The serving runtime (batching, constrained decoding, jump-forward) lives in ``vedit.decoding``; these
loops exist so an export can be compared with ``generate(do_sample=False)`` without depending on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vedit.export.reference import llama_position_ids


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the cores to PyTorch
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class _Runner:
    def __init__(self, path: Path, threads: int = 2):
        self.sess = session(path, threads)
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, **feed: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.sess.run(None, {k: v for k, v in feed.items() if k in self.input_names})
        return dict(zip(self.output_names, outs))


def presents_to_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.replace("present", "past_key_values", 1): v for k, v in outputs.items() if k.startswith("present.")}


class T5Runner:
    """encoder_model / decoder_model / decoder_with_past_model of a T5 export."""

    def __init__(self, export_dir: Path, files: dict[str, str], threads: int = 2):
        self.encoder = _Runner(export_dir / files["encoder"], threads)
        self.decoder = _Runner(export_dir / files["decoder"], threads)
        self.decoder_with_past = _Runner(export_dir / files["decoder_with_past"], threads)

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask)["last_hidden_state"]

    def first(self, dec_ids, attention_mask, hidden) -> dict[str, np.ndarray]:
        return self.decoder(input_ids=dec_ids, encoder_attention_mask=attention_mask, encoder_hidden_states=hidden)

    def step(self, dec_ids, attention_mask, past: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feed one or more new tokens after ``past`` (encoder entries are reused as they are)."""
        return self.decoder_with_past(input_ids=dec_ids, encoder_attention_mask=attention_mask, **past)

    @staticmethod
    def update_past(past: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        new = dict(past)
        new.update(presents_to_past(outputs))
        return new


class LlamaRunner:
    """The single ``model.onnx`` of a Llama export (KV cache in and out)."""

    def __init__(self, export_dir: Path, files: dict[str, str], threads: int = 2):
        self.model = _Runner(export_dir / files["decoder"], threads)
        self.past_inputs = [i for i in self.model.sess.get_inputs() if i.name.startswith("past_key_values.")]

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        past = {}
        for i in self.past_inputs:
            _, heads, _, dim = i.shape
            dtype = np.float16 if "float16" in i.type else np.float32
            past[i.name] = np.zeros((batch, heads, 0, dim), dtype=dtype)
        return past

    def __call__(self, input_ids, attention_mask, position_ids, past) -> dict[str, np.ndarray]:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **past)


def _finish(tokens: np.ndarray, eos: int) -> list[list[int]]:
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def t5_greedy(runner: T5Runner, input_ids, attention_mask, *, start: int, eos: int, pad: int,
              max_new_tokens: int) -> list[list[int]]:
    """Greedy tokens per row, each cut after its first ``eos``."""
    b = input_ids.shape[0]
    hidden = runner.encode(input_ids, attention_mask)
    out = runner.first(np.full((b, 1), start, dtype=np.int64), attention_mask, hidden)
    past = presents_to_past(out)
    done = np.zeros(b, dtype=bool)
    tokens = []
    for step in range(max_new_tokens):
        nxt = out["logits"][:, -1].argmax(-1)
        nxt = np.where(done, pad, nxt).astype(np.int64)
        tokens.append(nxt)
        done |= nxt == eos
        if done.all() or step == max_new_tokens - 1:
            break
        out = runner.step(nxt[:, None], attention_mask, past)
        past = runner.update_past(past, out)
    return _finish(np.stack(tokens, 1), eos)


def llama_greedy(runner: LlamaRunner, input_ids, attention_mask, *, eos: int, pad: int,
                 max_new_tokens: int) -> list[list[int]]:
    """Greedy over left-padded rows, with the positions HF ``generate`` uses."""
    b = input_ids.shape[0]
    mask = attention_mask.copy()
    out = runner(input_ids, mask, llama_position_ids(mask), runner.empty_past(b))
    done = np.zeros(b, dtype=bool)
    tokens = []
    for step in range(max_new_tokens):
        nxt = out["logits"][:, -1].argmax(-1)
        nxt = np.where(done, pad, nxt).astype(np.int64)
        tokens.append(nxt)
        done |= nxt == eos
        if done.all() or step == max_new_tokens - 1:
            break
        past = presents_to_past(out)
        mask = np.concatenate([mask, np.ones((b, 1), dtype=np.int64)], axis=1)
        pos = llama_position_ids(mask)[:, -1:]
        out = runner(nxt[:, None], mask, pos, past)
    return _finish(np.stack(tokens, 1), eos)
