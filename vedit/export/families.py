"""The student families vedit can export, keyed by the ``model_type`` of ``config.json``.

One entry per architecture (not one module for all): adding a family means adding a row here and an
ONNX exporter module. An unknown ``model_type`` fails with the list of supported ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vedit.errors import ExportError

FamilyName = Literal["t5", "llama"]


@dataclass(frozen=True)
class Family:
    """How to load and export one architecture."""

    name: FamilyName
    #: ``config.json`` ``model_type`` values handled by this family.
    model_types: tuple[str, ...]
    #: transformers class used to load the PyTorch reference.
    model_class: str
    #: the ``vedit-export`` sub-command that exports it.
    command: str
    #: peft ``task_type`` an adapter for this family may declare.
    peft_task_type: str

    @property
    def is_encoder_decoder(self) -> bool:
        return self.name == "t5"

    def load_class(self):
        import transformers

        return getattr(transformers, self.model_class)


FAMILIES: dict[str, Family] = {
    "t5": Family("t5", ("t5",), "T5ForConditionalGeneration", "flan-t5", "SEQ_2_SEQ_LM"),
    "llama": Family("llama", ("llama",), "LlamaForCausalLM", "llama", "CAUSAL_LM"),
}

#: Target formats ``--to`` accepts; only ONNX exists today.
FORMATS: tuple[str, ...] = ("onnx",)


def supported_model_types() -> list[str]:
    return sorted({t for f in FAMILIES.values() for t in f.model_types})


def family_for_model_type(model_type: str | None, where: str) -> Family:
    """The family of a model, or an :class:`ExportError` naming the supported architectures."""
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    raise ExportError(
        f"{where}: unsupported architecture {model_type!r} (config.json model_type); "
        f"supported: {', '.join(supported_model_types())}"
    )


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; available formats: {', '.join(FORMATS)}")
    return fmt
