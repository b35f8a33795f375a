"""The main job: the whole pipeline on the demo students, end to end.

The T5 student comes first, as far as its first answers: data -> tokenizer -> T5 -> ONNX fp32 export
(validated) -> constrained answers for a few intents. A newcomer sees what the toolkit does after a
few minutes instead of after the whole run. Then: Llama student and the LoRA adapters -> offline
metrics (PyTorch) -> merge LoRA -> the other exports (T5 int8 + int4, Llama fp32 + int8 + int4) -> decoding
guarantees (schema validity on hostile input, jump-forward == step-by-step; every export's answers
alone, in batches, with jump-forward and drafts against step-by-step alone) -> parity -> Triton
repository served by a real tritonserver, answers over HTTP and gRPC -> latency report and plot.

Each stage announces itself with a rough duration on this project's 2-core machine, and says when it
reused what an earlier run left (students by cache key, exports by source-weight checksum), so a
second run re-measures without rebuilding. Results land in ``<home>/reports``: ``pipeline.md`` sums up.

``quick`` is the tour: tiny students, few rows, under ``<home>/tour`` so its artifacts are never
taken for (or reused as) the full run's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from vedit import paths
from vedit.clibase import HELP_OPTIONS, show_progress
from vedit.atomicio import atomic_open
from vedit.extras import require_extras
from vedit.intents import SAMPLE_INTENTS
from vedit.manifest import QUANTIZED

Echo = Callable[[str], None]

TOUR_DIR = "tour"


@dataclass(frozen=True)
class Stage:
    title: str
    #: rough seconds on this project's 2-core machine when nothing is reused (full run, tour)
    full_s: int
    tour_s: int


#: Between two fresh-clone runs on the 2-core CI-class machine while it was shared (load ~1: T5 267 s,
#: Llama 237 s, whole run 15 min; load 2-6: 488 s, 456 s, 28 min; see docs/getting-started.md).
STAGES: dict[str, Stage] = {
    "t5": Stage("T5 student: synthetic data, tokenizer, training", 360, 10),
    "t5-export": Stage("T5 student -> ONNX fp32, validated against PyTorch", 10, 10),
    "answers": Stage("First answers: constrained decoding on the T5 export", 5, 5),
    "llama": Stage("Llama student and the LoRA adapters: training", 330, 5),
    "metrics": Stage("Offline metrics of the PyTorch originals (test split)", 60, 10),
    "merge": Stage("LoRA merge, checked against the adapter models", 10, 5),
    "exports": Stage("Other exports: T5 int8 and int4, Llama fp32, int8 and int4, each validated", 20, 20),
    "guarantees": Stage("Constrained decoding guarantees on the T5 export; batch and mode invariance of every export",
                        240, 30),
    "parity": Stage("Parity: each export against its PyTorch original", 60, 10),
    "triton": Stage("Triton: a real tritonserver answering over HTTP and gRPC", 10, 10),
    "latency": Stage("Latency report and plot: demo students, real-size shapes, peer engines", 2700, 30),
}


def _about(seconds: float) -> str:
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5):.0f} s"
    return f"about {round(seconds / 60):.0f} min"


@dataclass
class PipelineOptions:
    quick: bool = False  # the tour: tiny students, few parity rows and requests, under <home>/tour
    force: bool = False  # re-export even if exports exist
    parity_limit: int = 200  # test intents per parity run (0 = the whole test split)
    latency_requests: int = 30
    base_shape: bool = True
    peers: bool = True  # time the peer engines (own cached environments; the first run builds them)
    triton: bool = True
    threads: int = 2
    home: Path | None = None  # default: vedit.paths.home()
    seed: int = 0


def pipeline_home(options: PipelineOptions) -> Path:
    """Where this run's artifacts go: the home, or ``<home>/tour`` for the tour."""
    home = Path(options.home).resolve() if options.home else paths.home()
    return home / TOUR_DIR if options.quick else home


@dataclass
class PipelineReport:
    sections: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    title: str = "vedit main job"

    def add(self, title: str, body: str, echo: Echo) -> None:
        self.sections.append((title, body))
        echo(f"\n=== {title} ===\n{body}")

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for title, body in self.sections:
            out += [f"## {title}", "", "```", body, "```", ""]
        if self.failures:
            out += ["## Failures", ""] + [f"- {f}" for f in self.failures]
        return "\n".join(out)


class _Stages:
    """Announces each stage (number, title, rough duration) and how long it took."""

    def __init__(self, echo: Echo, quick: bool):
        self.echo, self.quick = echo, quick
        self.done = 0

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        st = STAGES[key]
        self.done += 1
        est = st.tour_s if self.quick else st.full_s
        self.echo(f"\n--- [{self.done}/{len(STAGES)}] {st.title} ({_about(est)} on 2 cores) ---")
        began = time.perf_counter()
        yield
        self.echo(f"--- [{self.done}/{len(STAGES)}] done in {time.perf_counter() - began:.0f} s ---")


@contextmanager
def _home_env(home: Path) -> Iterator[None]:
    """Point every default-path lookup further down (latency intents, Triton files, base shape) at
    this run's home for the duration of the run."""
    before = os.environ.get("VEDIT_HOME")
    os.environ["VEDIT_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VEDIT_HOME", None)
        else:
            os.environ["VEDIT_HOME"] = before


def _export(name: str, model: Path, *, adapter: Path | None, family: str, precision: str, force: bool,
            home: Path, echo: Echo) -> Path:
    from vedit.export import export_model
    from vedit.export.checks import export_is_current

    out = home / "exports" / f"{name}-{precision}"
    if not force and export_is_current(out, model, adapter):
        echo(f"reused: {out} (same source weights)")
        return out
    result = export_model(model, out, family=family, adapter_dir=adapter, precision=precision, force=True)
    echo("\n".join(result.summary_lines()))
    return out


def _export_line(family: str, precision: str, d: Path) -> str:
    from vedit.manifest import read_manifest

    man = read_manifest(d)
    size = sum(f.stat().st_size for f in d.glob("*.onnx*")) / 1e6
    v = man.data.get("validation", {})
    g = v.get("greedy", {})
    worst = max(v.get("max_abs_diff", {}).values(), default=float("nan"))
    return (f"{family:<5} {precision}: {size:7.2f} MB ONNX, validation passed={v.get('passed')}, "
            f"max |ONNX - PyTorch| {worst:.2e}, greedy token agreement "
            f"{g.get('token_agreement', float('nan')):.1%} ({g.get('identical')}/{g.get('sequences')} "
            "sequences identical)")


def _vedit_command() -> str:
    """``vedit`` if it is on PATH, else the one next to this Python (``.venv/bin/vedit``)."""
    if shutil.which("vedit"):
        return "vedit"
    exe = Path(sys.executable).parent / "vedit"
    if not exe.exists():
        return "vedit"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _web_site(export_dir: Path, home: Path) -> str:
    """Build the static site of the T5 export (seconds) and say how to open it; a missing web
    runtime (no node) is reported, not fatal: the rest of the job needs none."""
    from vedit.errors import WebBuildError
    from vedit.web import build_site

    try:
        site = build_site(export_dir, home / "web" / export_dir.name)
    except WebBuildError as exc:
        return f"not built: {exc}"
    return (f"{site.out_dir} ({site.bytes_total / 1e6:.1f} MB, model {site.bytes_model / 1e6:.1f} MB): open it with\n"
            f"  python -m http.server -b 127.0.0.1 -d {site.out_dir} 8000\n"
            "  then http://127.0.0.1:8000/?intent=golden%20hour (answers in the page, offline once loaded)")


def _answers(preds) -> str:
    """The way ``vedit predict`` prints them: the intent, then one line per tool call."""
    lines = []
    for p in preds:
        lines.append(p.intent)
        width = max(len(n) for n in p.calls)
        for name, call in p.calls.items():
            lines.append(f"  {name:<{width}}  {call.dumps()}{'' if call.used else '  (not used)'}")
    return "\n".join(lines)


def _contact_sheet(preds, path: Path) -> str:
    """The answers drawn on scikit-image's sample photos, before/after (vedit.render)."""
    from vedit.render.sheet import contact_sheet

    sheet = contact_sheet(preds, path)
    missed = f"; not drawn: {'; '.join(sheet.skipped)}" if sheet.skipped else ""
    return f"contact sheet: {path} (rendered in {sheet.seconds:.1f} s{missed})"


def _build_lines(built, stages: tuple[str, ...]) -> list[str]:
    lines = []
    for stage in stages:
        info = built.info.get(stage, {})
        if stage in built.built:
            extra = ""
            if "steps" in info:
                extra = (f": {info['steps']} steps, {info['seconds']:.0f} s, "
                         f"loss {info['first_loss']:.3f} -> {info['last_loss']:.3f}")
            lines.append(f"built: {stage}{extra}")
        else:
            lines.append(f"reused: {stage} ({built.home / ('data' if stage == 'data' else 'students/' + stage)}, "
                         "same cache key)")
    return lines


def _parity_summary(rows: list[tuple[str, int, object]]) -> str:
    out = [f"{'export':<11} {'rows':>5} {'overall (constrained PyTorch -> export)':>40} {'exact agreement':>16} "
           f"{'valid':>7}  gate"]
    for name, n, res in rows:
        ref = res.reference.report.subsets["All"].overall
        cand = res.candidate.report.subsets["All"].overall
        out.append(f"{name:<11} {n:>5} {f'{ref:.3f} -> {cand:.3f} ({res.overall_delta:+.4f})':>40} "
                   f"{res.agreement:>16.1%} {res.candidate.validity:>7.1%}  {'PASS' if res.passed else 'FAIL'}")
    return "\n".join(out)


def _total(quick: bool) -> int:
    return sum(s.tour_s if quick else s.full_s for s in STAGES.values())


def _intro(options: PipelineOptions, home: Path) -> str:
    total = _total(options.quick)
    first = sum((s.tour_s if options.quick else s.full_s) for k, s in STAGES.items()
                if k in ("t5", "t5-export", "answers"))
    if options.quick:
        return "\n".join([
            "vedit TOUR (--quick): every stage of the pipeline, on TINY students trained for a few steps",
            f"on a small synthetic dataset, with {options.parity_limit} parity rows and {options.latency_requests} "
            "latency requests per path.",
            "The answers and scores below show what each stage does, not how good a student gets: for that,",
            f"run the full main job (bash scripts/demo.sh, {_about(_total(False))} on 2 cores).",
            f"{_about(total)} on 2 cores (longer on a busy machine); first answers after {_about(first)}.",
            f"Artifacts: {home} (kept apart from the full run's).",
        ])
    return "\n".join([
        "vedit main job: the whole pipeline on the demo students (9,252 synthetic intents).",
        f"{_about(total)} on 2 cores when nothing is cached (longer on a busy machine); first answers after "
        f"{_about(first)}",
        "(the T5 student is trained and exported first). A re-run reuses what is current.",
        "For a tour of a few minutes on tiny students: bash scripts/demo.sh --quick",
        f"Artifacts: {home}",
    ])


def run(options: PipelineOptions, echo: Echo) -> PipelineReport:
    home = pipeline_home(options)
    with _home_env(home):
        return _run(options, home, echo)


def _run(options: PipelineOptions, home: Path, echo: Echo) -> PipelineReport:
    from vedit.data.metrics import format_table
    from vedit.client import connect
    from vedit.students import demo

    report = PipelineReport(title="vedit tour (--quick: tiny students, few rows)" if options.quick
                            else "vedit main job")
    stage = _Stages(echo, options.quick)
    reports = home / "reports"
    t_start = time.perf_counter()
    echo(_intro(options, home))
    report.sections.append(("About this run", _intro(options, home)))

    t5, _ = demo.student_dirs("t5", home)
    t5_lora = home / "students" / "t5-lora"
    llama_base, llama_lora = demo.student_dirs("llama", home)
    llama_merged = home / "students" / "llama-merged"  # the merge stage's output; the peers load it
    exports: dict[tuple[str, str], Path] = {}

    # 1. the T5 student first, up to its first answers
    with stage("t5"):
        first = ("data", "tokenizer", "t5")
        built = demo.build(home, quick=options.quick, seed=options.seed, upto="t5")
        report.add("T5 student", "\n".join(_build_lines(built, first)), echo)
    with stage("t5-export"):
        exports[("t5", "fp32")] = _export("flan-t5", t5, adapter=None, family="t5", precision="fp32",
                                          force=options.force, home=home, echo=echo)
    with stage("answers"):
        with connect(exports[("t5", "fp32")], threads=options.threads) as client:
            preds = client.predict(list(SAMPLE_INTENTS))
        body = "\n".join([
            _export_line("t5", "fp32", exports[("t5", "fp32")]),
            "",
            _answers(preds),
            "",
            f"try your own: {_vedit_command()} predict --model {exports[('t5', 'fp32')]} \"sunset in Paris\"",
        ])
        if options.quick:
            body += "\n(tour: a tiny student trained for a few steps; its answers are valid JSON, not good edits)"
        body += "\n" + _contact_sheet(preds, reports / "contact-sheet.png")
        report.add("First answers (in-process, T5 fp32 export, constrained decoding)", body, echo)
        echo(f"first answers after {time.perf_counter() - t_start:.0f} s")
        report.add("In the browser (vedit web build)", _web_site(exports[("t5", "fp32")], home), echo)

    # 2. the rest of the students, offline metrics of the PyTorch originals
    with stage("llama"):
        built = demo.build(home, quick=options.quick, seed=options.seed)
        report.add("Llama student and LoRA adapters",
                   "\n".join(_build_lines(built, ("t5-lora", "llama-base", "llama-lora"))), echo)
    with stage("metrics"):
        for student, label in (("t5", "T5 student"), ("llama", "Llama base + LoRA adapter")):
            ev = demo.evaluate(student, home, threads=options.threads)
            how = "reused: cached predictions" if ev.cached else f"{ev.seconds:.0f} s"
            report.add(f"Offline metrics, PyTorch reference: {label} ({how})",
                       format_table(ev.report, digits=3), echo)

    # 3. merge (verified against the adapter model)
    from vedit.export import merge

    with stage("merge"):
        lines = []
        for base, adapter, out in ((llama_base, llama_lora, llama_merged),
                                   (t5, t5_lora, home / "students" / "t5-lora-merged")):
            if adapter is None or not adapter.exists():
                continue
            m = merge(base, adapter, out, force=True)
            lines.append(f"{out.name}: {m.lora_modules} LoRA modules, max |merged - adapter| logits "
                         f"{m.max_abs_diff:.2e} (tolerance {m.tolerance:.1e}), adapter effect "
                         f"{m.adapter_effect:.3f} -> {'ok' if m.passed else 'FAILED'}")
        report.add("LoRA merge", "\n".join(lines), echo)

    # 4. the other exports (validated against PyTorch by the exporter)
    with stage("exports"):
        for precision in QUANTIZED:  # int8 and int4 beside each other (vedit.manifest)
            exports[("t5", precision)] = _export("flan-t5", t5, adapter=None, family="t5", precision=precision,
                                                 force=options.force, home=home, echo=echo)
        for precision in ("fp32", *QUANTIZED):
            exports[("llama", precision)] = _export("llama", llama_base, adapter=llama_lora, family="llama",
                                                    precision=precision, force=options.force, home=home,
                                                    echo=echo)
        report.add("Exports", "\n".join(_export_line(f, p, d) for (f, p), d in exports.items()), echo)

    # 5. guarantees of the runtime on the real export
    from vedit.bench.guarantees import check
    from vedit.data.rows import read_truth

    truth = read_truth(home / "data" / "test.jsonl")
    with stage("guarantees"):
        g = check(exports[("t5", "fp32")], [r.intent for r in truth][: 50 if options.quick else 1000],
                  fuzz=30 if options.quick else 300, threads=options.threads)
        report.add("Constrained decoding guarantees (T5 fp32 export)", "\n".join(g.lines()), echo)
        if g.valid != g.fuzzed * 3 or g.identical != g.compared:
            report.failures.append("constrained decoding guarantees broken")
        # every export, every decoding mode and call shape against step-by-step alone: reported per
        # precision; only fp32 jump-forward != step-by-step is a broken guarantee (vedit.bench.invariance)
        from vedit.bench.invariance import check as invariance

        asked = list(dict.fromkeys(r.intent for r in truth))[: 12 if options.quick else 60]
        found = [invariance(d, asked, threads=options.threads) for d in exports.values()]
        report.add(f"Batch and mode invariance ({len(asked)} test intents, every export)",
                   "\n".join(line for inv in found for line in inv.lines()), echo)
        report.failures += [f"invariance {inv.family} {inv.precision}: jump-forward differs from step-by-step"
                            for inv in found if inv.broken]
        with atomic_open(reports / "invariance.json") as f:
            f.write(json.dumps([inv.to_json() for inv in found], indent=1))

    # 6. parity
    from vedit.bench.parity import format_parity, run_parity

    if options.parity_limit:
        truth = truth[: options.parity_limit]
    with stage("parity"):
        rows = []
        for (family, precision), d in exports.items():
            ref, adapter = (t5, None) if family == "t5" else (llama_base, llama_lora)
            res = run_parity(ref, truth, candidate=d, adapter_dir=adapter, threads=options.threads)
            worst = res.visual.save_worst(reports / f"parity-{family}-{precision}-worst.png") if res.visual else None
            report.add(f"Parity: {family} {precision} ({len(truth)} test intents)",
                       format_parity(res) + (f"\nworst rendered pair side by side: {worst}" if worst else ""), echo)
            rows.append((f"{family} {precision}", len(truth), res))
            if not res.passed:
                report.failures.append(f"parity {family} {precision}: {'; '.join(res.failures)}")
            with atomic_open(reports / f"parity-{family}-{precision}.json") as f:
                f.write(json.dumps(res.to_json(), indent=1))
        report.add("Parity summary (overall score, All)", _parity_summary(rows), echo)

    # 7. Triton: build, serve, answer over HTTP and gRPC
    with stage("triton"):
        if not options.triton:
            echo("skipped (--no-triton)")
        else:
            from vedit.triton_repo.builder import build_repository
            from vedit.serving.server import TritonServer

            repo = build_repository(exports[("t5", "fp32")], profile="cpu", out=home / "triton" / "repo", force=True)
            lines = [f"repository: {repo}"]
            with TritonServer(repo) as server:
                lines.append("endpoints: " + ", ".join(f"{k} {v}" for k, v in server.urls.items()))
                in_process = {p.intent: p.to_json() for p in preds}
                for proto in ("http", "grpc"):
                    with connect(server.urls[proto]) as client:
                        served = client.predict(list(SAMPLE_INTENTS))
                    same = all(p.to_json() == in_process[p.intent] for p in served)
                    lines.append(f"{proto}: {len(served)} answers, identical to in-process: {same}")
                    if not same:
                        report.failures.append(f"triton {proto} answers differ from in-process")
                lines += ["served over gRPC:", _answers(served[:2])]
            report.add("Triton (real tritonserver, cpu profile)", "\n".join(lines), echo)

    # 8. latency
    from vedit.bench.latency_cli import Subject, run_latency_command

    with stage("latency"):
        llama = Subject("demo Llama student (base + LoRA)", llama_base, llama_lora,
                        {p: exports[("llama", p)] for p in ("fp32", *QUANTIZED)},
                        merged=llama_merged if (llama_merged / "config.json").is_file() else None)
        files = run_latency_command(student=t5, adapter=None,
                                    exports=[f"{p}={exports[('t5', p)]}" for p in ("fp32", *QUANTIZED)],
                                    base_shape=options.base_shape, triton=options.triton,
                                    requests=options.latency_requests, concurrency="1,4,16",
                                    threads=options.threads, out=reports,
                                    triton_requests=30 if options.quick else 200, others=[llama],
                                    peers=options.peers)
        report.add("Latency", files["md"].read_text(encoding="utf-8") + f"\nplot: {files['png']}", echo)

    what = "tour" if options.quick else "main job"
    done = [f"{what} took {time.perf_counter() - t_start:.0f} s; reports in {reports} (pipeline.md, latency.png)"]
    if options.quick:
        done.append("This was the tour (tiny students). The full run, with students worth measuring: "
                    "bash scripts/demo.sh")
    report.add("Done", "\n".join(done), echo)
    with atomic_open(reports / "pipeline.md") as f:
        f.write(report.markdown())
    return report


@click.command("run", context_settings={"help_option_names": HELP_OPTIONS})
@click.option("--quick", is_flag=True,
              help="The tour: tiny students, 12 parity intents, 3 latency requests, no base-shape model "
                   "(about 2 min on a quiet 2-core machine); artifacts under <home>/tour.")
@click.option("--force", is_flag=True, help="Re-export even if the exports exist.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where artifacts live (default: $VEDIT_HOME, else the per-user data dir); the tour uses "
                   "<home>/tour.")
@click.option("--seed", type=int, default=None, help="Seed of the demo data and training runs (default 0).")
@click.option("--parity-limit", type=click.IntRange(min=0), default=None,
              help="Test intents per parity run (0 = all 1,000). Default 200; 12 with --quick.")
@click.option("--requests", type=click.IntRange(min=3), default=None,
              help="Requests per path in the latency report. Default 30; 3 with --quick.")
@click.option("--base-shape/--no-base-shape", default=None,
              help="Time the real-size models too (flan-t5-base and TinyLlama-1.1B shapes, random weights, "
                   "scripted answers). Default: yes, no with --quick.")
@click.option("--peers/--no-peers", default=None,
              help="Time the peer engines in the same runs (optimum ORT, CTranslate2, onnxruntime-genai, "
                   "llama.cpp; each in its own cached environment, built on first use: llama.cpp compiles "
                   "for about 20 min on 2 cores). Default: yes, no with --quick.")
@click.option("--triton/--no-triton", default=True, help="Serve with a real tritonserver.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.pass_context
def run_cmd(ctx: click.Context, quick: bool, force: bool, home: Path | None, seed: int | None,
            parity_limit: int | None, requests: int | None, base_shape: bool | None, peers: bool | None,
            triton: bool, threads: int) -> None:
    """The main job: build, merge, export, parity, Triton, latency, on the demo students."""
    from vedit.students.cli import group_value

    require_extras("export", "bench", *(("triton",) if triton else ()))

    quick = bool(group_value(ctx, "quick", quick))
    force = bool(group_value(ctx, "force", force))
    home = group_value(ctx, "home", home)
    seed = group_value(ctx, "seed", seed)
    options = PipelineOptions(
        quick=quick, force=force, home=home, seed=seed or 0,
        parity_limit=parity_limit if parity_limit is not None else (12 if quick else 200),
        latency_requests=requests if requests is not None else (3 if quick else 30),
        base_shape=base_shape if base_shape is not None else not quick,
        peers=peers if peers is not None else not quick,
        triton=triton, threads=threads,
    )
    show_progress(logging.Formatter("  %(message)s"))  # the stages' inner steps, indented under them
    report = run(options, lambda m: click.echo(m, err=True) if m.startswith("  ") else click.echo(m))
    if report.failures:
        click.echo("failures:\n" + "\n".join(f"  {f}" for f in report.failures), err=True)
        raise SystemExit(1)
