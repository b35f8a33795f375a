"""``vedit triton``, the group, and ``vedit triton build``.

The group gathers the Triton commands of three packages: ``build`` (this one), ``serve``
(:mod:`vedit.serving.cli`) and ``deploy`` (:mod:`vedit.deploy.cli`); :mod:`vedit.cli` attaches them.
"""

from __future__ import annotations

from pathlib import Path

import click

from vedit.clibase import VeditGroup
from vedit.extras import require_extras
from vedit.triton_repo.builder import DEFAULT_NAME, build_repository
from vedit.triton_repo.profiles import PROFILES


@click.group(cls=VeditGroup)
def triton() -> None:
    """Serve an export with NVIDIA Triton Inference Server."""


def _profiles_help() -> str:
    return "Serving profile: " + "; ".join(f"{p.name} ({p.kind}, {'/'.join(p.precisions)})" for p in PROFILES.values())


@triton.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--profile", default="cpu", show_default=True, help=_profiles_help())
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="Repository to write (default: $VEDIT_HOME/triton/<export>-<profile>).")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Model name inside the repository.")
@click.option("--force", is_flag=True, help="Replace an existing repository.")
@click.option("--no-jump-forward", is_flag=True, help="Decode step by step (for comparisons).")
@click.option("--draft/--no-draft", default=None,
              help="Verify drafts of the next free tokens in each decoder call: the same answers in fewer "
                   "calls. --draft requires an export that can (checked here); default: on where it can.")
def build(export_dir: Path, profile: str, out: Path | None, name: str, force: bool, no_jump_forward: bool,
          draft: bool | None) -> None:
    """Write a Triton model repository serving EXPORT_DIR."""
    require_extras("triton")
    if draft and no_jump_forward:
        raise click.UsageError("--draft verifies drafts in jump-forward calls: drop --no-jump-forward")
    repo = build_repository(export_dir, profile=profile, out=out, name=name, force=force,
                            jump_forward=not no_jump_forward, draft=draft)
    click.echo(f"wrote {repo} (model {name}, profile {profile})")
    click.echo(f"serve it with: vedit triton serve {repo}")


__all__ = ["build", "triton"]
