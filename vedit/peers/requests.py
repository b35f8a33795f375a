"""What every peer feeds its engine: the export's own prompt ids and scripted rows, per intent.

Why one place: a peer must see exactly the token ids vedit's :class:`~vedit.decoding.Predictor`
sees (same registry snapshot, tokenizer, prompt template and input limit), and must be steered to
the same scripted rows, or the comparison is of different work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vedit.decoding.grammar import CompiledGrammar, load_grammar
from vedit.decoding.prompts import PromptBuilder, input_limit
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import ModelDirError
from vedit.manifest import read_manifest
from vedit.registry.model import Registry, load_registry

if TYPE_CHECKING:
    from vedit.workload.scripted import Script


@dataclass(frozen=True)
class ExportParts:
    """What a peer takes from vedit's export: registry snapshot, grammar, tokenizer, prompt builder."""

    export_dir: Path
    config: dict
    registry: Registry
    grammar: CompiledGrammar
    tokenizer: Any  # vedit.decoding.vocab's loaded tokenizer
    builder: PromptBuilder
    #: the longest output the grammar allows (EOS included)
    longest: int


def export_parts(exports: dict[str, Path], family: str, engine: str) -> ExportParts:
    """From the fp32 export (else the first): all precisions share prompts, grammar and tokenizer."""
    if not exports:
        raise ModelDirError(f"no export given: {engine} needs the export's tokenizer, registry and grammar")
    d = Path(exports.get("fp32") or next(iter(exports.values())))
    man = read_manifest(d)
    if man.family != family:
        raise ModelDirError(f"{d}: a {man.family} export; {engine} is measured on {family} students here")
    registry = load_registry(d / "registry.json")
    grammar = load_grammar(d)
    tok = load_tokenizer(d)
    longest = grammar.max_tokens()
    builder = PromptBuilder(registry, tok.tokenizer, family, input_limit(family, man.config, longest))
    return ExportParts(d, man.config, registry, grammar, tok, builder, longest)


@dataclass
class RequestRows:
    """Prompt ids (one row per tool, registry order) and, when scripted, each row's scripted output ids."""

    prompts: list[list[int]]
    script: list[tuple[int, ...]] | None


class Requests:
    """Turns an intent into its rows, as the export's Predictor would. Build with :meth:`load`."""

    def __init__(self, export_dir: Path, registry: Registry, grammar: CompiledGrammar, builder: PromptBuilder,
                 scripts: dict[str, "Script"], eos_token_id: int, pad_token_id: int):
        self.export_dir = export_dir
        self.registry = registry
        self.grammar = grammar
        self.builder = builder
        self.scripts = scripts
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.tools = list(registry.tool_names)
        #: the longest output the grammar allows (EOS included): the unscripted length cap
        self.max_tokens = grammar.max_tokens()
        self._prompts: dict[str, list[list[int]]] = {}
        for intent in scripts:  # built before any timing, as the PyTorch baselines' prompts are
            self.prompts(intent)

    @classmethod
    def load(cls, exports: dict[str, Path], scripts: dict[str, "Script"]) -> "Requests":
        x = export_parts(exports, "t5", "the T5 peers")
        return cls(x.export_dir, x.registry, x.grammar, x.builder, dict(scripts), x.tokenizer.eos_token_id,
                   x.tokenizer.pad_token_id)

    def prompts(self, intent: str) -> list[list[int]]:
        """The intent's prompt ids per tool (built once per intent: tokenizing is not the peer's work)."""
        if intent not in self._prompts:
            self._prompts[intent] = self.builder.build(intent).ids
        return self._prompts[intent]

    def rows(self, intent: str) -> RequestRows:
        script = self.scripts.get(intent)
        return RequestRows(self.prompts(intent), [tuple(script.tokens[t]) for t in self.tools] if script is not None else None)

    def texts(self, outputs: list[list[int]]) -> tuple[str, ...]:
        """The grammar's text of each row's output ids (what vedit returns for the same ids)."""
        return tuple(self.grammar.text(list(ids)) for ids in outputs)


__all__ = ["ExportParts", "RequestRows", "Requests", "export_parts"]
