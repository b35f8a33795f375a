"""Latency reports: markdown for people, JSON for tools, a PNG for the distributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from vedit.atomicio import atomic_open
from vedit.bench.latency import LatencyRun
from vedit.bench.machine import describe


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _tokens(s) -> str:
    if s.free_tokens_per_request is None and s.forced_tokens_per_request is None:
        return "-"
    return f"{_fmt(s.free_tokens_per_request)} / {_fmt(s.forced_tokens_per_request)}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}x"


def markdown(runs: Sequence[LatencyRun]) -> str:
    lines = ["# vedit latency report", ""]
    if runs:
        lines += [f"Machine: {describe(runs[0].machine)}", ""]
    for run in runs:
        lines += [f"## {run.model}", "",
                  "| concurrency | path | p50 ms | p95 ms | req/s | decoder calls/req | free / forced tokens/req "
                  "| p50 speed-up vs pytorch | vs pytorch+grammar | same texts |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in run.stats:
            one = s.concurrency == 1
            sp = run.speedup(s.path) if one else None
            spc = run.speedup(s.path, "pytorch+grammar") if one else None
            same = run.texts.verdict(s.path) if run.texts and one and s.path in run.compared else "-"
            lines.append(
                f"| {s.concurrency} | {s.path} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | {s.throughput_rps:.2f} | "
                f"{_fmt(s.decoder_calls_per_request)} | {_tokens(s)} | {_x(sp)} | {_x(spc)} | {same} |"
            )
        lines += [""] + [f"- {n}" for n in run.notes]
        if run.info:
            lines += ["", "Paths:"] + [f"- `{p}`: {i}" for p, i in run.info.items()]
        lines += [""]
    return "\n".join(lines)


def plot(runs: Sequence[LatencyRun], path) -> None:
    """One row per model: latency distributions at concurrency 1, throughput by concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(len(runs), 2, figsize=(13, 3.2 + 0.45 * max(len(r.at(1)) for r in runs) * len(runs)),
                             squeeze=False)
    for row, run in zip(axes, runs):
        one = run.at(1)
        row[0].boxplot([s.samples_ms for s in one], orientation="horizontal", showfliers=True)
        row[0].set_yticks(range(1, len(one) + 1), [s.path for s in one])
        row[0].set_xscale("log")
        row[0].xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 10, 20, 50, 100, ... ms
        row[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        row[0].xaxis.set_minor_formatter(NullFormatter())
        row[0].set_xlabel("latency per request, ms (log scale)")
        row[0].set_title(f"{run.model}: concurrency 1")
        if any(s.concurrency > 1 for s in run.stats):
            _throughput(row[1], run)
        else:
            _decoder_calls(row[1], run)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _throughput(ax, run: LatencyRun) -> None:
    levels = sorted({s.concurrency for s in run.stats})
    for name in sorted({s.path for s in run.stats if s.concurrency > 1}):
        pts = sorted((s.concurrency, s.throughput_rps) for s in run.stats if s.path == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("requests / s")
    ax.set_title(f"{run.model}: throughput")
    ax.legend(fontsize=8)


def _decoder_calls(ax, run: LatencyRun) -> None:
    """Without concurrency levels, show what jump-forward is for: decoder calls against free tokens."""
    one = [s for s in run.at(1) if s.decoder_calls_per_request is not None]
    ax.barh(range(1, len(one) + 1), [s.decoder_calls_per_request for s in one])
    ax.set_yticks(range(1, len(one) + 1), [s.path for s in one])
    free = next((s.free_tokens_per_request for s in one if s.free_tokens_per_request is not None), None)
    if free is not None:
        ax.axvline(free, color="k", linestyle="--", label=f"free tokens / request ({free:.1f})")
        ax.legend(fontsize=8)
    ax.set_xlabel("decoder calls per request")
    ax.set_title(f"{run.model}: decoder calls")


def write(runs: Sequence[LatencyRun], out_dir: str | Path, name: str = "latency") -> dict[str, Path]:
    """Write ``NAME.md``, ``NAME.json`` (with samples) and ``NAME.png`` into ``out_dir`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"md": out / f"{name}.md", "json": out / f"{name}.json", "png": out / f"{name}.png"}
    with atomic_open(files["md"]) as f:
        f.write(markdown(runs) + "\n")
    with atomic_open(files["json"]) as f:
        f.write(json.dumps([r.to_json(samples=True) for r in runs], indent=1) + "\n")
    with atomic_open(files["png"], "wb") as f:
        plot(runs, f)
    return files
