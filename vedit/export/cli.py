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
from vedit.registry import load_registry
from vedit.registry.prompting import PromptStyle, template_file


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
    fn = click.option("--tools", "tools_file", type=click.Path(path_type=Path), metavar="FILE",
                      help="Tools file: a JSON list of OpenAI-style function definitions (default: the paper's "
                           "three colour tools). See docs/byo-student.md.")(fn)
    fn = click.option("--prompt-template", "prompt_template", type=click.Path(path_type=Path), metavar="FILE",
                      help="Jinja2 prompt template (variables: intent, tool.name, tool.description, "
                           "tool.parameters). Default: the student's chat template (tokenizer_config.json) if "
                           "it has one, else vedit's prompts.")(fn)
    fn = click.option("--vedit-prompts", is_flag=True, help="Use vedit's prompts even if the student has a chat template.")(fn)
    fn = click.option("--check-examples", "examples", type=click.Path(path_type=Path), metavar="FILE.jsonl",
                      help='Lines {"intent": ..., "<tool>": expected answer}: report how often the export agrees.')(fn)
    return fn


def _run(family: str, default_out: str, *, to, model_dir, adapter_dir, precision, out_dir, force, allow_pickle,
         tools_file, prompt_template, vedit_prompts, examples) -> None:
    # The tools file (its schemas checked against vedit's subset) and the prompt template are read
    # before any export work.
    registry = load_registry(tools_file) if tools_file is not None else None
    if prompt_template is not None and vedit_prompts:
        raise click.UsageError("--prompt-template and --vedit-prompts exclude each other")
    prompt = template_file(prompt_template) if prompt_template is not None else PromptStyle() if vedit_prompts else None
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
                          force=force, allow_pickle=allow_pickle, registry=registry, prompt=prompt, examples=examples)
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
