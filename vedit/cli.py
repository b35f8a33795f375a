"""The ``vedit`` command line: a thin layer that maps options onto library functions.

Each pipeline stage owns its command group (``vedit/<stage>/cli.py``); this module only assembles
them and turns library errors into one line on stderr with exit code 1.
"""

from __future__ import annotations

import copy
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
    from vedit.render.cli import playground, preview

    demo.add_command(run_cmd)

    cli.add_command(bench)
    cli.add_command(demo)
    cli.add_command(export)
    cli.add_command(predict)
    cli.add_command(preview)
    cli.add_command(playground)
    from vedit.bench.cli import serving_cmd
    from vedit.deploy.cli import deploy
    from vedit.serving.cli import serve
    from vedit.triton_repo.cli import triton

    # `vedit triton ...` gathers three packages' commands: build (triton_repo), serve (serving),
    # deploy (deploy), and `vedit triton bench` = `vedit bench serving`
    triton.add_command(serve)
    triton.add_command(deploy)
    bench_alias = copy.copy(serving_cmd)  # its own name, so generated docs list it as `bench`
    bench_alias.name = "bench"
    triton.add_command(bench_alias)
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
