"""Forced runs for any tokenizer: the ``runs`` tokenization mode.

Why: the ``canonical`` mode spells the whole output by token symbols, which is exact only when
digits are tokens of their own. Tokenizers that merge digits (T5's SentencePiece Unigram,
SentencePiece BPE without ``split_digits``, byte-level BPE as GPT-2 / Llama-3 / Qwen) used to fall
back to ``any``, where every token is the model's choice (no jump-forward at all). This mode keeps
the forced runs for them, the way SGLang's jump-forward and llguidance do:

- at a *free* point (the character grammar allows several next characters, or the text so far
  may end) the model chooses among every token whose bytes keep the text valid, exactly as in
  ``any``;
- when the chosen token ends where the grammar forces a run of text (keys, separators, braces),
  the run is spelled by the tokenizer's own encoding of that text *from the token boundary the
  model left* (a continuation: no ``▁`` / space prefix added) -- a chain of single-choice states;
- the chain stops early at the first boundary from which a token could run *past* the end of the
  forced text (``":`` may merge with the sign that follows into ``":-``): from there the tokens are
  the model's choice again, so it can write the merged token it was trained on.

The result is an ordinary token automaton (the same CSR tables as the other modes), so serving,
Triton and the step-by-step reference are unchanged, and jump-forward and step-by-step decoding
give identical tokens by construction. It admits exactly the character grammar's texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import outlines_core

from vedit.errors import GrammarError

#: ``next`` key of an EOS transition while the graph is built (renumbered later).
_END = ("end",)


@dataclass(frozen=True)
class ByteDFA:
    """The character regex as a deterministic automaton over bytes (reachable states only)."""

    start: int
    trans: dict[int, dict[int, int]]
    final: frozenset[int]

    def forced(self, q: int) -> bool:
        """Exactly one next byte and the text may not end here."""
        return q not in self.final and len(self.trans.get(q, {})) == 1

    def run(self, q: int) -> tuple[bytes, list[int]]:
        """The forced bytes from ``q`` and the states along them (``len(states) == len(bytes) + 1``)."""
        out, states = bytearray(), [q]
        while self.forced(q):
            (b, q), = self.trans[q].items()
            out.append(b)
            states.append(q)
        return bytes(out), states


def byte_dfa(regex: str) -> ByteDFA:
    """Compile ``regex`` over single bytes with outlines-core (its DFA, walked one byte per token)."""
    eos = 256
    vocab = outlines_core.Vocabulary(eos, {bytes([b]): [b] for b in range(256)})
    index = outlines_core.Index(regex, vocab)
    trans = {s: {b: n for b, n in t.items() if b != eos} for s, t in index.get_transitions().items()}
    return ByteDFA(index.get_initial_state(), trans, frozenset(index.get_final_states()))


@dataclass
class TokenTrie:
    """The vocabulary as a byte trie, to list the tokens a DFA state admits without trying them all."""

    children: dict[int, "TokenTrie"] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, table: Sequence[bytes | None], skip: set[int]) -> "TokenTrie":
        root = cls()
        for i, b in enumerate(table):
            if not b or i in skip:
                continue
            node = root
            for byte in b:
                node = node.children.setdefault(byte, cls())
            node.ids.append(i)
        return root

    def admitted(self, dfa: ByteDFA, q: int) -> dict[int, int]:
        """``token -> state after it`` for every token whose bytes the DFA accepts from ``q``."""
        out: dict[int, int] = {}
        stack = [(self, q)]
        while stack:
            node, s = stack.pop()
            moves = dfa.trans.get(s, {})
            for byte, child in node.children.items():
                n = moves.get(byte)
                if n is None:
                    continue
                for i in child.ids:
                    out[i] = n
                stack.append((child, n))
        return out


@dataclass
class RunsStats:
    """How much of the forced text became forced chains (goes into the grammar's info)."""

    chains: int = 0  # forced runs entered by some free token
    chain_tokens: int = 0  # single-choice tokens in those chains
    merge_stops: int = 0  # chains cut short where the next token may merge with free text
    unencodable: int = 0  # runs the tokenizer could not spell exactly (left to the model)


def runs_graph(regex: str, table: Sequence[bytes | None], eos: int, encode: Callable[[str], list[int]],
               trie: TokenTrie | None = None) -> tuple[dict, object, set, RunsStats]:
    """The token automaton of ``regex`` in ``runs`` mode as ``(transitions, start, finals, stats)``.

    ``encode(text)`` is the tokenizer's encoding of ``text`` written right after a token boundary
    (see :func:`vedit.decoding.vocab.continuation_tokenizer`). ``transitions`` maps a node to
    ``{token: node}``; EOS leads to a node of its own that has no transitions.
    """
    dfa = byte_dfa(regex)
    trie = trie or TokenTrie.build(table, {eos})
    stats = RunsStats()
    admitted: dict[int, dict[int, int]] = {}

    def free_moves(q: int) -> dict[int, int]:
        if q not in admitted:
            admitted[q] = trie.admitted(dfa, q)
        return admitted[q]

    plans: dict[int, tuple[list[int], int]] = {}

    def plan(q: int) -> tuple[list[int], int]:
        """The chain's tokens from forced state ``q`` and the DFA state it ends in."""
        if q in plans:
            return plans[q]
        data, states = dfa.run(q)
        tokens: list[int] = []
        try:
            ids = encode(data.decode("utf-8"))
        except UnicodeDecodeError:  # the free token stopped inside a character
            ids = None
        if ids is None or b"".join(table[i] or b"" for i in ids) != data or any(not table[i] for i in ids):
            stats.unencodable += 1
            plans[q] = ([], q)
            return plans[q]
        pos = 0
        for i in ids:
            # a token admitted here that reaches past the run's end may merge with the free text
            if any(len(table[t]) > len(data) - pos for t in free_moves(states[pos])):
                stats.merge_stops += 1
                break
            tokens.append(i)
            pos += len(table[i])
        stats.chains += bool(tokens)
        stats.chain_tokens += len(tokens)
        plans[q] = (tokens, states[pos])
        return plans[q]

    def entry(q: int):
        if dfa.forced(q):
            tokens, _ = plan(q)
            if tokens:
                return ("chain", q, 0)
        return ("free", q)

    start = entry(dfa.start)
    graph: dict = {}
    finals: set = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node in graph:
            continue
        if node[0] == "chain":
            _, q, k = node
            tokens, end = plan(q)
            nxt = ("chain", q, k + 1) if k + 1 < len(tokens) else ("free", end)
            graph[node] = {tokens[k]: nxt}
        else:
            q = node[1]
            graph[node] = {t: entry(r) for t, r in free_moves(q).items()}
            if q in dfa.final:
                graph[node][eos] = _END
                finals.add(node)
        todo.extend(n for n in graph[node].values() if n is not _END)
    graph[_END] = {}
    graph = _prune(graph, start)
    if start not in graph:
        raise GrammarError("the tokenizer cannot write any complete output of this grammar")
    finals &= set(graph)
    return graph, start, finals, stats


def _prune(graph: dict, start) -> dict:
    """Keep the nodes from which EOS can still be reached (a token into a dead end is refused)."""
    back: dict = {n: [] for n in graph}
    for n, moves in graph.items():
        for m in moves.values():
            back[m].append(n)
    live, todo = {_END}, [_END]
    while todo:
        for p in back[todo.pop()]:
            if p not in live:
                live.add(p)
                todo.append(p)
    return {n: {t: m for t, m in moves.items() if m in live} for n, moves in graph.items() if n in live}


__all__ = ["ByteDFA", "RunsStats", "TokenTrie", "byte_dfa", "runs_graph"]
