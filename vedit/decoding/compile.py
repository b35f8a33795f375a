"""Compile the registry's output grammars against a tokenizer, once, at export time.

For each tool a regex is generated from the registry (``language``) and compiled by outlines-core
(``Index``) into a token automaton, which is stored as sparse tables (``grammar``). Three modes:

- ``canonical`` (preferred): the regex is written over *token symbols* so fixed text is spelled
  by the tokenizer's canonical tokens; the model decides only signs, digits, presets and ``{}``,
  and everything between is a forced chain (jump-forward). Needs a tokenizer whose digits are
  single tokens, and is checked against the tokenizer's own encodings of sample outputs.
- ``runs`` (tokenizers that merge digits: T5 Unigram, SentencePiece BPE, byte-level BPE): free
  points admit every valid token, as ``any`` does, and each forced run of text is spelled by the
  tokenizer's own encoding from the boundary the model left (``runs``): jump-forward is kept.
- ``any``: the character regex over the real bytes of every token, so any tokenization of a
  valid text is admitted (what outlines-core does by default), nothing forced beyond single
  choices. The last resort.

``auto`` picks, *for each tool*, ``canonical`` when its checks pass, else ``runs``, else ``any``
(the reason goes into the info): one tool with a free string (no canonical tokenization) takes
``runs`` without costing the file's other tools their canonical chains. The grammar's ``mode`` is
the tools' common mode or ``mixed``; ``modes`` has each tool's. Every mode's automaton admits
exactly the registry's valid texts; the tests check that.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import outlines_core

from vedit.atomicio import sha256_file
from vedit.decoding.grammar import DONE, GRAMMAR_DIR, CompiledGrammar, ToolAutomaton
from vedit.decoding.language import char_regex, needed_chars, token_regex
from vedit.decoding.runs import TokenTrie, runs_graph
from vedit.decoding.vocab import (
    TokenizerInfo,
    check_reachable,
    continuation_tokenizer,
    digits_split,
    load_tokenizer,
    stretch_tokenizer,
    token_bytes,
)
from vedit.errors import GrammarError
from vedit.registry.calls import ToolCall
from vedit.registry.model import Registry, Tool, load_registry
from vedit.registry.subset import samples

log = logging.getLogger(__name__)

Tokenization = Literal["auto", "canonical", "runs", "any"]
#: Private-use plane 15: one character per token id in token-symbol regexes.
_SYMBOL_BASE = 0xF0000


def build_grammar(registry: Registry, tok: TokenizerInfo, *, tokenization: Tokenization = "auto") -> CompiledGrammar:
    """Compile every tool's automaton for ``tok`` (in memory).

    The mode is chosen per tool: a tool whose output has free string text (no canonical
    tokenization) takes ``runs`` while the file's other tools keep ``canonical``; each tool's
    reason goes into the grammar's info. An explicit ``tokenization`` other than ``auto`` is
    required of every tool (refused with the tool's name when one cannot have it)."""
    table = token_bytes(tok.tokenizer)
    for t in registry.tools:
        check_reachable(needed_chars(t), table, tok.unk_token_id, tok.tokenizer, where=f"the {t.name} grammar")

    builders = _Builders(tok, table)
    automata: dict[str, ToolAutomaton] = {}
    info: dict[str, dict] = {}
    modes: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for t in registry.tools:
        modes[t.name], why = _pick(t, builders, tokenization, automata, info)
        if why:
            reasons[t.name] = why.removeprefix(f"{t.name}: ")
    groups: dict[tuple[str, str], list[str]] = {}
    for name, why in reasons.items():  # one line per (mode, reason): a tokenizer's obstacle is every tool's
        groups.setdefault((modes[name], why), []).append(name)
    for (mode, why), names in groups.items():
        (log.warning if mode == "any" else log.info)("grammar: tokenization %r for %s (%s)", mode, ", ".join(names), why)

    used = {int(t) for a in automata.values() for t in a.tokens}
    used.discard(tok.eos_token_id)
    reason = "; ".join(f"{', '.join(names)}: {why}" for (_, why), names in groups.items())
    meta = {"tools_info": info, "fallback_reason": reason, "fallback_reasons": reasons}
    return CompiledGrammar(automata, {i: table[i] for i in sorted(used)}, tok.eos_token_id, tok.vocab_size,
                           summary_mode(modes), meta, modes)


def summary_mode(modes: dict[str, str]) -> str:
    """One word for the grammar: the tools' common mode, or ``mixed`` (the per-tool modes are kept apart)."""
    kinds = set(modes.values())
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _pick(tool: Tool, b: "_Builders", tokenization: Tokenization, automata: dict, info: dict) -> tuple[str, str]:
    """Build ``tool``'s automaton in the best mode it allows (``canonical``, ``runs``, ``any``), into
    ``automata`` / ``info``; return the mode and why a better one was not possible."""
    reason = ""
    mode = "canonical" if tokenization == "auto" else tokenization
    if mode == "canonical":
        try:
            if b.obstacle:
                raise GrammarError(b.obstacle)
            automata[tool.name], info[tool.name] = b.canonical(tool)
        except GrammarError as exc:
            if tokenization == "canonical":
                raise GrammarError(f"canonical tokenization is not possible: {exc}; use tokenization='runs'") from None
            reason, mode = str(exc), "runs"
    if mode == "runs":
        try:
            automata[tool.name], info[tool.name] = b.runs(tool)
        except GrammarError as exc:
            if tokenization == "runs":
                raise GrammarError(f"{tool.name}: {exc}") from None
            reason, mode = f"{reason}; runs: {exc}" if reason else str(exc), "any"
    if mode == "any":
        automata[tool.name], info[tool.name] = b.any(tool)
    return mode, reason


def _canonical_obstacle(table: list[bytes | None]) -> str:
    if not digits_split(table):
        return "some tokens join a digit with other characters (the tokenizer does not split digits)"
    return ""


class _Builders:
    """One tool's automaton in each mode; what the modes share (encoders, the token trie, the token
    symbols) is made once per tokenizer, on first use."""

    def __init__(self, tok: TokenizerInfo, table: list[bytes | None]):
        self.tok, self.table = tok, table
        self.obstacle = _canonical_obstacle(table)
        self._cache: dict[str, list[int]] = {}
        self._symbols: dict[int, str] = {}
        self._stretch = self._cont = self._trie = self._by_bytes = None

    # -- canonical
    def _cached(self, text: str) -> list[int]:
        if text not in self._cache:
            if self._stretch is None:
                self._stretch = stretch_tokenizer(self.tok.tokenizer, self.table)
            ids = self._stretch(text)
            if self.tok.unk_token_id is not None and self.tok.unk_token_id in ids:
                raise GrammarError(f"the tokenizer writes {text!r} with the unknown token")
            self._cache[text] = ids
        return self._cache[text]

    def _symbol(self, i: int) -> str:
        if i not in self._symbols:
            self._symbols[i] = chr(_SYMBOL_BASE + len(self._symbols))
        return self._symbols[i]

    def canonical(self, t: Tool) -> tuple[ToolAutomaton, dict]:
        start = time.perf_counter()
        rx = token_regex(t, self._cached, self._symbol)
        eos = self.tok.eos_token_id
        vocab = outlines_core.Vocabulary(eos, {s.encode("utf-8"): [i] for i, s in self._symbols.items()})
        a = _tables(t.name, _index(rx, vocab, t), eos)
        _check_canonical(t, a, self.tok)
        return a, {**_info(a, time.perf_counter() - start), "mode": "canonical"}

    # -- runs
    def _encode(self, text: str) -> list[int] | None:
        ids = self._cont.encode(text, add_special_tokens=False).ids
        unk = self.tok.unk_token_id
        return None if unk is not None and unk in ids else ids

    def runs(self, t: Tool) -> tuple[ToolAutomaton, dict]:
        if self._cont is None:
            self._cont = continuation_tokenizer(self.tok.tokenizer)
            self._trie = TokenTrie.build(self.table, {self.tok.eos_token_id})
        start = time.perf_counter()
        eos = self.tok.eos_token_id
        graph, first, finals, stats = runs_graph(char_regex(t), self.table, eos, self._encode, self._trie)
        a = _csr(t.name, graph, first, finals, eos)
        return a, {**_info(a, time.perf_counter() - start), **asdict(stats), "mode": "runs"}

    # -- any
    def any(self, t: Tool) -> tuple[ToolAutomaton, dict]:
        if self._by_bytes is None:
            self._by_bytes = {}
            for i, b in enumerate(self.table):
                if b and i != self.tok.eos_token_id:
                    self._by_bytes.setdefault(b, []).append(i)
        start = time.perf_counter()
        vocab = outlines_core.Vocabulary(self.tok.eos_token_id, self._by_bytes)
        a = _tables(t.name, _index(char_regex(t), vocab, t), self.tok.eos_token_id)
        return a, {**_info(a, time.perf_counter() - start), "mode": "any"}


def _index(regex: str, vocab, tool: Tool):
    try:
        return outlines_core.Index(regex, vocab)
    except Exception as exc:  # outlines raises ValueError / its own errors for unreachable regexes
        raise GrammarError(f"cannot compile the {tool.name} grammar over this tokenizer: {exc}") from exc


def _tables(name: str, index, eos: int) -> ToolAutomaton:
    """outlines-core Index -> CSR tables."""
    return _csr(name, index.get_transitions(), index.get_initial_state(), set(index.get_final_states()), eos)


def _csr(name: str, trans: dict, start, finals: set, eos: int) -> ToolAutomaton:
    """``{state: {token: next}}`` -> CSR tables, states renumbered breadth-first from the start (0).

    An EOS transition becomes ``DONE`` (wherever it pointed); a state is final when it allows EOS
    or is listed in ``finals``."""
    order, pos = [start], {start: 0}
    for s in order:
        for n in sorted(n for t, n in trans.get(s, {}).items() if t != eos):
            if n not in pos:
                pos[n] = len(order)
                order.append(n)
    indptr = [0]
    tokens: list[int] = []
    nexts: list[int] = []
    for s in order:
        for t, n in sorted(trans.get(s, {}).items()):
            tokens.append(t)
            nexts.append(DONE if t == eos else pos[n])
        indptr.append(len(tokens))
    final = np.array([s in finals for s in order], dtype=bool)
    return ToolAutomaton(
        name,
        np.array(indptr, dtype=np.int64),
        np.array(tokens, dtype=np.int32),
        np.array(nexts, dtype=np.int32),
        final,
    )


def _info(a: ToolAutomaton, seconds: float) -> dict:
    return {
        "states": a.n_states,
        "transitions": a.n_transitions,
        "bytes": int(sum(x.nbytes for x in a.arrays().values())),
        "max_tokens": a.max_tokens(),
        "build_seconds": round(seconds, 4),
    }


def sample_calls(tool: Tool, n: int = 40, seed: int = 0) -> list[ToolCall]:
    """Outputs that exercise every branch of the schema: the unused answer, bounds, every enum and
    anyOf option, absent and present optional properties, then random values."""
    values = ([tool.unused] if tool.unused_text is not None else []) + samples(tool.language, random.Random(seed), n)
    return list(dict.fromkeys(ToolCall.of(tool, v) for v in values))


def _check_canonical(tool: Tool, a: ToolAutomaton, tok: TokenizerInfo) -> None:
    """The tokenizer's own encoding of sample outputs must be paths of the automaton."""
    for call in sample_calls(tool):
        text = call.dumps()
        ids = tok.tokenizer.encode(text, add_special_tokens=False).ids
        s = 0
        for i in ids:
            n = a.step(s, i)
            if n is None or n == DONE:
                raise GrammarError(f"{tool.name}: the tokenizer's encoding of {text!r} is not canonical in the grammar")
            s = n
        if not a.final[s]:
            raise GrammarError(f"{tool.name}: the tokenizer's encoding of {text!r} stops early in the grammar")


def compile_grammars(export_dir: str | Path, *, tokenization: Tokenization = "auto") -> dict:
    """Compile the grammars of an export dir into ``EXPORT_DIR/grammar`` and return a summary.

    Reads ``tokenizer.json`` (+ ``config.json``) and ``registry.json`` from ``export_dir``. The
    summary (mode, per-tool states / transitions / bytes / max tokens / build seconds) is meant for
    the export manifest. Raises :class:`GrammarError` when the tokenizer cannot write the grammar.
    """
    d = Path(export_dir)
    registry = load_registry(d / "registry.json")
    tok = load_tokenizer(d)
    start = time.perf_counter()
    grammar = build_grammar(registry, tok, tokenization=tokenization)
    grammar.meta.update(
        tokenizer_sha256=sha256_file(d / "tokenizer.json"),
        registry_sha256=sha256_file(d / "registry.json"),
    )
    grammar.save(d / GRAMMAR_DIR)
    return {
        "dir": GRAMMAR_DIR,
        "mode": grammar.mode,
        "modes": dict(grammar.modes),
        "fallback_reason": grammar.meta["fallback_reason"],
        "seconds": round(time.perf_counter() - start, 3),
        "tools": grammar.meta["tools_info"],
    }


__all__ = ["Tokenization", "build_grammar", "compile_grammars", "sample_calls", "summary_mode"]
