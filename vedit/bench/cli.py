"""``vedit bench``: offline metrics (and, from other modules, parity and latency benches)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vedit.clibase import VeditGroup

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
    from vedit.bench.metrics import format_table, score_files

    report = score_files(truth, predictions)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else format_table(report))
