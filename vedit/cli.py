"""The ``vedit`` command line: a thin layer that maps options onto library functions.

Each pipeline stage owns its command group (``vedit/<stage>/cli.py``); this module only assembles
them and turns library errors into one line on stderr with exit code 1.
"""

from __future__ import annotations

import sys

import click

from vedit.clibase import VeditGroup


@click.group(cls=VeditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vedit")
def cli() -> None:
    """vedit: ship tool-calling student LLMs to production."""


def _register() -> None:
    from vedit.bench.cli import bench
    from vedit.students.cli import demo
    from vedit.export.cli import export
    from vedit.pipeline import run_cmd
    from vedit.predict_cli import predict

    demo.add_command(run_cmd)

    cli.add_command(bench)
    cli.add_command(demo)
    cli.add_command(export)
    cli.add_command(predict)
    from vedit.bench.cli import serving_cmd
    from vedit.triton_repo.cli import triton

    triton.add_command(serving_cmd, "bench")  # `vedit triton bench` = `vedit bench serving`
    cli.add_command(triton)
    from vedit.web.cli import web

    cli.add_command(web)


_register()


def main() -> None:
    cli(prog_name="vedit")


def export_main() -> None:
    """``vedit-export ...`` is exactly ``vedit export ...``."""
    from vedit.export.cli import export

    export.main(args=sys.argv[1:], prog_name="vedit-export", standalone_mode=True)
