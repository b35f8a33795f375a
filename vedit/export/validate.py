"""Check an export against its PyTorch model: every output of every file, then greedy decoding.

Tolerances (max abs difference, per output): ``atol + rtol * max|PyTorch output|``

============  ======================================  =====================================
precision     logits / hidden states / KV cache        greedy tokens (held-out prompts)
============  ======================================  =====================================
fp32          atol 1e-4 (< 100M params) or 1e-3,       gated: identical, except at steps where
              rtol 1e-5; gated                          PyTorch's top two logits are a tie
                                                        within the tolerance
fp16          atol 5e-2, rtol 1e-2; gated (run on the   reported only
              CPU execution provider: GPU unchecked)
int8, int4    reported only (finite values gated)       reported only: quantized weights do
                                                        not reproduce fp32 greedy output on random
                                                        or lightly trained weights; its quality
                                                        delta is measured by ``vedit bench``
============  ======================================  =====================================

Each file is fed PyTorch's own inputs (encoder states, past key/values), so a failure names the file
and output at fault. The greedy check then runs the serving runtime itself (the sessions, backends
and decoding loop of :mod:`vedit.decoding`, with an allow-all matcher for plain greedy), so what is
validated is what serves. The with-past decoders are checked with several new tokens in one call and
with one token per call. Decoders that gather each row's last position before the lm_head
(``last_index``, :mod:`vedit.export.last_position`) are fed a different position per row and their
``(batch, 1, vocab)`` logits compared with PyTorch's at those positions.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vedit.decoding.decoder_only import DecoderOnlyModel
from vedit.decoding.grammar import FreeMatcher
from vedit.decoding.loop import decode
from vedit.decoding.seq2seq import SELF_MASK, Seq2SeqModel
from vedit.decoding.session import CPU, CUDA
from vedit.errors import ValidationError
from vedit.manifest import QUANTIZED
from vedit.export.reference import Batch, encode, llama_position_ids, probe_tokens

log = logging.getLogger(__name__)

#: new tokens fed in one with-past call (as jump-forward does with forced tokens)
MULTI_TOKENS = 3
LARGE_MODEL_PARAMS = 100_000_000


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    logits_gated: bool
    greedy_gated: bool

    def limit(self, reference: np.ndarray) -> float:
        return self.atol + self.rtol * float(np.abs(reference).max(initial=0.0))


def tolerance_for(precision: str, num_params: int) -> Tolerance:
    if precision == "fp32":
        return Tolerance(1e-4 if num_params < LARGE_MODEL_PARAMS else 1e-3, 1e-5, True, True)
    if precision == "fp16":
        return Tolerance(5e-2, 1e-2, True, False)
    if precision in QUANTIZED:
        return Tolerance(float("inf"), 0.0, False, False)
    raise ValueError(precision)


@dataclass
class OutputDiff:
    name: str  # "<file>[<call>]:<output>"
    max_abs_diff: float
    limit: float
    passed: bool


@dataclass
class GreedyReport:
    sequences: int = 0
    identical: int = 0
    ties: int = 0  # first divergence where PyTorch's two candidates were within the tolerance
    mismatches: list[str] = field(default_factory=list)
    tokens_compared: int = 0
    tokens_agreeing: int = 0  # common prefix tokens, summed over sequences
    max_new_tokens: int = 0

    @property
    def token_agreement(self) -> float:
        return self.tokens_agreeing / self.tokens_compared if self.tokens_compared else 1.0


@dataclass
class ValidationReport:
    precision: str
    tolerance: dict[str, Any]
    outputs: list[OutputDiff]
    greedy: GreedyReport
    intents: list[str]
    prompts: int
    device: str
    notes: list[str]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs_diff"] = {o.name: o.max_abs_diff for o in self.outputs}
        d["greedy"]["token_agreement"] = self.greedy.token_agreement
        return d

    def failures(self) -> list[str]:
        out = [f"{o.name} max diff {o.max_abs_diff:.3g} > {o.limit:.3g}" for o in self.outputs if not o.passed]
        if self.tolerance["greedy_gated"] and self.greedy.mismatches:
            out.append(f"greedy tokens differ on {len(self.greedy.mismatches)} prompt(s): "
                       + "; ".join(self.greedy.mismatches[:3]))
        return out

    def summary_lines(self) -> list[str]:
        """Short human report: max diff per output group, token agreement."""
        groups: dict[str, list[OutputDiff]] = {}
        for o in self.outputs:
            file, out = o.name.split(":", 1)
            key = f"{file}:{'present.*' if out.startswith('present.') else out}"
            groups.setdefault(key, []).append(o)
        gated = "gated" if self.tolerance["logits_gated"] else "reported only"
        lines = [f"validation ({self.precision}, {gated}): {'passed' if self.passed else 'FAILED'}"]
        for key, items in groups.items():
            worst = max(items, key=lambda o: o.max_abs_diff)
            flag = "" if all(o.passed for o in items) else "  <-- over tolerance"
            lines.append(f"  {key:<48} max diff {worst.max_abs_diff:.3g} (limit {worst.limit:.3g}){flag}")
        g = self.greedy
        lines.append(
            f"  greedy vs generate(do_sample=False): {g.identical}/{g.sequences} sequences identical, "
            f"{g.ties} tie(s), token agreement {100 * g.token_agreement:.1f}% "
            f"({len(self.intents)} intents, {self.prompts} prompts, max {g.max_new_tokens} new tokens)"
        )
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def _compare(name: str, onnx_out: np.ndarray, ref: np.ndarray, tol: Tolerance, mask: np.ndarray | None = None) -> OutputDiff:
    onnx_out = np.asarray(onnx_out, dtype=np.float32)
    ref = np.asarray(ref, dtype=np.float32)
    if onnx_out.shape != ref.shape:
        return OutputDiff(name, float("inf"), tol.limit(ref), False)
    diff = np.abs(onnx_out - ref)
    if mask is not None:
        diff, ref = diff[mask], ref[mask]
    finite = bool(np.isfinite(onnx_out).all())
    mad = float(diff.max(initial=0.0)) if finite else float("inf")
    limit = tol.limit(ref)
    passed = finite and (mad <= limit or not tol.logits_gated)
    return OutputDiff(name, mad, limit, passed)


def _legacy(pkv) -> tuple:
    return pkv.to_legacy_cache() if hasattr(pkv, "to_legacy_cache") else tuple(pkv)


def presents_to_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.replace("present", "past_key_values", 1): v for k, v in outputs.items() if k.startswith("present.")}


def _positions(session, b: int, new: int) -> np.ndarray:
    """The position each row's logits are taken at: differing between rows when the graph gathers
    them (``last_index``), as in a call whose rows feed runs of different lengths."""
    return np.arange(b) % new if session.gathers_last else np.full(b, new - 1)


def _at(session, ref: np.ndarray, last: np.ndarray) -> np.ndarray:
    """PyTorch's logits (batch, new, vocab) as the session returns them: all positions, or each row's ``last``."""
    return ref[np.arange(len(last)), last][:, None] if session.gathers_last else ref


def _t5_first(m: Seq2SeqModel, dec_ids, attention_mask, hidden) -> dict[str, np.ndarray]:
    return m.decoder.run({"input_ids": dec_ids, "encoder_attention_mask": attention_mask,
                          "encoder_hidden_states": hidden}, last=np.zeros(len(dec_ids), np.int64))


def _t5_step(m: Seq2SeqModel, dec_ids, attention_mask, hidden, past: dict[str, np.ndarray],
             holes: int = 0, last: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Feed one or more new tokens after ``past`` (encoder entries are reused as they are); with
    ``holes``, the self-attention past gets that many zero positions in front, masked (as rows that
    join a call with a longer row carry them; see :mod:`vedit.decoding.seq2seq`)."""
    feeds = {"input_ids": dec_ids, "encoder_attention_mask": attention_mask, "encoder_hidden_states": hidden, **past}
    if SELF_MASK in m.decoder_with_past.inputs:
        b, new = dec_ids.shape
        own = next(v for k, v in past.items() if ".decoder." in k).shape[2]
        feeds[SELF_MASK] = np.concatenate([np.zeros((b, holes), np.int64), np.ones((b, own + new), np.int64)], 1)
        for k, v in past.items():
            if holes and ".decoder." in k:
                feeds[k] = np.concatenate([np.zeros(v.shape[:2] + (holes,) + v.shape[3:], v.dtype), v], 2)
    if last is None:
        last = np.full(len(dec_ids), dec_ids.shape[1] - 1)
    return m.decoder_with_past.run(feeds, last=last)


def _llama_run(m: DecoderOnlyModel, input_ids, attention_mask, position_ids, past,
               last: np.ndarray | None = None) -> dict[str, np.ndarray]:
    if last is None:
        last = np.full(len(input_ids), input_ids.shape[1] - 1)
    return m.session.run({"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                          **past}, last=last)


def _t5_outputs(model, tokenizer, runner: Seq2SeqModel, batch: Batch, tol: Tolerance, files: dict) -> list[OutputDiff]:
    import torch

    ids, mask = batch.torch()
    b = ids.shape[0]
    start = model.config.decoder_start_token_id
    probe = probe_tokens(tokenizer, MULTI_TOKENS)
    enc_f, dec_f, past_f = files["encoder"], files["decoder"], files["decoder_with_past"]
    diffs = []
    with torch.no_grad():
        hidden = model.get_encoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        first = model(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=torch.full((b, 1), start),
                      use_cache=True)
        full_ids = torch.tensor([[start] + probe] * b)
        full = model(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=full_ids, use_cache=True)
    h = hidden.numpy()
    diffs.append(_compare(f"{enc_f}:last_hidden_state", runner.encode(batch.input_ids, batch.attention_mask), h, tol))

    out = _t5_first(runner, np.full((b, 1), start, dtype=np.int64), batch.attention_mask, h)
    diffs.append(_compare(f"{dec_f}:logits", out["logits"], first.logits.numpy(), tol))
    ref_past = {}
    for i, (dk, dv, ek, ev) in enumerate(_legacy(first.past_key_values)):
        for kind, t in (("decoder.key", dk), ("decoder.value", dv), ("encoder.key", ek), ("encoder.value", ev)):
            name = f"present.{i}.{kind}"
            diffs.append(_compare(f"{dec_f}:{name}", out[name], t.numpy(), tol))
            ref_past[f"past_key_values.{i}.{kind}"] = t.numpy()

    new = np.array([probe] * b, dtype=np.int64)
    at = _positions(runner.decoder_with_past, b, MULTI_TOKENS)
    multi = _t5_step(runner, new, batch.attention_mask, h, ref_past, last=at)
    call = f"{past_f}[+{MULTI_TOKENS} tokens]"
    ref_new = _at(runner.decoder_with_past, full.logits[:, 1:].numpy(), at)
    diffs.append(_compare(f"{call}:logits", multi["logits"], ref_new, tol))
    for i, (dk, dv, _, _) in enumerate(_legacy(full.past_key_values)):
        for kind, t in (("decoder.key", dk), ("decoder.value", dv)):
            name = f"present.{i}.{kind}"
            diffs.append(_compare(f"{call}:{name}", multi[name], t.numpy(), tol))

    if SELF_MASK in runner.decoder_with_past.inputs:  # holes in front change nothing when masked
        held = _t5_step(runner, new, batch.attention_mask, h, ref_past, holes=2, last=at)
        diffs.append(_compare(f"{past_f}[+{MULTI_TOKENS} tokens, 2 masked holes]:logits", held["logits"],
                              ref_new, tol))

    past, singles = dict(ref_past), []
    for j in range(MULTI_TOKENS):
        o = _t5_step(runner, new[:, j : j + 1], batch.attention_mask, h, past)
        past = {**past, **presents_to_past(o)}
        singles.append(o["logits"])
    diffs.append(_compare(f"{past_f}[1 token x{MULTI_TOKENS}]:logits", np.concatenate(singles, 1),
                          full.logits[:, 1:].numpy(), tol))
    return diffs


def _llama_outputs(model, tokenizer, runner: DecoderOnlyModel, batch: Batch, tol: Tolerance, files: dict) -> list[OutputDiff]:
    import torch

    f = files["decoder"]
    b = batch.input_ids.shape[0]
    probe = np.array([probe_tokens(tokenizer, MULTI_TOKENS)] * b, dtype=np.int64)
    pos = llama_position_ids(batch.attention_mask)
    full_mask = np.concatenate([batch.attention_mask, np.ones_like(probe)], axis=1)
    full_pos = llama_position_ids(full_mask)
    ids, mask = batch.torch()
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask, position_ids=torch.from_numpy(pos), use_cache=True)
        full = model(input_ids=torch.from_numpy(np.concatenate([batch.input_ids, probe], 1)),
                     attention_mask=torch.from_numpy(full_mask), position_ids=torch.from_numpy(full_pos), use_cache=True)
    valid = batch.attention_mask.astype(bool)
    diffs = []
    out = _llama_run(runner, batch.input_ids, batch.attention_mask, pos, runner.empty_past(b))
    call = f"{f}[prompt]"
    if runner.session.gathers_last:  # left-padded: every row's last prompt token is the last column
        diffs.append(_compare(f"{call}:logits", out["logits"], first.logits.numpy()[:, -1:], tol))
    else:
        diffs.append(_compare(f"{call}:logits", out["logits"], first.logits.numpy(), tol, mask=valid))
    ref_past = {}
    for i, (k, v) in enumerate(_legacy(first.past_key_values)):
        for kind, t in (("key", k), ("value", v)):
            diffs.append(_compare(f"{call}:present.{i}.{kind}", out[f"present.{i}.{kind}"], t.numpy(), tol))
            ref_past[f"past_key_values.{i}.{kind}"] = t.numpy()

    n = batch.input_ids.shape[1]
    at = _positions(runner.session, b, MULTI_TOKENS)
    multi = _llama_run(runner, probe, full_mask, full_pos[:, n:], ref_past, last=at)
    call = f"{f}[past+{MULTI_TOKENS} tokens]"
    diffs.append(_compare(f"{call}:logits", multi["logits"], _at(runner.session, full.logits[:, n:].numpy(), at), tol))
    for i, (k, v) in enumerate(_legacy(full.past_key_values)):
        for kind, t in (("key", k), ("value", v)):
            diffs.append(_compare(f"{call}:present.{i}.{kind}", multi[f"present.{i}.{kind}"], t.numpy(), tol))

    past, singles = dict(ref_past), []
    for j in range(MULTI_TOKENS):
        o = _llama_run(runner, probe[:, j : j + 1], full_mask[:, : n + j + 1], full_pos[:, n + j : n + j + 1], past)
        past = presents_to_past(o)
        singles.append(o["logits"])
    diffs.append(_compare(f"{f}[past+1 token x{MULTI_TOKENS}]:logits", np.concatenate(singles, 1),
                          full.logits[:, n:].numpy(), tol))
    return diffs


def _hf_greedy(model, batch: Batch, family: str, tokenizer, max_new_tokens: int):
    import torch
    from transformers import GenerationConfig

    cfg = model.config
    gen = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=cfg.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=getattr(cfg, "bos_token_id", None),
        decoder_start_token_id=getattr(cfg, "decoder_start_token_id", None),
    )
    ids, mask = batch.torch()
    with torch.no_grad():
        res = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen,
                             output_logits=True, return_dict_in_generate=True)
    seq = res.sequences.numpy()
    seq = seq[:, 1:] if family == "t5" else seq[:, ids.shape[1]:]
    logits = torch.stack(res.logits, 1).float().numpy()  # (batch, steps, vocab)
    return seq, logits


def _onnx_greedy(runner: Seq2SeqModel | DecoderOnlyModel, batch: Batch, family: str, *, start: int, eos: int,
                 vocab_size: int, max_new_tokens: int) -> list[list[int]]:
    """Plain greedy through the serving loop: each row's tokens, cut after its first ``eos``."""
    rows = [ids[mask.astype(bool)].tolist() for ids, mask in zip(batch.input_ids, batch.attention_mask)]
    matchers = [FreeMatcher(vocab_size, eos, max_new_tokens) for _ in rows]
    if family == "t5":
        backend, prefixes = runner.backend(batch.input_ids, batch.attention_mask), [[start] for _ in rows]
    else:
        backend, prefixes = runner.backend(rows), rows
    return [t.tokens for t in decode(backend, matchers, prefixes)]


def _compare_greedy(report: GreedyReport, labels: list[str], hf_seq, hf_logits, ort_rows, eos: int,
                    tie_limit: float) -> None:
    for r, label in enumerate(labels):
        ref = hf_seq[r].tolist()
        ref = ref[: ref.index(eos) + 1] if eos in ref else ref
        got = ort_rows[r]
        report.sequences += 1
        report.tokens_compared += len(ref)
        common = 0
        while common < min(len(ref), len(got)) and ref[common] == got[common]:
            common += 1
        report.tokens_agreeing += common
        if got == ref:
            report.identical += 1
            continue
        t = common
        if t < len(ref) and t < len(got):
            margin = float(hf_logits[r, t, ref[t]] - hf_logits[r, t, got[t]])
            if margin <= tie_limit:
                report.ties += 1
                continue
            report.mismatches.append(f"{label}: step {t} generate {ref[t]} vs onnx {got[t]} (margin {margin:.3g})")
        else:
            report.mismatches.append(f"{label}: lengths {len(ref)} vs {len(got)}")


def validate_export(export_dir: Path, model, tokenizer, *, family: str, files: dict[str, str], precision: str,
                    batches: list[list[str]], intents: list[str], max_new_tokens: int = 48,
                    tolerance: Tolerance | None = None) -> ValidationReport:
    """Compare the ONNX files in ``export_dir`` with ``model``; raise :class:`ValidationError` on failure.

    ``batches`` holds one list of prompts per intent (all tools, one batch as serving runs them).
    """
    from vedit.export.onnx_common import model_num_params, threads_for, torch_threads

    threads = threads_for(model)
    with torch_threads(threads):
        return _validate(export_dir, model, tokenizer, family=family, files=files, precision=precision,
                         batches=batches, intents=intents, max_new_tokens=max_new_tokens,
                         tol=tolerance or tolerance_for(precision, model_num_params(model)), threads=threads)


def _validate(export_dir: Path, model, tokenizer, *, family: str, files: dict[str, str], precision: str,
              batches: list[list[str]], intents: list[str], max_new_tokens: int, tol: Tolerance, threads: int) -> ValidationReport:
    import json

    # fp16 is meant for GPUs: validate it on the CUDA provider when this onnxruntime offers one
    # (falling back to CPU, logged, when CUDA does not start); everything else on the CPU.
    providers = [CUDA, CPU] if precision == "fp16" and CUDA in ort.get_available_providers() else [CPU]
    if family == "t5":
        runner: Seq2SeqModel | DecoderOnlyModel = Seq2SeqModel(
            export_dir, files, providers=providers, threads=threads, allow_cpu_fallback=True,
            decoder_start_token_id=model.config.decoder_start_token_id, pad_token_id=tokenizer.pad_token_id)
    else:
        config = json.loads((export_dir / "config.json").read_text(encoding="utf-8"))
        runner = DecoderOnlyModel(export_dir, files, providers=providers, threads=threads, allow_cpu_fallback=True,
                                  pad_token_id=tokenizer.pad_token_id, config=config)
    first = encode(tokenizer, batches[0], family)
    log.info(f"validating {precision} outputs against PyTorch")
    outputs_fn = _t5_outputs if family == "t5" else _llama_outputs
    outputs = outputs_fn(model, tokenizer, runner, first, tol, files)

    log.info(f"greedy decoding {sum(map(len, batches))} held-out prompts (ONNX vs generate)")
    greedy = GreedyReport(max_new_tokens=max_new_tokens)
    eos = model.config.eos_token_id
    tie_limit = 2 * tol.atol if np.isfinite(tol.atol) else 0.0
    for intent, prompts in zip(intents, batches):
        batch = encode(tokenizer, prompts, family)
        hf_seq, hf_logits = _hf_greedy(model, batch, family, tokenizer, max_new_tokens)
        rows = _onnx_greedy(runner, batch, family, start=getattr(model.config, "decoder_start_token_id", -1),
                            eos=eos, vocab_size=hf_logits.shape[-1], max_new_tokens=max_new_tokens)
        labels = [f"{intent!r} prompt {i}" for i in range(len(prompts))]
        _compare_greedy(greedy, labels, hf_seq, hf_logits, rows, eos, tie_limit)

    notes = []
    if precision == "fp16":
        ran_on = runner.providers[0]
        notes.append(f"fp16 validated on {ran_on}" if ran_on == CUDA else
                     "fp16 ran on the CPU execution provider here; CUDA (GPU) execution is unchecked")
    if precision in QUANTIZED:
        notes.append(f"{precision} is not gated on logits or greedy agreement; judge it by `vedit bench` metrics")
    report = ValidationReport(
        precision=precision,
        tolerance={"atol": tol.atol, "rtol": tol.rtol, "logits_gated": tol.logits_gated,
                   "greedy_gated": tol.greedy_gated, "tie_margin": tie_limit},
        outputs=outputs,
        greedy=greedy,
        intents=list(intents),
        prompts=sum(map(len, batches)),
        device="cpu",
        notes=notes,
        passed=False,
    )
    failures = report.failures()
    report.passed = not failures
    if failures:
        err = ValidationError(
            f"{precision} export disagrees with PyTorch (tolerance atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|): "
            + "; ".join(failures[:6]) + (f" (+{len(failures) - 6} more)" if len(failures) > 6 else "")
        )
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report
