"""The main job: the whole pipeline on the demo students, end to end.

build data + students -> offline metrics (PyTorch) -> merge LoRA -> export fp32 + int8 (T5, Llama)
-> embedded predictions -> decoding guarantees (schema validity on hostile input, jump-forward ==
step-by-step) -> parity (fp32, int8; T5, Llama) -> Triton repository served by a real
tritonserver, answers over HTTP and gRPC -> latency report (demo student and base-shaped model).

Every stage reuses what an earlier run left (exports are kept unless ``force``), so a second run
re-measures without rebuilding. Results land in ``$VEDIT_HOME/reports``: ``pipeline.md`` sums up.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from vedit import paths
from vedit.atomicio import atomic_open
from vedit.extras import require_extras

Echo = Callable[[str], None]

SAMPLE_INTENTS = ["golden hour", "Morocco", "welding mask", "cold tone", "😈"]


@dataclass
class PipelineOptions:
    quick: bool = False  # tiny students, few parity rows, no base-shape model (smoke test)
    force: bool = False  # re-export even if exports exist
    parity_limit: int = 200  # test intents per parity run (0 = the whole test split)
    latency_requests: int = 30
    base_shape: bool = True
    triton: bool = True
    threads: int = 2


@dataclass
class PipelineReport:
    sections: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, title: str, body: str, echo: Echo) -> None:
        self.sections.append((title, body))
        echo(f"\n=== {title} ===\n{body}")

    def markdown(self) -> str:
        out = ["# vedit main job", ""]
        for title, body in self.sections:
            out += [f"## {title}", "", "```", body, "```", ""]
        if self.failures:
            out += ["## Failures", ""] + [f"- {f}" for f in self.failures]
        return "\n".join(out)


def _export(name: str, model: Path, *, adapter: Path | None, family: str, precision: str, force: bool,
            echo: Echo) -> Path:
    from vedit.export import export_model
    from vedit.export.checks import export_is_current

    out = paths.exports_dir() / f"{name}-{precision}"
    if not force and export_is_current(out, model, adapter):
        echo(f"reusing {out} (same source weights)")
        return out
    result = export_model(model, out, family=family, adapter_dir=adapter, precision=precision, force=True,
                          progress=lambda m: echo(f"  {m}"))
    echo("\n".join(result.summary_lines()))
    return out


def run(options: PipelineOptions, echo: Echo) -> PipelineReport:
    from vedit.data.metrics import format_table
    from vedit.students import demo

    report = PipelineReport()
    t_start = time.perf_counter()

    # 1. data + students, offline metrics of the PyTorch originals
    built = demo.build(force=False, quick=options.quick)
    report.add("Demo dataset and students", built.summary(), echo)
    for student, label in (("t5", "T5 student"), ("llama", "Llama base + LoRA adapter")):
        ev = demo.evaluate(student, threads=options.threads)
        report.add(f"Offline metrics, PyTorch reference: {label}", format_table(ev.report, digits=3), echo)

    t5, _ = demo.student_dirs("t5")
    t5_lora = paths.students_dir() / "t5-lora"
    llama_base, llama_lora = demo.student_dirs("llama")

    # 2. merge (verified against the adapter model)
    from vedit.export import merge

    lines = []
    for base, adapter, name in ((llama_base, llama_lora, "llama-merged"), (t5, t5_lora, "t5-lora-merged")):
        if adapter is None or not adapter.exists():
            continue
        m = merge(base, adapter, paths.students_dir() / name, force=True)
        lines.append(f"{name}: {m.lora_modules} LoRA modules, max |merged - adapter| logits {m.max_abs_diff:.2e} "
                     f"(tolerance {m.tolerance:.1e}), adapter effect {m.adapter_effect:.3f} -> "
                     f"{'ok' if m.passed else 'FAILED'}")
    report.add("LoRA merge", "\n".join(lines), echo)

    # 3. exports (validated against PyTorch by the exporter)
    from vedit.manifest import read_manifest

    exports = {}
    for precision in ("fp32", "int8"):
        exports[("t5", precision)] = _export("flan-t5", t5, adapter=None, family="t5", precision=precision,
                                             force=options.force, echo=echo)
        exports[("llama", precision)] = _export("llama", llama_base, adapter=llama_lora, family="llama",
                                                precision=precision, force=options.force, echo=echo)
    lines = []
    for (family, precision), d in exports.items():
        man = read_manifest(d)
        size = sum(f.stat().st_size for f in d.glob("*.onnx*")) / 1e6
        v = man.data.get("validation", {})
        g = v.get("greedy", {})
        worst = max(v.get("max_abs_diff", {}).values(), default=float("nan"))
        lines.append(f"{family:<5} {precision}: {size:7.2f} MB ONNX, validation passed={v.get('passed')}, "
                     f"max |ONNX - PyTorch| {worst:.2e}, greedy token agreement "
                     f"{g.get('token_agreement', float('nan')):.1%} ({g.get('identical')}/{g.get('sequences')} "
                     "sequences identical)")
    report.add("Exports", "\n".join(lines), echo)

    # 4. the embedded predictor
    from vedit.client import connect

    with connect(exports[("t5", "fp32")], threads=options.threads) as client:
        preds = client.predict(SAMPLE_INTENTS)
    report.add("vedit predict (in-process, T5 fp32)",
               "\n".join(json.dumps(p.to_json(), ensure_ascii=False) for p in preds), echo)

    # 5. guarantees of the runtime on the real export
    from vedit.bench.guarantees import check
    from vedit.data.rows import read_truth

    truth = read_truth(paths.data_dir() / "test.jsonl")
    truth_intents = [r.intent for r in truth]
    g = check(exports[("t5", "fp32")], truth_intents[: 50 if options.quick else 1000],
              fuzz=30 if options.quick else 300, threads=options.threads)
    report.add("Constrained decoding guarantees (T5 fp32 export)", "\n".join(g.lines()), echo)
    if g.valid != g.fuzzed * 3 or g.identical != g.compared:
        report.failures.append("constrained decoding guarantees broken")

    # 6. parity
    from vedit.bench.parity import format_parity, run_parity

    if options.parity_limit:
        truth = truth[: options.parity_limit]
    for (family, precision), d in exports.items():
        ref, adapter = (t5, None) if family == "t5" else (llama_base, llama_lora)
        res = run_parity(ref, truth, candidate=d, adapter_dir=adapter, threads=options.threads,
                         progress=lambda m: echo(f"  {m}"))
        report.add(f"Parity: {family} {precision} ({len(truth)} test intents)", format_parity(res), echo)
        if not res.passed:
            report.failures.append(f"parity {family} {precision}: {'; '.join(res.failures)}")
        with atomic_open(paths.reports_dir() / f"parity-{family}-{precision}.json") as f:
            f.write(json.dumps(res.to_json(), indent=1))

    # 7. Triton: build, serve, answer over HTTP and gRPC
    if options.triton:
        from vedit.triton_repo.builder import build_repository
        from vedit.triton_repo.server import TritonServer

        repo = build_repository(exports[("t5", "fp32")], profile="cpu", out=paths.home() / "triton" / "repo",
                                force=True)
        lines = [f"repository: {repo}"]
        with TritonServer(repo) as server:
            lines.append("endpoints: " + ", ".join(f"{k} {v}" for k, v in server.urls.items()))
            in_process = {p.intent: p.to_json() for p in preds}
            for proto in ("http", "grpc"):
                with connect(server.urls[proto]) as client:
                    served = client.predict(SAMPLE_INTENTS)
                same = all(p.to_json() == in_process[p.intent] for p in served)
                lines.append(f"{proto}: {len(served)} answers, identical to in-process: {same}")
                if not same:
                    report.failures.append(f"triton {proto} answers differ from in-process")
            lines.append(json.dumps(served[0].to_json(), ensure_ascii=False))
        report.add("Triton (real tritonserver, cpu profile)", "\n".join(lines), echo)

    # 8. latency
    from vedit.bench.latency_cli import Subject, run_latency_command

    llama = Subject("demo Llama student (base + LoRA)", llama_base, llama_lora,
                    {p: exports[("llama", p)] for p in ("fp32", "int8")})

    files = run_latency_command(student=t5, adapter=None,
                                exports=[f"fp32={exports[('t5', 'fp32')]}", f"int8={exports[('t5', 'int8')]}"],
                                base_shape=options.base_shape and not options.quick, triton=options.triton,
                                requests=options.latency_requests, concurrency="1,4,16", threads=options.threads,
                                out=paths.reports_dir(), triton_requests=30 if options.quick else 200,
                                others=[llama], progress=echo)
    report.add("Latency", files["md"].read_text(encoding="utf-8") + f"\nplot: {files['png']}", echo)

    report.add("Done", f"main job took {time.perf_counter() - t_start:.0f} s; reports in {paths.reports_dir()}",
               echo)
    with atomic_open(paths.reports_dir() / "pipeline.md") as f:
        f.write(report.markdown())
    return report


@click.command("run")
@click.option("--quick", is_flag=True, help="Tiny students, 12 parity intents, no base-shape model (smoke test).")
@click.option("--force", is_flag=True, help="Re-export even if the exports exist.")
@click.option("--parity-limit", type=click.IntRange(min=0), default=200, show_default=True,
              help="Test intents per parity run (0 = all 1,000).")
@click.option("--requests", type=click.IntRange(min=3), default=30, show_default=True,
              help="Requests per path in the latency report.")
@click.option("--base-shape/--no-base-shape", default=True, help="Time the flan-t5-base-shaped model too.")
@click.option("--triton/--no-triton", default=True, help="Serve with a real tritonserver.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
def run_cmd(quick: bool, force: bool, parity_limit: int, requests: int, base_shape: bool, triton: bool,
            threads: int) -> None:
    """The main job: build, merge, export, parity, Triton, latency, on the demo students."""
    require_extras("export", "bench", *(("triton",) if triton else ()))
    options = PipelineOptions(quick=quick, force=force, parity_limit=12 if quick else parity_limit,
                              latency_requests=5 if quick else requests, base_shape=base_shape and not quick,
                              triton=triton, threads=threads)
    report = run(options, lambda m: click.echo(m, err=True) if m.startswith("  ") else click.echo(m))
    if report.failures:
        click.echo("failures:\n" + "\n".join(f"  {f}" for f in report.failures), err=True)
        raise SystemExit(1)
