"""Maps ``vedit bench latency`` options onto :mod:`vedit.bench.latency` (defaults: the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import click

from vedit import paths
from vedit.bench.latency import LatencyRun, measure_model
from vedit.bench.report import write
from vedit.errors import ModelDirError


def _parse_exports(specs: Sequence[str]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        label, sep, d = spec.partition("=")
        if not sep or not label or not d:
            raise click.BadParameter(f"{spec!r}: expected LABEL=EXPORT_DIR", param_hint="--export")
        out[label] = Path(d)
    return out


def _default_exports() -> dict[str, Path]:
    found = {p: paths.exports_dir() / f"flan-t5-{p}" for p in ("fp32", "int8")}
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


def run_latency_command(*, student: Path | None, adapter: Path | None, exports: Sequence[str], base_shape: bool,
                        triton: bool, requests: int, concurrency: str, threads: int, out: Path | None,
                        triton_requests: int = 200, others: Sequence[Subject] = ()) -> dict[str, Path]:
    try:
        levels = sorted({int(x) for x in concurrency.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter(f"{concurrency!r}: expected e.g. 1,4,16", param_hint="--concurrency") from None
    student = student or paths.students_dir() / "t5"
    if not student.is_dir():
        raise ModelDirError(f"no student at {student}; build the demo students first (vedit demo build)")
    chosen = _parse_exports(exports) if exports else _default_exports()
    intents = _intents(requests)
    runs: list[LatencyRun] = [
        measure_model(f"demo student ({student.name})", student_dir=student, adapter_dir=adapter, exports=chosen,
                      intents=intents, threads=threads, triton=triton, concurrencies=levels,
                      triton_requests=triton_requests)
    ]
    for o in others:
        runs.append(measure_model(o.name, student_dir=o.student, adapter_dir=o.adapter, exports=o.exports,
                                  intents=intents, threads=threads))
    if base_shape:
        from vedit.bench.base_shape import ensure_base_shape

        b_student, b_exports = ensure_base_shape(precisions=("fp32", "int8"))
        runs.append(measure_model("flan-t5-base shape (random weights)", student_dir=b_student,
                                  exports=b_exports, intents=intents[: max(5, requests // 3)],
                                  threads=threads))
    return write(runs, out or paths.reports_dir())
