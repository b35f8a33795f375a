"""One export, start to finish: check -> load -> merge -> export -> convert -> validate -> package.

Everything is written into a temp dir next to the target and renamed into place only after the
validation passed and the grammar compiled (see :mod:`vedit.atomicio`).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from vedit.errors import ExportError
from vedit.export import checks
from vedit.atomicio import atomic_dir, check_target, sha256_file
from vedit.export.families import check_format
from vedit.export.drafts import write_drafts
from vedit.export.manifest import file_hashes, file_sizes, graph_recipe, now_iso, package_versions, write_json
from vedit.manifest import FORMAT, PRECISION_TABLE, PRECISIONS, VERSION
from vedit.export.merge import MergeReport, merge_adapter
from vedit.export.onnx_common import DEFAULT_OPSET, io_names, opset_of, threads_for_files, torch_threads
from vedit.export.prompts import held_out_intents, prompt_batches
from vedit.export.validate import Tolerance, ValidationReport, validate_export
from vedit.registry import Registry, default_registry
from vedit.registry.prompting import PromptStyle, chat_template_of

log = logging.getLogger(__name__)

STAGING = ".staging"
#: The intent whose model input an export prints and records.
SAMPLE_INTENT = "golden hour"
#: The tools file an export carries (OpenAI-style function definitions; see vedit.registry.model).
TOOLS_FILE = "tools.json"


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict
    validation: ValidationReport
    merge: MergeReport | None

    def summary_lines(self) -> list[str]:
        m = self.manifest
        lines = [f"exported {m['family']} ({m['precision']}, ONNX opset {m['opset']}) to {self.out_dir}"]
        if self.merge is not None:
            lines.append(f"  merged adapter {self.merge.adapter_dir}: logits max diff {self.merge.max_abs_diff:.3g} "
                         f"(tolerance {self.merge.tolerance:.3g})")
        onnx_bytes = 0
        for name, size in m["sizes"].items():
            if name.endswith(".onnx") or name.endswith("_data") or name.endswith(".data"):
                onnx_bytes += size
                lines.append(f"  {name:<40} {size / 1e6:10.2f} MB")
        lines.append(f"  {'total ONNX':<40} {onnx_bytes / 1e6:10.2f} MB")
        lines += grammar_lines(m.get("grammar"))
        lines += prompt_lines(m.get("prompt"))
        return lines + self.validation.summary_lines() + check_lines(m.get("check_examples"))


def grammar_lines(grammar: dict | None) -> list[str]:
    """The grammar's tokenization mode, per tool when the tools differ (a free string takes ``runs``
    for its own tool only), and why a tool could not have ``canonical``."""
    if not grammar:
        return []
    modes = grammar.get("modes") or {}
    each = f" ({', '.join(f'{t} {m}' for t, m in modes.items())})" if len(set(modes.values())) > 1 else ""
    why = f"; {grammar['fallback_reason']}" if grammar.get("fallback_reason") else ""
    return [f"  grammar: tokenization {grammar['mode']}{each}{why}"]


def prompt_lines(prompt: dict | None) -> list[str]:
    """The exact model input of the first tool for the sample intent, so a wrong prompt is seen at once."""
    if not prompt:
        return []
    tool, text = next(iter(prompt["sample_input"].items()))
    out = [f"  prompt: {prompt['kind']}" + (f" ({prompt['source']})" if prompt.get("source") else "")
           + f"; model input for {prompt['sample_intent']!r}, tool {tool}:"]
    return out + ["    " + line for line in text.splitlines() or [""]]


def check_lines(report: dict | None) -> list[str]:
    if not report:
        return []
    per_tool = ", ".join(f"{t} {v['agreement']:.0%}" for t, v in report["tools"].items())
    return [f"  examples {report['file']}: {report['agreement']:.0%} of {report['n']} answers as expected ({per_tool})"]


def prompt_record(registry: Registry, family: str, intent: str = SAMPLE_INTENT) -> dict:
    """What the manifest keeps of the prompt: its kind and source, and every tool's input for one intent."""
    return {"kind": registry.style.kind, "source": registry.style.source, "sample_intent": intent,
            "sample_input": {t: registry.prompt(t, intent, family) for t in registry.tool_names}}


def prompted(registry: Registry, model_dir: Path, prompt: PromptStyle | None) -> Registry:
    """The registry with its prompt style: ``prompt`` if given, else the student's chat template
    (``tokenizer_config.json``) if it has one, else vedit's prompts."""
    if prompt is None:
        prompt = chat_template_of(model_dir) or PromptStyle()
    return registry.with_prompt(prompt)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")


def _convert(staging: Path, out: Path, onnx_files: list[str], precision: str, family: str) -> None:
    from vedit.export import quantize
    from vedit.export.onnx_common import move_onnx

    for name in onnx_files:
        if precision == "fp32":
            move_onnx(staging, out, name)
        elif bits := PRECISION_TABLE[precision].weight_bits:
            log.info(f"quantizing {name}'s MatMul weights to {bits} bits (MatMulNBits, "
                     f"blocks of {quantize.BLOCK_SIZES[bits]})")
            quantize.to_nbits(staging / name, out / name, bits=bits)
        else:
            log.info(f"converting {name} to fp16" + (" (overflow-prone ops kept in fp32)" if family == "t5" else ""))
            quantize.to_fp16(staging / name, out / name, family=family)


def _compile_grammar(tmp: Path) -> dict:
    from vedit.decoding.compile import compile_grammars

    log.info("compiling the output grammars")
    return compile_grammars(tmp)  # raises GrammarError: the export fails, nothing is left


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    family: str | None = None,
    adapter_dir: str | Path | None = None,
    to: str = "onnx",
    precision: str = "fp32",
    force: bool = False,
    allow_pickle: bool = False,
    registry: Registry | None = None,
    intents: list[str] | None = None,
    max_new_tokens: int | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: Tolerance | None = None,
    fused: bool = True,
    prompt: PromptStyle | None = None,
    examples: str | Path | None = None,
) -> ExportResult:
    """Export a T5 or Llama student (optionally merging a LoRA adapter) into a validated export dir.

    ``family`` (``"t5"``/``"llama"``), when given, must match the model's architecture. ``intents``
    default to the demo test set's first three (see :mod:`vedit.export.prompts`). ``tolerance``
    overrides the per-precision default of :func:`vedit.export.validate.tolerance_for`.
    ``fused``: Llama students get vedit's fused decoder graph (:mod:`vedit.export.fuse`) at fp32 and
    int8 instead of optimum's traced one (fp16 keeps optimum's graph).
    ``max_new_tokens`` defaults to the longest canonical answer the registry allows (plus EOS).
    ``prompt``: how prompts are written (default: the student's chat template if its
    ``tokenizer_config.json`` has one, else vedit's; see :mod:`vedit.registry.prompting`).
    ``examples``: a JSONL file of intents and expected answers; the export reports its agreement.
    """
    check_format(to)
    _check_precision(precision)
    target = check_target(out_dir, force=force)
    md = checks.inspect_model_dir(model_dir, allow_pickle=allow_pickle)
    if family is not None and md.family.name != family:
        raise ExportError(
            f"{md.path} is a {md.family.name} model, not {family}; use `vedit-export {md.family.command}`"
        )
    if adapter_dir is not None:
        adapter_dir = checks.require_dir(adapter_dir, "adapter")
    with torch_threads(threads_for_files(md.weight_files)):
        registry = prompted(registry or default_registry(), md.path, prompt)
        checked = None
        if examples is not None:  # read and checked before any export work
            from vedit.export.examples import read_examples

            checked = (examples, read_examples(examples, registry))
        return _export_model(md, target, adapter_dir=adapter_dir, precision=precision, force=force,
                             allow_pickle=allow_pickle, registry=registry, intents=intents,
                             max_new_tokens=max_new_tokens, opset=opset, tolerance=tolerance, fused=fused,
                             examples=checked)


def _export_model(md: checks.ModelDir, target: Path, *, adapter_dir: Path | None, precision: str, force: bool,
                  allow_pickle: bool, registry: Registry | None, intents: list[str] | None, max_new_tokens: int | None,
                  opset: int, tolerance: Tolerance | None, fused: bool = True,
                  examples: tuple | None = None) -> ExportResult:
    registry = registry or default_registry()
    intents = intents or held_out_intents(3)
    batches = prompt_batches(registry, md.family.name, intents)

    tokenizer = checks.load_tokenizer(md.path)
    checks.check_tokenizer_writes(tokenizer, registry, md.path)  # before any export work
    log.info(f"loading {md.family.name} model from {md.path}")
    model = checks.load_model(md)
    checks.check_tokenizer_matches(model, tokenizer, md.path)
    if max_new_tokens is None:  # the greedy check covers the longest canonical answer of any tool
        from vedit.export.budget import output_token_budget

        max_new_tokens = output_token_budget(registry, tokenizer)
    merge_report = None
    if adapter_dir is not None:
        model, merge_report = merge_adapter(model, tokenizer, md.family.name, adapter_dir, allow_pickle=allow_pickle,
                                            registry=registry, intents=intents)
        merge_report.base_dir = str(md.path)

    log.info("hashing source weights")
    sha = checks.source_hashes(md, adapter_dir)

    with atomic_dir(target, force=force) as tmp:
        staging = tmp / STAGING
        log.info(f"exporting to ONNX via optimum (opset {opset})")
        if md.family.name == "t5":
            from vedit.export.onnx_seq2seq import export_t5 as export_fn
        else:
            from vedit.export.onnx_decoder import export_llama as export_fn
        files = _export(export_fn, model, staging, opset)
        if fused and md.family.name == "llama" and precision != "fp16":
            from vedit.export.fuse import replace_with_fused

            replace_with_fused(model, staging / "fp32" / files["decoder"])
            log.info(f"replaced the decoder with vedit's fused graph (opset {opset_of(staging / 'fp32' / files['decoder'])})")
        _convert(staging / "fp32", tmp, list(files.values()), precision, md.family.name)
        for name in ("config.json", "generation_config.json"):
            if (staging / name).exists():
                shutil.move(str(staging / name), str(tmp / name))
        shutil.rmtree(staging)
        checks.copy_tokenizer_files(md.path, tmp)
        registry.save(tmp / "registry.json")
        registry.save_tools(tmp / TOOLS_FILE)

        report = validate_export(tmp, model, tokenizer, family=md.family.name, files=files, precision=precision,
                                 batches=batches, intents=intents, max_new_tokens=max_new_tokens,
                                 tolerance=tolerance)
        grammar = _compile_grammar(tmp)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "family": md.family.name,
            "precision": precision,
            "opset": opset_of(tmp / next(iter(files.values()))),
            "graphs": graph_recipe(md.family.name, precision, fused),
            "files": files,
            "io": {name: io_names(tmp / name) for name in files.values()},
            "sizes": file_sizes(tmp),
            "sha256": file_hashes(tmp),
            "source": {
                "model_dir": str(md.path),
                "adapter_dir": str(adapter_dir) if adapter_dir is not None else None,
                "sha256": sha,
            },
            "merge": merge_report.to_dict() if merge_report else None,
            "versions": package_versions(),
            "validation": report.to_dict(),
            "grammar": grammar,
            "prompt": prompt_record(registry, md.family.name),
            "tools": {"file": TOOLS_FILE, "sha256": sha256_file(tmp / TOOLS_FILE), "names": list(registry.tool_names),
                      "source": str(registry.source) if registry.source else None},
            "created": now_iso(),
        }
        manifest = write_json(tmp / "manifest.json", manifest)
        if examples is not None:  # the export answers the examples: needs the manifest in place
            from vedit.export.examples import check_examples

            log.info(f"answering the {len(examples[1])} examples of {examples[0]}")
            manifest["check_examples"] = check_examples(tmp, *examples, registry)
            manifest = write_json(tmp / "manifest.json", manifest)
        log.info("answering the calibration intents for the drafts table")
        manifest["drafts"] = write_drafts(tmp)  # the finished export answers them: needs the manifest in place
        manifest["sizes"], manifest["sha256"] = file_sizes(tmp), file_hashes(tmp)  # drafts.json included
        manifest = write_json(tmp / "manifest.json", manifest)
        log.info(f"moving the export into place: {target}")
    return ExportResult(target, manifest, report, merge_report)


def _export(export_fn, model, staging: Path, opset: int) -> dict[str, str]:
    """Run the family exporter into ``staging/fp32`` (precision conversion reads from there);
    optimum's config files end up in ``staging``. Returns role -> ONNX file name."""
    fp32 = staging / "fp32"
    fp32.mkdir(parents=True)
    files, _, _ = export_fn(model, staging / "optimum", fp32, opset=opset)
    for name in ("config.json", "generation_config.json"):
        if (staging / "optimum" / name).exists():
            shutil.move(str(staging / "optimum" / name), str(staging / name))
    return files


def default_family_dirs(family: str) -> dict:
    """Defaults of the CLI, documented here so the library and the CLI agree."""
    from vedit.paths import students_dir

    if family == "t5":
        return {"model": students_dir() / "t5", "adapter": None}
    return {"model": students_dir() / "llama-base", "adapter": students_dir() / "llama-lora"}


__all__ = ["ExportResult", "PRECISIONS", "export_model"]
