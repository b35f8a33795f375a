"""``vedit web``: the student as a static site that answers in the browser, offline."""

from __future__ import annotations

from pathlib import Path

import click

from vedit.clibase import VeditGroup


@click.group(cls=VeditGroup)
def web() -> None:
    """The student in the browser (onnxruntime-web, no server)."""


@web.command("build")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), help="Site directory.")
@click.option("--force", is_flag=True, help="Replace the site directory if it exists.")
@click.option("--webgpu", is_flag=True,
              help="Ship onnxruntime-web's WebGPU build (29 MB instead of 15 MB): WebGPU where the browser offers it.")
def build(export_dir: Path, out_dir: Path, force: bool, webgpu: bool) -> None:
    """Write a static site for EXPORT_DIR (a T5 or Llama export, fp32 or int8) into OUT."""
    from vedit.web.site import build_site

    r = build_site(export_dir, out_dir, force=force, webgpu=webgpu)
    click.echo(f"site for the {r.family} {r.precision} student{' (WebGPU build)' if webgpu else ''}: {r.out_dir} ({r.files} files, "
               f"{r.bytes_total / 1e6:.1f} MB, model {r.bytes_model / 1e6:.1f} MB)")
    click.echo(f"open it: python -m http.server -b 127.0.0.1 -d {r.out_dir} 8000, then "
               "http://127.0.0.1:8000/?intent=golden%20hour")
