"""Maps ``vedit bench latency`` options onto :mod:`vedit.bench.latency` (defaults: the demo)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import click

from vedit import paths
from vedit.bench.latency import Call, LatencyRun, measure_model
from vedit.bench.report import write
from vedit.errors import ModelDirError
from vedit.manifest import PRECISIONS, QUANTIZED

log = logging.getLogger(__name__)


def _parse_exports(specs: Sequence[str]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        label, sep, d = spec.partition("=")
        if not sep or not label or not d:
            raise click.BadParameter(f"{spec!r}: expected LABEL=EXPORT_DIR", param_hint="--export")
        out[label] = Path(d)
    return out


def _default_exports() -> dict[str, Path]:
    found = {p: paths.exports_dir() / f"flan-t5-{p}" for p in PRECISIONS}
    found = {k: v for k, v in found.items() if (v / "manifest.json").exists()}
    if "fp32" not in found:
        raise ModelDirError("no demo export found; run `vedit export flan-t5 --to onnx` (and --precision int8)")
    return found


def _intents(n: int) -> list[str]:
    """Test-set intents when the demo data exists (realistic lengths), else a fixed list."""
    test = paths.data_dir() / "test.jsonl"
    if test.exists():
        from vedit.data.rows import read_truth

        return [r.intent for r in read_truth(test)[:n]]
    from vedit.bench.serving import distinct_intents

    return distinct_intents(n)


@dataclass(frozen=True)
class Subject:
    """One more student to time at concurrency 1 (PyTorch and its exports; no Triton)."""

    name: str
    student: Path
    adapter: Path | None
    exports: dict[str, Path]
    merged: Path | None = None  # the adapter merged into the student: what peer engines load


def run_latency_command(*, student: Path | None, adapter: Path | None, exports: Sequence[str], base_shape: bool,
                        triton: bool, requests: int, concurrency: str, threads: int, out: Path | None,
                        triton_requests: int = 200, others: Sequence[Subject] = (), peers: bool = False,
                        shape_requests: int | None = None, shapes: Sequence[str] = ("t5", "llama")) -> dict[str, Path]:
    """The demo students' runs, then (``base_shape``) the scripted runs of the real-size ``shapes``.

    ``peers``: every run also times the peer engines of its family, in the same interleaved run.
    ``shape_requests``: requests per base-shape run (default: a third of ``requests``, at least 5).
    """
    peer_factory = _peers() if peers else None
    try:
        levels = sorted({int(x) for x in concurrency.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter(f"{concurrency!r}: expected e.g. 1,4,16", param_hint="--concurrency") from None
    name = "demo student (t5)" if student is None else student.name + (f" + {adapter.name}" if adapter else "")
    student = student or paths.students_dir() / "t5"
    if not student.is_dir():
        raise ModelDirError(f"no student at {student}; build the demo students first (vedit demo build)")
    chosen = _parse_exports(exports) if exports else _default_exports()
    intents = _intents(requests)
    runs: list[LatencyRun] = [
        measure_model(name, student_dir=student, adapter_dir=adapter, exports=chosen,
                      intents=intents, threads=threads, triton=triton, concurrencies=levels,
                      triton_requests=triton_requests, peers=peer_factory)
    ]
    add_profiles(runs[0], chosen, intents[:10], threads=threads)
    for o in others:
        runs.append(measure_model(o.name, student_dir=o.student, adapter_dir=o.adapter, exports=o.exports,
                                  intents=intents, threads=threads, peers=peer_factory, peer_student_dir=o.merged))
    if base_shape:
        runs.extend(shape_runs(shape_requests or max(5, requests // 3), threads=threads, peers=peer_factory,
                               shapes=shapes))
    return write(runs, out or paths.reports_dir())


def _peers() -> Callable[..., dict[str, Call]] | None:
    """:func:`vedit.peers.peer_paths`, or ``None`` (logged) when that package is not there."""
    try:
        from vedit.peers import peer_paths
    except ImportError as exc:
        log.warning(f"--peers: peer engines skipped, vedit.peers cannot be imported ({exc})")
        return None
    return peer_paths


def shape_runs(n: int, *, threads: int, peers: Callable[..., dict[str, Call]] | None = None,
               shapes: Sequence[str] = ("t5", "llama")) -> list[LatencyRun]:
    """Scripted runs of the real-size random models (built and exported once, cached): ``n`` requests each."""
    from vedit.bench.base_shape import LLAMA_BASE, T5_BASE, ensure_base_shape, ensure_llama_shape
    from vedit.workload.scripted import load_scripts

    runs = []
    for family in shapes:
        shape, ensure = (T5_BASE, ensure_base_shape) if family == "t5" else (LLAMA_BASE, ensure_llama_shape)
        # the TinyLlama shape keeps to fp32 and int8: with PyTorch and the peers' copies beside it, one
        # more 1.1B model in the run does not fit 24 GB (swapping, measured)
        b_student, b_exports = ensure(precisions=("fp32", *QUANTIZED) if family == "t5" else ("fp32", "int8"))
        scripts = load_scripts(b_exports["fp32"], n)
        runs.append(measure_model(shape.title, student_dir=b_student, exports=b_exports, scripts=scripts,
                                  threads=threads, peers=peers, step_for=("fp32",) if family == "t5" else (),
                                  warmup=1))
        add_profiles(runs[-1], b_exports, [s.intent for s in scripts[:PROFILED]], threads=threads,
                     scripts={s.intent: s for s in scripts})
        if peers is not None and family == "llama":
            add_step_costs(runs[-1], b_student, b_exports, [s.intent for s in scripts[:2]], threads=threads)
    return runs


def add_step_costs(run: LatencyRun, student: Path, exports: dict[str, Path], intents: Sequence[str], *,
                   threads: int) -> None:
    """vedit's batched decoder step beside onnxruntime-genai's on the same model and precision, in the notes."""
    from vedit.peers import failure_reason

    try:
        from vedit.peers.ortgenai import step_costs

        costs = step_costs(student_dir=student, exports=exports, intents=intents, threads=threads, steps=16,
                           rounds=2)
    except Exception as exc:  # noqa: BLE001 -- the peer failing costs this line, not the report
        run.notes.append(f"decoder step vs onnxruntime-genai not measured: {failure_reason(exc)}")
        return
    for c in costs:
        run.notes.append(f"decoder step, batch {c.batch} (one request's 3 prompts), {c.steps} steps x "
                         f"{len(intents)} requests, {c.precision}: vedit {c.vedit_ms:.1f} ms, onnxruntime-genai "
                         f"{c.genai_ms:.1f} ms (vedit/genai {c.ratio:.2f}); prefill {c.vedit_prefill_ms:.0f} vs "
                         f"{c.genai_prefill_ms:.0f} ms (full prompts, no prefix cache on either)")
        run.step_costs.append(c.to_json())


#: requests per profile (sequential, after the timed run)
PROFILED = 5


def add_profiles(run: LatencyRun, exports: dict[str, Path], intents: Sequence[str], *, threads: int,
                 scripts: dict | None = None) -> None:
    """Where vedit's time goes on each export (:mod:`vedit.bench.profile`), as lines of the run's notes."""
    from vedit.bench.profile import profile_predictor
    from vedit.decoding import Predictor

    for label, d in exports.items():
        drafted = Predictor.load(d, threads=threads, draft=True)  # one load: both profiles share its sessions
        for name, pred in ((f"vedit {label}", drafted.without_drafts()), (f"vedit {label} drafts", drafted)):
            log.info(f"{run.model}: profiling {name} on {len(intents)} requests")
            prof = profile_predictor(pred, intents, label=name, scripts=scripts)
            run.notes.append(prof.line())
            run.profiles.append(prof.to_json())
