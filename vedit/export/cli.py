"""``vedit export`` / ``vedit-export``: thin commands over :mod:`vedit.export`.

Each command maps its options onto one library function; library errors become ``error: ...``.
"""

from __future__ import annotations

from pathlib import Path

import click

from vedit.clibase import VeditGroup, show_progress
from vedit.errors import ModelDirError
from vedit.extras import require_extras
from vedit.export.families import FORMATS
from vedit.export.pipeline import PRECISIONS, default_family_dirs, export_model
from vedit.manifest import PRECISION_TABLE


@click.group(cls=VeditGroup)
def export() -> None:
    """Merge LoRA adapters and export students to validated ONNX directories."""


@export.command()
@click.option("--base", "base_dir", required=True, type=click.Path(path_type=Path), help="Base model directory.")
@click.option("--adapter", "adapter_dir", required=True, type=click.Path(path_type=Path), help="LoRA adapter directory.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), help="Merged model directory.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickled (*.bin) weights: only for trusted sources.")
def merge(base_dir: Path, adapter_dir: Path, out_dir: Path, force: bool, allow_pickle: bool) -> None:
    """Merge a LoRA adapter into its base model (verified on held-out prompts)."""
    require_extras("export")
    from vedit.export.merge import merge as merge_fn

    show_progress()
    report = merge_fn(base_dir, adapter_dir, out_dir, force=force, allow_pickle=allow_pickle)
    click.echo(f"merged {report.lora_modules} LoRA layers into {report.out_dir}")
    click.echo(f"  logits max abs diff vs adapter model: {report.max_abs_diff:.3g} (tolerance {report.tolerance:.3g}, "
               f"{report.prompts} prompts); adapter effect {report.adapter_effect:.3g}")
    for note in report.notes:
        click.echo(f"  note: {note}")


def _export_options(fn):
    fn = click.option("--to", "to", default="onnx", show_default=True, metavar="FORMAT",
                      help=f"Target format ({', '.join(FORMATS)}).")(fn)
    fn = click.option("--model", "model_dir", type=click.Path(path_type=Path), help="Model directory.")(fn)
    fn = click.option("--adapter", "adapter_dir", type=click.Path(path_type=Path),
                      help="LoRA adapter to merge first.")(fn)
    fn = click.option("--precision", default="fp32", show_default=True, metavar="|".join(PRECISIONS),
                      help="; ".join(f"{p.name}: {p.summary}" for p in PRECISION_TABLE.values()) + ".")(fn)
    fn = click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), help="Export directory.")(fn)
    fn = click.option("--force", is_flag=True, help="Replace the export directory if it exists.")(fn)
    fn = click.option("--allow-pickle", is_flag=True, help="Allow pickled (*.bin) weights: trusted sources only.")(fn)
    return fn


def _run(family: str, default_out: str, *, to, model_dir, adapter_dir, precision, out_dir, force, allow_pickle) -> None:
    require_extras("export")
    from vedit.paths import exports_dir

    defaults = default_family_dirs(family)
    if model_dir is None:
        model_dir = defaults["model"]
        if not model_dir.is_dir():
            raise ModelDirError(f"demo {family} student not found at {model_dir}; run `vedit demo build` first "
                                "or pass --model DIR")
        if adapter_dir is None and defaults["adapter"] is not None and defaults["adapter"].is_dir():
            adapter_dir = defaults["adapter"]
    if out_dir is None:
        out_dir = exports_dir() / default_out.format(precision=precision)
    show_progress()
    result = export_model(model_dir, out_dir, family=family, adapter_dir=adapter_dir, to=to, precision=precision,
                          force=force, allow_pickle=allow_pickle)
    click.echo("\n".join(result.summary_lines()))


@export.command("flan-t5")
@_export_options
def flan_t5(**options) -> None:
    """Export a FlanT5 (T5) student: encoder, decoder, multi-token decoder with past."""
    _run("t5", "flan-t5-{precision}", **options)


@export.command("llama")
@_export_options
def llama(**options) -> None:
    """Export a Llama student (merging its LoRA adapter first): one model.onnx with KV cache."""
    _run("llama", "llama-{precision}", **options)
