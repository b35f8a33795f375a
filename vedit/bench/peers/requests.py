"""What every T5 peer feeds its engine: the export's own prompt ids and scripted rows, per intent.

Why one place: a peer must see exactly the token ids vedit's :class:`~vedit.decoding.Predictor`
sees (same registry snapshot, tokenizer, prompt template and input limit), and must be steered to
the same scripted rows, or the comparison is of different work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vedit.decoding.grammar import CompiledGrammar, load_grammar
from vedit.decoding.prompts import PromptBuilder, input_limit
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import ModelDirError
from vedit.manifest import read_manifest
from vedit.registry.model import Registry, load_registry

if TYPE_CHECKING:
    from vedit.bench.scripted import Script


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
        self.max_tokens = max(a.max_tokens() for a in grammar.automata.values())
        self._prompts: dict[str, list[list[int]]] = {}
        for intent in scripts:  # built before any timing, as the PyTorch baselines' prompts are
            self.prompts(intent)

    @classmethod
    def load(cls, exports: dict[str, Path], scripts: dict[str, "Script"]) -> "Requests":
        """From the fp32 export (else the first): all precisions share prompts, grammar and tokenizer."""
        if not exports:
            raise ModelDirError("no export given: the T5 peers need the export's tokenizer, registry and grammar")
        d = Path(exports.get("fp32") or next(iter(exports.values())))
        man = read_manifest(d)
        if man.family != "t5":
            raise ModelDirError(f"{d}: a {man.family} export; these peers are for T5 students")
        registry = load_registry(d / "registry.json")
        grammar = load_grammar(d)
        tok = load_tokenizer(d)
        longest = max(a.max_tokens() for a in grammar.automata.values())
        builder = PromptBuilder(registry, tok.tokenizer, "t5", input_limit("t5", man.config, longest))
        return cls(d, registry, grammar, builder, dict(scripts), tok.eos_token_id, tok.pad_token_id)

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


__all__ = ["RequestRows", "Requests"]
