"""``vedit demo``: build the demo dataset and students, and print their offline metrics.

Bare ``vedit demo`` does both (the README's first command). Everything is cached under the vedit
home, so repeating a command is instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from vedit.clibase import VeditGroup
from vedit.extras import require_extras

STUDENT_CHOICES = ("t5", "llama", "t5-lora", "llama-base")
DEFAULT_STUDENTS = ("t5", "llama")
LABELS = {
    "t5": "T5 student",
    "t5-lora": "T5 student + LoRA adapter",
    "llama-base": "Llama base student",
    "llama": "Llama student + LoRA adapter",
}

home_option = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where artifacts live (default: $VEDIT_HOME or ./artifacts).",
)
quick_option = click.option("--quick", is_flag=True, help="Tiny students, a few steps (smoke test).")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Seed of the data and of every training run.")


def _build(home: Path | None, force: bool, quick: bool, seed: int) -> None:
    from vedit.students.demo import build

    result = build(home, force=force, quick=quick, seed=seed)
    click.echo(result.summary())


def _metrics(home: Path | None, students: tuple[str, ...], as_json: bool, force: bool) -> None:
    from vedit.data.metrics import format_table
    from vedit.students.demo import evaluate

    results = {s: evaluate(s, home, force=force) for s in students}
    if as_json:
        if len(results) == 1:
            value = next(iter(results.values())).report.to_json()
        else:
            value = {s: r.report.to_json() for s, r in results.items()}
        click.echo(json.dumps(value, indent=2))
        return
    for s, r in results.items():
        n = r.report.subsets["All"].n
        how = "cached" if r.cached else f"{r.seconds:.0f} s"
        click.echo(f"{LABELS[s]}: PyTorch reference, greedy, {n} test intents ({how})")
        click.echo(format_table(r.report))
        click.echo(f"predictions: {r.predictions}\n")


@click.group("demo", cls=VeditGroup, invoke_without_command=True)
@home_option
@quick_option
@seed_option
@click.option("--force", is_flag=True, help="Rebuild and re-evaluate even if cached.")
@click.pass_context
def demo(ctx: click.Context, home: Path | None, quick: bool, seed: int, force: bool) -> None:
    """Demo students on a synthetic dataset. Without a subcommand: build, then print metrics."""
    if ctx.invoked_subcommand is None:
        require_extras("export")
        _build(home, force, quick, seed)
        _metrics(home, DEFAULT_STUDENTS, False, force)


@demo.command("build")
@home_option
@quick_option
@seed_option
@click.option("--force", is_flag=True, help="Rebuild every stage even if cached.")
def build_cmd(home: Path | None, quick: bool, seed: int, force: bool) -> None:
    """Generate the demo dataset and train the students (seeded; cached)."""
    require_extras("export")
    _build(home, force, quick, seed)


@demo.command("metrics")
@home_option
@click.option("--student", "students", type=click.Choice(STUDENT_CHOICES), multiple=True,
              help="Student(s) to score (default: t5 and llama). 'llama' is the base + LoRA adapter.")
@click.option("--json", "as_json", is_flag=True, help="Print the report(s) as JSON.")
@click.option("--force", is_flag=True, help="Re-run the predictions even if cached.")
def metrics_cmd(home: Path | None, students: tuple[str, ...], as_json: bool, force: bool) -> None:
    """Score demo students on the test split with the PyTorch reference predictor."""
    require_extras("export")
    _metrics(home, students or DEFAULT_STUDENTS, as_json, force)


__all__ = ["demo"]
