"""Training examples for the demo students: one (prompt, target) pair per intent and tool.

Students are multi-task, as in the paper: every intent yields one example per registry tool, the
prompt is the registry's concise student prompt in the family's chat form and the target is the
canonical compact JSON of the ground-truth call (no rationale), so what a student learns to write
is exactly what the parser and the decoding grammar accept.
"""

from __future__ import annotations

import re
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


def prompt_word_hints(registry: Registry) -> list[str]:
    """A few lines that show each fixed prompt word followed by different punctuation.

    Why: SentencePiece's unigram trainer seeds its candidate pieces with substrings that occur in
    more than one distinct whitespace-separated word. A prompt word that always appears in the same
    form (``request``) is never a candidate, however often it occurs, and ends up split into 3-4
    pieces; every prompt then costs the encoder twice the tokens. Seen once with ``.``, ``,``, ...
    attached, each word becomes a candidate and a single piece.
    """
    fixed = " ".join(registry.prompt(t.name, "", "llama") for t in registry.tools)
    words = sorted(set(re.findall(r"[^\W\d_]+", fixed)))
    return [" ".join(w + mark for w in words) for mark in ".,:;!?"]


def tokenizer_texts(rows: Sequence[TruthRow], registry: Registry) -> Iterable[str]:
    """Texts the SentencePiece model is trained on: every prompt and every target, plus
    :func:`prompt_word_hints`.

    Both families share one vocabulary. The Llama chat form wraps the T5 prompt in its markers, so
    its prompts cover both families' text.
    """
    yield from prompt_word_hints(registry)
    for row in rows:
        for tool in registry.tools:
            yield registry.prompt(tool.name, row.intent, "llama")
            yield row.calls_by_tool[tool.name].dumps()


__all__ = ["Example", "examples", "prompt_word_hints", "tokenizer_texts"]
