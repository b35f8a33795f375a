"""``vedit demo``: build the demo dataset and students, and print their offline metrics.

Bare ``vedit demo`` does both (the quick start's first command). Everything is cached under the vedit
home, so repeating a command is instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from vedit.clibase import VeditGroup, show_progress
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
    help="Where artifacts live (default: $VEDIT_HOME, else the per-user data dir; scripts/demo.sh: ./artifacts).",
)
quick_option = click.option("--quick", is_flag=True, help="Tiny students, a few steps (smoke test).")


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


#: The group's options each subcommand takes over (``vedit demo --home X build`` = ``vedit demo build
#: --home X``); any other group option given before a subcommand is an error, not silently dropped.
GROUP_OPTIONS = {
    "build": ("home", "quick", "seed", "force"),
    "metrics": ("home", "force"),
    "run": ("home", "quick", "seed", "force"),
}


def group_value(ctx: click.Context, name: str, value):
    """``value`` as given to the subcommand, else what the ``demo`` group was given for ``name``."""
    if not (value is None or value is False) or ctx.parent is None:
        return value
    return ctx.parent.params.get(name, value)


@click.group("demo", cls=VeditGroup, invoke_without_command=True)
@home_option
@click.option("--quick", is_flag=True, help="Tiny students, a few steps (smoke test; with `run`: the tour).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data and of every training run.")
@click.option("--force", is_flag=True,
              help="Redo cached work: rebuild and re-evaluate (with `run`: re-export).")
@click.pass_context
def demo(ctx: click.Context, home: Path | None, quick: bool, seed: int, force: bool) -> None:
    """Demo students on a synthetic dataset. Without a subcommand: build, then print metrics.

    The group's options apply to the subcommands too, where they mean something.
    """
    sub = ctx.invoked_subcommand
    if sub is not None:
        given = [name for name in ("home", "quick", "seed", "force")
                 if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
        ignored = [n for n in given if n not in GROUP_OPTIONS.get(sub, ())]
        if ignored:
            flags = ", ".join(f"--{n}" for n in ignored)
            raise click.UsageError(f"{flags} does not apply to `vedit demo {sub}`", ctx=ctx)
    if sub is None:
        require_extras("export")
        _build(home, force, quick, seed)
        _metrics(home, DEFAULT_STUDENTS, False, force)


@demo.command("build")
@home_option
@quick_option
@click.option("--seed", type=int, default=None, help="Seed of the data and of every training run (default 0).")
@click.option("--force", is_flag=True, help="Rebuild every stage even if cached.")
@click.pass_context
def build_cmd(ctx: click.Context, home: Path | None, quick: bool, seed: int | None, force: bool) -> None:
    """Generate the demo dataset and train the students (seeded; cached)."""
    require_extras("export")
    show_progress()
    seed = group_value(ctx, "seed", seed)
    _build(group_value(ctx, "home", home), bool(group_value(ctx, "force", force)),
           bool(group_value(ctx, "quick", quick)), seed or 0)


@demo.command("metrics")
@home_option
@click.option("--student", "students", type=click.Choice(STUDENT_CHOICES), multiple=True,
              help="Student(s) to score (default: t5 and llama). 'llama' is the base + LoRA adapter.")
@click.option("--json", "as_json", is_flag=True, help="Print the report(s) as JSON.")
@click.option("--force", is_flag=True, help="Re-run the predictions even if cached.")
@click.pass_context
def metrics_cmd(ctx: click.Context, home: Path | None, students: tuple[str, ...], as_json: bool,
                force: bool) -> None:
    """Score demo students on the test split with the PyTorch reference predictor."""
    require_extras("export")
    show_progress()
    _metrics(group_value(ctx, "home", home), students or DEFAULT_STUDENTS, as_json,
             bool(group_value(ctx, "force", force)))


__all__ = ["demo"]
