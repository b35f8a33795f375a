"""Merge a LoRA adapter into its base model (peft ``merge_and_unload``), verified against the adapter.

The merged model must compute what the base + adapter computed: on held-out prompts the max absolute
difference between their logits must stay within ``MERGE_ATOL + MERGE_RTOL * max|logits|`` (T5 logits
reach tens, and float32 rounding grows with them). Measured on the tiny students: ~3e-7 (Llama) and
~2e-5 (T5).

Before peft touches anything, the adapter is checked against the base: every LoRA tensor must name a
layer that exists in the base with matching shapes, and every target module must exist; an adapter
trained for another base is refused with the list of problems (``base_model_name_or_path`` in
``adapter_config.json`` is not used: for local dirs it is just whatever path the trainer had).
"""

from __future__ import annotations

import logging
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vedit.errors import ModelDirError, ValidationError
from vedit.export import checks
from vedit.atomicio import atomic_dir
from vedit.export.prompts import held_out_intents, prompt_batches
from vedit.export.reference import encode, forward_logits
from vedit.registry import Registry, default_registry

log = logging.getLogger(__name__)

#: Max abs logit difference allowed between the adapter model and the merged model:
#: ``MERGE_ATOL + MERGE_RTOL * max|adapter logits|``.
MERGE_ATOL = 1e-4
MERGE_RTOL = 1e-5


_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.[^.]+)?(\.weight)?$")


@dataclass
class MergeReport:
    """What the merge did and how closely the merged model matches the adapter model."""

    base_dir: str
    adapter_dir: str
    out_dir: str | None
    lora_modules: int
    max_abs_diff: float
    tolerance: float
    adapter_effect: float  # max |merged - base| logits: 0 means the adapter changed nothing
    prompts: int
    passed: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _adapter_weights(adapter_dir: Path, allow_pickle: bool) -> dict[str, Any]:
    st = adapter_dir / "adapter_model.safetensors"
    if st.exists():
        checks.check_safetensors(st)
        from safetensors.torch import load_file

        return load_file(str(st))
    binf = adapter_dir / "adapter_model.bin"
    if binf.exists():
        if not allow_pickle:
            raise ModelDirError(
                f"{adapter_dir}: only pickled adapter weights (adapter_model.bin); convert them to "
                "safetensors or pass --allow-pickle if you trust the source"
            )
        import torch

        try:
            return torch.load(str(binf), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelDirError(f"{binf}: corrupt adapter weights ({exc})") from None
    raise ModelDirError(f"{adapter_dir}: no adapter weights (adapter_model.safetensors)")


def check_adapter(base_model, family_name: str, adapter_dir: str | Path, *, allow_pickle: bool = False) -> int:
    """Refuse an adapter that does not fit ``base_model``; return the number of LoRA layers.

    Collects every problem (missing layers, shape mismatches, unknown target modules, wrong task type,
    non-LoRA adapters) and raises one :class:`ModelDirError` listing the first few.
    """
    import torch

    a = checks.require_dir(adapter_dir, "adapter")
    cfg = checks.read_json(a / "adapter_config.json", "LoRA adapter")
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise ModelDirError(f"{a}: peft_type {cfg.get('peft_type')!r} is not supported; only LoRA adapters merge")
    weights = _adapter_weights(a, allow_pickle)
    problems: list[str] = []
    expected_task = {"t5": "SEQ_2_SEQ_LM", "llama": "CAUSAL_LM"}[family_name]
    task = cfg.get("task_type")
    if task and task != expected_task:
        problems.append(f"task_type {task} (a {family_name} base needs {expected_task})")

    modules = dict(base_model.named_modules())
    params = dict(base_model.named_parameters())
    targets = cfg.get("target_modules")
    if isinstance(targets, str) and targets != "all-linear":  # peft treats a string as one regex
        if not any(re.fullmatch(targets, name) for name in modules):
            problems.append(f"target_modules regex {targets!r} matches no layer of the base")
    elif isinstance(targets, list):
        for t in sorted(targets):
            if not any(name == t or name.endswith("." + t) for name in modules):
                problems.append(f"target module {t!r} not found in the base")

    lora: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, tensor in weights.items():
        name = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        m = _LORA_KEY.match(name)
        if m is None:  # modules_to_save: a full copy of a base parameter
            base_name = name.replace(".modules_to_save", "").replace(".original_module", "")
            if base_name not in params:
                problems.append(f"saved module {base_name} does not exist in the base")
            elif tuple(params[base_name].shape) != tuple(tensor.shape):
                problems.append(f"{base_name}: shape {tuple(tensor.shape)} vs base {tuple(params[base_name].shape)}")
            continue
        lora.setdefault(m["module"], {})[m["kind"]] = tuple(tensor.shape)

    for path, parts in lora.items():
        layer = modules.get(path)
        if layer is None:
            problems.append(f"layer {path} does not exist in the base")
            continue
        if isinstance(layer, torch.nn.Linear):
            want = {"lora_A": (None, layer.in_features), "lora_B": (layer.out_features, None)}
        elif isinstance(layer, torch.nn.Embedding):
            want = {"lora_embedding_A": (None, layer.num_embeddings), "lora_embedding_B": (layer.embedding_dim, None)}
        else:
            problems.append(f"layer {path} is a {type(layer).__name__}, which vedit cannot check")
            continue
        for kind, shape in parts.items():
            exp = want.get(kind)
            if exp is None or len(shape) != 2 or any(e is not None and e != s for e, s in zip(exp, shape)):
                problems.append(f"{path}.{kind}: shape {shape} does not fit the base layer {tuple(layer.weight.shape)}")
    if not lora:
        problems.append("no LoRA tensors in the adapter weights")
    if problems:
        shown = "; ".join(problems[:4]) + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else "")
        raise ModelDirError(f"{a}: adapter does not fit the base model (trained for another base?): {shown}")
    return len(lora)


def merge_adapter(base_model, tokenizer, family_name: str, adapter_dir: str | Path, *,
                  allow_pickle: bool = False, registry: Registry | None = None,
                  intents: list[str] | None = None):
    """Merge in memory. Returns ``(merged_model, MergeReport)``; raises if the merge changes outputs.

    ``base_model`` is modified in place (peft injects, then merges into its layers).
    """
    from vedit.export.onnx_common import threads_for, torch_threads

    with torch_threads(threads_for(base_model)):
        return _merge_adapter(base_model, tokenizer, family_name, adapter_dir, allow_pickle=allow_pickle,
                              registry=registry, intents=intents)


def _merge_adapter(base_model, tokenizer, family_name: str, adapter_dir: str | Path, *, allow_pickle: bool,
                   registry: Registry | None, intents: list[str] | None):
    from peft import PeftModel

    n_lora = check_adapter(base_model, family_name, adapter_dir, allow_pickle=allow_pickle)
    registry = registry or default_registry()
    intents = intents or held_out_intents(2)
    prompts = [p for b in prompt_batches(registry, family_name, intents) for p in b]
    batch = encode(tokenizer, prompts, family_name)

    log.info(f"merging adapter {adapter_dir} ({n_lora} LoRA layers)")
    base_logits, valid = forward_logits(base_model, tokenizer, batch, family_name)
    try:
        peft_model = PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=False)
    except Exception as exc:
        raise ModelDirError(f"{adapter_dir}: peft cannot load the adapter ({str(exc).splitlines()[0]})") from None
    peft_model.eval()
    adapter_logits, _ = forward_logits(peft_model, tokenizer, batch, family_name)
    merged = peft_model.merge_and_unload().eval()
    merged_logits, _ = forward_logits(merged, tokenizer, batch, family_name)

    diff = float(abs(adapter_logits - merged_logits)[valid].max())
    effect = float(abs(merged_logits - base_logits)[valid].max())
    tol = MERGE_ATOL + MERGE_RTOL * float(abs(adapter_logits[valid]).max())
    report = MergeReport(
        base_dir=str(getattr(base_model.config, "_name_or_path", "")),
        adapter_dir=str(Path(adapter_dir).resolve()),
        out_dir=None,
        lora_modules=n_lora,
        max_abs_diff=diff,
        tolerance=tol,
        adapter_effect=effect,
        prompts=len(prompts),
        passed=diff <= tol,
    )
    if effect == 0.0:
        report.notes.append("the adapter does not change the logits (all lora_B zero?)")
    if not report.passed:
        raise ValidationError(
            f"merged model disagrees with the adapter model: logits max abs diff {diff:.3g} > tolerance {tol:.3g}"
        )
    log.info(f"merge verified: logits max abs diff {diff:.3g} (tolerance {tol:.3g})")
    return merged, report


def merge(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, *, force: bool = False,
          allow_pickle: bool = False, registry: Registry | None = None) -> MergeReport:
    """Merge ``adapter_dir`` into ``base_dir`` and save the merged model (safetensors) and tokenizer.

    ``out_dir`` also gets ``merge_report.json``. Written atomically: nothing is left on failure.
    """
    from vedit.atomicio import check_target
    from vedit.export.onnx_common import threads_for_files, torch_threads

    target = check_target(out_dir, force=force)
    md = checks.inspect_model_dir(base_dir, allow_pickle=allow_pickle, what="base model")
    checks.require_dir(adapter_dir, "adapter")
    with torch_threads(threads_for_files(md.weight_files)):
        return _merge_to_dir(md, adapter_dir, target, force=force, allow_pickle=allow_pickle, registry=registry)


def _merge_to_dir(md: checks.ModelDir, adapter_dir: str | Path, target: Path, *, force: bool, allow_pickle: bool,
                  registry: Registry | None) -> MergeReport:
    log.info(f"loading base model {md.path}")
    model = checks.load_model(md)
    tokenizer = checks.load_tokenizer(md.path)
    checks.check_tokenizer_matches(model, tokenizer, md.path)
    merged, report = merge_adapter(model, tokenizer, md.family.name, adapter_dir, allow_pickle=allow_pickle,
                                   registry=registry)
    report.base_dir = str(md.path)
    with atomic_dir(target, force=force) as tmp:
        log.info(f"saving merged model to {target}")
        merged.save_pretrained(str(tmp), safe_serialization=True)
        checks.copy_tokenizer_files(md.path, tmp)
        report.out_dir = str(target)
        (tmp / "merge_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
