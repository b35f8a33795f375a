"""``vedit bench``: offline metrics (and, from other modules, parity and latency benches)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vedit.clibase import VeditGroup, show_progress
from vedit.extras import require_extras
from vedit.manifest import PRECISIONS

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(cls=VeditGroup)
def bench() -> None:
    """Measure models: the paper's offline metrics, parity and latency."""


@bench.command("metrics")
@click.option("--truth", type=_FILE, required=True, help="Truth JSONL (intent, calls, one call per tool).")
@click.option("--predictions", type=_FILE, required=True, help="Prediction JSONL (intent, one output per tool).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def metrics(truth: Path, predictions: Path, as_json: bool) -> None:
    """Score PREDICTIONS against TRUTH: tool selection, quality, final, overall (All, r_3, r_5)."""
    from vedit.data.metrics import format_table, score_files

    report = score_files(truth, predictions)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else format_table(report))


@bench.command("parity")
@click.option("--reference", "reference", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The PyTorch student (merged weights or base).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="LoRA adapter applied (unmerged) on top of --reference.")
@click.option("--candidate", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Export directory, run in-process.")
@click.option("--url", default=None, help="Or a Triton server serving the export (http://... or grpc://...).")
@click.option("--data", "data", type=_FILE, required=True, help="Truth JSONL (e.g. the demo test set).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N intents.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Gate to apply (default: the export's precision).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the tables.")
@click.option("--worst-png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the rendered pair that differs most (CIEDE2000) side by side to this PNG.")
def parity(reference: Path, adapter: Path | None, candidate: Path | None, url: str | None, data: Path,
           limit: int | None, precision: str | None, threads: int, as_json: bool, worst_png: Path | None) -> None:
    """Compare an export (or a server) with its PyTorch original; exit 1 when the gate fails."""
    require_extras("export", "render", *(("triton",) if url else ()))
    from vedit.bench.parity import format_parity, run_parity
    from vedit.data.rows import read_truth

    if (candidate is None) == (url is None):
        raise click.UsageError("give exactly one of --candidate EXPORT_DIR or --url URL")
    from vedit.bench.parity import served_registry
    from vedit.registry import load_registry

    # the truth rows are read with the candidate's own tools (any tools file): the export's or the server's
    registry = load_registry(candidate / "registry.json") if candidate is not None else served_registry(url)
    truth = read_truth(data, registry)[:limit]
    show_progress()
    result = run_parity(reference, truth, candidate=url or candidate, adapter_dir=adapter,
                        precision=precision, threads=threads)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_parity(result))
    if worst_png is not None and result.visual is not None and result.visual.save_worst(worst_png):
        click.echo(f"worst pair: {worst_png}", err=True)
    if not result.passed:
        raise SystemExit(1)


@bench.command("latency")
@click.option("--student", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="PyTorch student (default: the demo T5 student).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--export", "exports", multiple=True, metavar="LABEL=DIR",
              help="Export to time (repeatable; default: demo flan-t5 fp32 and int8 exports).")
@click.option("--base-shape/--no-base-shape", default=False,
              help="Also time the real-size random models, flan-t5-base and TinyLlama-1.1B shapes, scripted to "
                   "the demo test set's answers (built and exported once, cached; the Llama takes many minutes).")
@click.option("--shape-requests", type=click.IntRange(min=1), default=None,
              help="Requests per base-shape run (default: a third of --requests, at least 5).")
@click.option("--peers/--no-peers", default=False,
              help="Also time peer engines (optimum ORT, CTranslate2, onnxruntime-genai, llama.cpp) in the same "
                   "interleaved runs; their environments are built and cached on first use.")
@click.option("--triton/--no-triton", default=True, help="Also time a real tritonserver (HTTP, gRPC).")
@click.option("-n", "--requests", type=click.IntRange(min=3), default=30, show_default=True,
              help="Requests per path at concurrency 1.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Levels for in-process and Triton.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report directory (default: $VEDIT_HOME/reports).")
def latency(student: Path | None, adapter: Path | None, exports: tuple[str, ...], base_shape: bool,
            shape_requests: int | None, peers: bool, triton: bool, requests: int, concurrency: str, threads: int,
            out: Path | None) -> None:
    """Per-request latency and throughput of every path; writes latency.md/.json/.png."""
    require_extras("export", "bench", *(("triton",) if triton else ()))
    from vedit.bench.latency_cli import run_latency_command

    show_progress()
    files = run_latency_command(student=student, adapter=adapter, exports=exports, base_shape=base_shape,
                                triton=triton, requests=requests, concurrency=concurrency, threads=threads,
                                out=out, peers=peers, shape_requests=shape_requests)
    click.echo(files["md"].read_text(encoding="utf-8"))
    click.echo(f"report: {files['md']}  {files['json']}  {files['png']}")


@bench.command("profile")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.argument("intents", nargs=-1)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The profile as JSON instead of one line.")
@click.option("--draft", is_flag=True, help="Drafts verified in the same call (Predictor.load(draft=True)); "
              "the line adds their acceptance and the decoder calls per free token.")
def profile_cmd(export_dir: Path, intents: tuple[str, ...], threads: int, as_json: bool, draft: bool) -> None:
    """Where a request's time goes on EXPORT_DIR: encoder, prefill, decoder calls, grammar, Python.

    INTENTS are answered one at a time (default: five of the paper's looks).
    """
    from vedit.bench.profile import profile_export
    from vedit.intents import SAMPLE_INTENTS

    prof = profile_export(export_dir, list(intents) or list(SAMPLE_INTENTS), threads=threads,
                          draft=draft)  # jump-forward alone unless asked: the profile names what it measured
    click.echo(json.dumps(prof.to_json(), indent=2) if as_json else prof.line())


@bench.command("serving")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("-n", "--requests", type=int, default=300, show_default=True, help="Requests per path and level.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Comma-separated levels.")
@click.option("--profile", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None, help="onnxruntime threads of the in-process predictor.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of a table.")
def serving_cmd(export_dir: Path, requests: int, concurrency: str, profile: str, threads: int | None,
                as_json: bool) -> None:
    """Latency and throughput: in-process vs Triton over HTTP and gRPC, in one run."""
    require_extras("triton")
    from vedit.bench import serving

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated integers, e.g. 1,4,16", param_hint="--concurrency") from None
    stats = serving.run(export_dir, requests=requests, concurrencies=levels, profile=profile, threads=threads)
    if as_json:
        for s in stats:
            click.echo(json.dumps(s.to_json()))
    else:
        click.echo(serving.table(stats))


@bench.command("tokenizers")
@click.option("-n", "--requests", type=click.IntRange(min=1), default=20, show_default=True,
              help="Scripted requests per tokenizer family.")
@click.option("--any/--no-any", "with_any", default=True, show_default=True,
              help="Also measure the merging families with their grammar in mode 'any' (the mode they had before 'runs').")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Work folder for the students and exports [default: VEDIT_HOME/bench/tokenizer_families].")
def tokenizers_cmd(requests: int, with_any: bool, out: Path | None) -> None:
    """The tokenizer table: grammar mode, decoder calls, p50 ms and jump-forward exactness per tokenizer family.

    Tiny random-weight students with locally trained tokenizers at real sizes (T5 Unigram, Llama-2
    BPE, byte-level BPE, a digit-splitting reference), exported and steered to the same scripted
    answers (minutes on 2 cores). See docs/tokenizers.md.
    """
    require_extras("export")
    from vedit import paths
    from vedit.bench.tokenizer_families import markdown, run

    show_progress()
    rows = run(out or paths.home() / "bench" / "tokenizer_families", requests, with_any=with_any)
    click.echo(markdown(rows))


@bench.command("invariance")
@click.argument("export_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="EXPORT_DIR...")
@click.option("-n", "--intents", "n", type=click.IntRange(min=1), default=60, show_default=True,
              help="How many intents of --data to ask (the first N distinct ones).")
@click.option("--data", type=_FILE, default=None,
              help="JSONL with an \"intent\" per line, e.g. a truth file [default: the demo test set, "
                   "$VEDIT_HOME/data/test.jsonl].")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per export instead of the tables.")
def invariance_cmd(export_dirs: tuple[Path, ...], n: int, data: Path | None, threads: int, as_json: bool) -> None:
    """Does an answer depend on its batch partners or the decoding mode? Per export and mode: answers
    identical to step-by-step alone, and the intents that differ.

    Modes: jump-forward and drafts, each alone, all N intents in one batch, and rotated batches of
    mixed partners. Exit 1 when an fp32 export's jump-forward differs from step-by-step (a tested
    guarantee); a quantized export's differences are reported only (see docs/concepts/jump-forward.md).
    """
    from vedit.bench.invariance import check
    from vedit.data.rows import read_intents
    from vedit.errors import DatasetError
    from vedit.manifest import read_manifest
    from vedit.paths import data_dir

    for d in export_dirs:  # every directory checked before minutes of work
        read_manifest(d)
    if data is None:
        data = data_dir() / "test.jsonl"
        if not data.is_file():
            raise DatasetError(str(data), [(0, "no demo test set here; give --data FILE (JSONL, an intent per "
                                               "line) or build the demo data (`vedit demo build`)")])
    intents = read_intents(data, n)
    broken = []
    for d in export_dirs:
        report = check(d, intents, threads=threads)
        click.echo(json.dumps(report.to_json()) if as_json else "\n".join(report.lines()))
        if report.broken:
            broken.append(report.export)
    if broken:
        click.echo(f"error: jump-forward differs from step-by-step at fp32 in {', '.join(broken)}", err=True)
        raise SystemExit(1)
