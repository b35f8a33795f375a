"""Training examples for the demo students: one (prompt, target) pair per intent and tool.

Students are multi-task, as in the paper: every intent yields one example per registry tool, the
prompt is the registry's concise student prompt in the family's chat form and the target is the
canonical compact JSON of the ground-truth call (no rationale), so what a student learns to write
is exactly what the parser and the decoding grammar accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vedit.data.rows import TruthRow
from vedit.registry import Registry
from vedit.registry.model import Family


@dataclass(frozen=True)
class Example:
    tool: str
    prompt: str
    target: str


def examples(rows: Sequence[TruthRow], registry: Registry, family: Family) -> list[Example]:
    """All (intent x tool) examples of ``rows``, in row order then registry tool order."""
    return [
        Example(tool.name, registry.prompt(tool.name, row.intent, family), row.calls_by_tool[tool.name].dumps())
        for row in rows
        for tool in registry.tools
    ]


def tokenizer_texts(rows: Sequence[TruthRow], registry: Registry) -> Iterable[str]:
    """Texts the SentencePiece model is trained on: every prompt and every target.

    Both families share one vocabulary. The Llama chat form wraps the T5 prompt in its markers, so
    its prompts cover both families' text.
    """
    for row in rows:
        for tool in registry.tools:
            yield registry.prompt(tool.name, row.intent, "llama")
            yield row.calls_by_tool[tool.name].dumps()


__all__ = ["Example", "examples", "tokenizer_texts"]
