"""The tokenizer table: each tokenizer family's grammar mode, decoder calls, latency and exactness.

Why: jump-forward used to need a tokenizer that splits digits; the ``runs`` mode keeps it for the
others. This bench shows it on real exports: for each tokenizer family (``vedit.students.families``)
a tiny random-weight student is saved as a user would (the SentencePiece file alone for T5 Unigram
and Llama-2 BPE), exported by the real exporter, and asked for the same scripted answers
(``vedit.workload.scripted``) with and without jump-forward. Reported per family: the grammar mode,
decoder calls per request, p50 ms per request (one request at a time), and whether the
jump-forward answers are token-identical to step-by-step decoding.

Run: ``vedit bench tokenizers -n 20`` (minutes on 2 cores; prints a Markdown table).
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from vedit.workload.scripted import load_scripts, steer
from vedit.registry import default_registry
from vedit.students.families import family_dir

log = logging.getLogger(__name__)

#: (tokenizer family, student family): the digit-splitting reference first for each model family.
CASES = (
    ("unigram-split-digits", "t5"),
    ("t5-unigram", "t5"),
    ("unigram-split-digits", "llama"),
    ("llama2-bpe", "llama"),
    ("byte-level-bpe", "llama"),
)


@dataclass(frozen=True)
class FamilyRow:
    tokenizer: str
    student: str
    vocab: int
    mode: str
    calls: float  # mean decoder calls per request, jump-forward
    step_calls: float  # the same, step by step
    p50_ms: float
    step_p50_ms: float
    identical: bool  # jump-forward tokens == step-by-step tokens, every request
    scripted: bool  # every answer is the scripted text


def student_dir(tokenizer: str, student: str, out: Path, *, seed: int = 0) -> Path:
    """A tiny random-weight ``student`` saved with the ``tokenizer`` family's files only (as shipped)."""
    from vedit.students.models import new_llama, new_t5

    src = family_dir(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    ids = json.loads((src / "config.json").read_text())
    for f in src.iterdir():
        if f.name == "config.json":
            continue
        name = "tokenizer.model" if f.suffix == ".model" and student == "llama" else f.name
        name = "spiece.model" if f.suffix == ".model" and student == "t5" else name
        shutil.copyfile(f, out / name)
    vocab = _vocab_size(out)
    model = (new_t5 if student == "t5" else new_llama)(vocab, "tiny", seed=seed)
    model.config.eos_token_id = ids["eos_token_id"]
    model.config.pad_token_id = ids["pad_token_id"]
    if student == "t5":
        model.config.decoder_start_token_id = ids["pad_token_id"]
    model.save_pretrained(out)
    return out


def _vocab_size(folder: Path) -> int:
    from vedit.export.checks import load_tokenizer

    return len(load_tokenizer(folder))


def measure(export_dir: Path, truth: Path, n: int, *, tokenizer: str = "", student: str = "") -> FamilyRow:
    """Scripted answers for the first ``n`` truth rows, one request at a time, with and without jump-forward."""
    from vedit.decoding.grammar import load_grammar
    from vedit.decoding.predictor import Predictor

    scripts = load_scripts(export_dir, n, truth=truth)
    grammar = load_grammar(export_dir)
    out = {}
    for jf in (True, False):
        predictor = Predictor.load(export_dir, jump_forward=jf, threads=1, batch_size=1, draft=False)
        predictor.predict([scripts[0].intent], bias=steer(scripts[:1]))  # warm-up
        ms, calls, texts = [], [], []
        for s in scripts:
            start = time.perf_counter()
            (p,) = predictor.predict([s.intent], bias=steer([s]))
            ms.append(1000 * (time.perf_counter() - start))
            calls.append(p.stats.decoder_calls)
            texts.append(tuple(p.raw.values()))
        out[jf] = (statistics.median(ms), statistics.mean(calls), texts)
    return FamilyRow(
        tokenizer, student, grammar.vocab_size, grammar.mode, out[True][1], out[False][1], out[True][0], out[False][0],
        identical=out[True][2] == out[False][2],
        scripted=out[True][2] == [s.text_tuple() for s in scripts],
    )


def run(work: Path, n: int = 20, *, with_any: bool = True) -> list[FamilyRow]:
    """Build, export and measure every case of :data:`CASES` under ``work``; with ``with_any``, the
    merging families again with their grammar recompiled in mode ``any`` (the mode they had before
    ``runs``), on a copy of the same export."""
    from vedit.data.synth import generate, write_dataset
    from vedit.export import export_model
    from vedit.export.manifest import recompile_grammar

    registry = default_registry()
    data = write_dataset(generate(seed=3, n_intents=400, n_test=max(n, 1), registry=registry), work / "data")
    rows = []
    for tokenizer, student in CASES:
        log.info(f"tokenizers: {tokenizer} on a tiny {student} student (train or reuse the tokenizer, export, measure)")
        model = student_dir(tokenizer, student, work / f"{student}-{tokenizer}")
        export = work / f"{student}-{tokenizer}-onnx"
        export_model(model, export, intents=["golden hour"], max_new_tokens=8, force=True)
        rows.append(measure(export, data["test"], n, tokenizer=tokenizer, student=student))
        if with_any and rows[-1].mode == "runs":
            shutil.copytree(export, export.with_name(export.name + "-any"), dirs_exist_ok=True)
            recompile_grammar(export.with_name(export.name + "-any"), "any")
            rows.append(measure(export.with_name(export.name + "-any"), data["test"], n, tokenizer=tokenizer,
                                student=student))
    return rows


def markdown(rows: list[FamilyRow]) -> str:
    head = ("| tokenizer family | student | vocab | grammar mode | decoder calls / request (step-by-step) "
            "| p50 ms / request (step-by-step) | identical to step-by-step | scripted answers |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r.tokenizer} | {r.student} | {r.vocab:,} | {r.mode} | {r.calls:.1f} ({r.step_calls:.1f}) "
        f"| {r.p50_ms:.1f} ({r.step_p50_ms:.1f}) | {'yes' if r.identical else 'NO'} | {'yes' if r.scripted else 'NO'} |\n"
        for r in rows
    )


__all__ = ["CASES", "FamilyRow", "markdown", "measure", "run", "student_dir"]
