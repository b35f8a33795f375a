"""Scripted answers: a random-weight model made to answer like a trained student, on every path.

Why: a model's compute does not depend on its weights' values, but the *answers* of a random
model do (it picks the short ``{}`` / ``"none"`` forms: a few free tokens per request instead of
~40). Timing it measures too little work. So each request gets a :class:`Script`: the demo test
set's answer for that intent, in the grammar's exact output form and tokenization. Every path is
steered to it by one rule, a large logit bias (:data:`SCRIPT_BIAS`) on the scripted token added to
the model's logits before the grammar's choice (ONNX loop: :func:`script_bias`; PyTorch and any
``generate``: :class:`vedit.reference.ScriptLogitsProcessor`). All paths then decode the same
realistic texts, and the bench checks that they did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vedit import paths
from vedit.decoding.grammar import DONE, CompiledGrammar, ToolAutomaton, load_grammar
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import DatasetError, GrammarError
from vedit.reference import SCRIPT_BIAS
from vedit.registry.model import load_registry


@dataclass(frozen=True)
class Script:
    """The answer every path must produce for one request (one intent = one row per tool, registry order)."""

    intent: str
    tokens: dict[str, tuple[int, ...]]  # tool name -> output token ids the grammar accepts, EOS included
    texts: dict[str, str]  # tool name -> decoded text of those ids (what every path must return)

    def text_tuple(self) -> tuple[str, ...]:
        """The texts in registry order (the form a path's ``Cost.texts`` takes)."""
        return tuple(self.texts.values())


@dataclass(frozen=True)
class ScriptCost:
    """Free and forced tokens of a script under its grammar: the work any constrained path does."""

    free: int
    forced: int


def script_bias(logits: np.ndarray, script_row: Sequence[int], position: int) -> np.ndarray:
    """``logits`` with :data:`SCRIPT_BIAS` added to ``script_row[position]`` (a copy; unchanged past the end)."""
    if position >= len(script_row):
        return logits
    out = np.array(logits, copy=True)
    out[script_row[position]] += SCRIPT_BIAS
    return out


def steer(scripts: Sequence[Script]) -> Callable[[int, str, int, Any], Any]:
    """The ONNX predictor's hook (``Predictor.predict(intents, bias=steer(scripts))``), ``scripts[i]`` for ``intents[i]``."""
    return lambda i, tool, position, logits: script_bias(logits, scripts[i].tokens[tool], position)


def load_scripts(export_dir: Path, n: int, *, truth: Path | None = None) -> list[Script]:
    """Scripts for the first ``n`` rows of ``truth`` (default: the demo test set), in ``export_dir``'s tokens.

    Each answer is the canonical JSON of the truth call, tokenized as the student was trained to
    write it (the tokenizer's own encoding of the target), and checked to be accepted, EOS
    included, by the export's compiled grammar; when the grammar admits another tokenization only
    (``any`` mode never refuses; a canonical grammar could), the grammar's own longest-match path
    for the same text is used.
    """
    from vedit.data.rows import read_truth

    export_dir = Path(export_dir)
    truth = Path(truth) if truth is not None else paths.data_dir() / "test.jsonl"
    if not truth.is_file():
        raise DatasetError(str(truth), [(1, "no truth file for scripted answers; build the demo data (vedit demo build)")])
    registry = load_registry(export_dir / "registry.json")
    grammar = load_grammar(export_dir)
    tok = load_tokenizer(export_dir).tokenizer
    rows = read_truth(truth, registry)[: max(0, n)]
    out = []
    for row in rows:
        tokens: dict[str, tuple[int, ...]] = {}
        for tool in registry.tool_names:
            ids = script_tokens(grammar, tool, row.calls_by_tool[tool].dumps(), tok)
            tokens[tool] = ids
        out.append(Script(row.intent, tokens, {t: grammar.text(list(ids)) for t, ids in tokens.items()}))
    return out


def script_tokens(grammar: CompiledGrammar, tool: str, text: str, tokenizer=None) -> tuple[int, ...]:
    """Token ids (EOS included) that the grammar of ``tool`` accepts and that write ``text``
    (optionally after the one leading space T5-style tokenizers add)."""
    automaton = grammar.automata.get(tool)
    if automaton is None:
        raise GrammarError(f"no grammar for tool {tool!r}; known: {', '.join(grammar.automata)}")
    eos = grammar.eos_token_id
    if tokenizer is not None:
        ids = [*tokenizer.encode(text, add_special_tokens=False).ids, eos]
        m = grammar.matcher(tool)
        if all(m.advance(t) for t in ids) and m.is_finished():  # accepted, ending exactly at EOS
            return tuple(ids)
    for variant in (text, " " + text):
        path = _path(grammar, automaton, variant.encode("utf-8"))
        if path is not None:
            return tuple(path + [eos])
    raise GrammarError(f"the {tool} grammar does not accept {text!r}; is the truth file for this registry?")


def script_cost(grammar: CompiledGrammar, script: Script) -> ScriptCost:
    """Free (several tokens allowed) and forced (one allowed) tokens of ``script``, all rows together."""
    free = forced = 0
    for tool, ids in script.tokens.items():
        m = grammar.matcher(tool)
        for t in ids:
            if len(m.allowed_tokens()) > 1:
                free += 1
            else:
                forced += 1
            if not m.advance(t):
                raise GrammarError(f"{script.intent!r}: the {tool} grammar refuses scripted token {t}")
    return ScriptCost(free, forced)


def _path(grammar: CompiledGrammar, a: ToolAutomaton, data: bytes) -> list[int] | None:
    """A token path from the start state writing exactly ``data`` and ending in a final state
    (longest token first at each step, like a tokenizer's longest match); ``None`` if there is none."""
    failed: set[tuple[int, int]] = set()

    def walk(state: int, pos: int) -> list[int] | None:
        if pos == len(data):
            return [] if a.final[state] else None
        if (state, pos) in failed:
            return None
        lo, hi = a.indptr[state], a.indptr[state + 1]
        options = []
        for t, nxt in zip(a.tokens[lo:hi], a.next[lo:hi]):
            b = grammar.token_bytes.get(int(t))
            if nxt != DONE and b and data.startswith(b, pos):
                options.append((len(b), int(t), int(nxt)))
        for size, t, nxt in sorted(options, reverse=True):
            rest = walk(nxt, pos + size)
            if rest is not None:
                return [t, *rest]
        failed.add((state, pos))
        return None

    return walk(0, 0)


__all__ = ["SCRIPT_BIAS", "Script", "ScriptCost", "load_scripts", "script_bias", "script_cost", "script_tokens", "steer"]
