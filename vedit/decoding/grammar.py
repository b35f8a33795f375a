"""Compiled grammars and per-sequence matchers (the serving side: no compiler needed).

A :class:`ToolAutomaton` is one tool's token automaton as sparse tables (CSR): for state ``s`` the
allowed token ids are ``tokens[indptr[s]:indptr[s+1]]`` (sorted) and ``next`` gives the state each
one leads to. State 0 is the start; EOS is allowed only in final states and leads to ``DONE``.
A :class:`CompiledGrammar` holds one automaton per tool plus the bytes each token writes; it is
saved as ``.npz`` + JSON files and loaded without compiling anything.

A :class:`Matcher` is the per-sequence state (like xgrammar's GrammarMatcher): ``allowed_tokens``,
``advance(token) -> bool``, ``forced_tokens()`` for jump-forward, ``is_finished()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vedit.atomicio import atomic_dir, sha256_file
from vedit.errors import GrammarError

#: ``next`` value of the EOS transition: the sequence is complete.
DONE = -1
FORMAT_VERSION = 1
GRAMMAR_FILE = "grammar.json"
#: Where an export directory keeps its compiled grammar.
GRAMMAR_DIR = "grammar"


@dataclass(frozen=True, eq=False)
class ToolAutomaton:
    """One tool's token automaton (see module docstring for the layout)."""

    tool: str
    indptr: np.ndarray  # int64, n_states + 1
    tokens: np.ndarray  # int32, sorted within each state
    next: np.ndarray  # int32, DONE for EOS
    final: np.ndarray  # bool, n_states

    @property
    def n_states(self) -> int:
        return len(self.final)

    @property
    def n_transitions(self) -> int:
        return len(self.tokens)

    def allowed(self, state: int) -> np.ndarray:
        return self.tokens[self.indptr[state] : self.indptr[state + 1]]

    def step(self, state: int, token: int) -> int | None:
        """The state after ``token``, ``DONE`` after EOS, or ``None`` if ``token`` is refused."""
        lo, hi = self.indptr[state], self.indptr[state + 1]
        k = lo + int(np.searchsorted(self.tokens[lo:hi], token))
        if k < hi and self.tokens[k] == token:
            return int(self.next[k])
        return None

    def forced_run(self, state: int) -> tuple[tuple[int, ...], int]:
        """The tokens forced from ``state`` (each state on the way allows exactly one token) and the
        state they lead to (``DONE`` when the run ends with EOS). Computed once per state and kept:
        jump-forward asks for it after every model decision, and a run is often a dozen tokens."""
        runs = self.__dict__.setdefault("_runs", {})
        run = runs.get(state)
        if run is None:
            tokens, s, indptr = [], state, self.indptr
            while s != DONE and indptr[s + 1] - indptr[s] == 1:
                k = int(indptr[s])
                tokens.append(int(self.tokens[k]))
                s = int(self.next[k])
            run = runs[state] = (tuple(tokens), s)
        return run

    def max_tokens(self) -> int:
        """Length of the longest accepted token sequence, EOS included (the automaton is acyclic).

        Computed once per automaton (a walk of every state, ~4 ms on the demo grammar): the
        PyTorch and optimum paths ask for it on every request."""
        if "_max_tokens" not in self.__dict__:
            self.__dict__["_max_tokens"] = self._longest_path()
        return self.__dict__["_max_tokens"]

    def _longest_path(self) -> int:
        order, seen, on_path = [], set(), set()
        stack: list[tuple[int, bool]] = [(0, False)]
        while stack:
            s, done = stack.pop()
            if done:
                on_path.discard(s)
                order.append(s)
                continue
            if s in seen:
                continue
            seen.add(s)
            on_path.add(s)
            stack.append((s, True))
            for n in self.next[self.indptr[s] : self.indptr[s + 1]]:
                if n == DONE:
                    continue
                if n in on_path:
                    raise GrammarError(f"{self.tool}: the automaton has a cycle; outputs would be unbounded")
                if n not in seen:
                    stack.append((int(n), False))
        longest = {}
        for s in order:  # post-order: successors first
            nxt = self.next[self.indptr[s] : self.indptr[s + 1]]
            longest[s] = 1 + max((0 if n == DONE else longest[int(n)] for n in nxt), default=-1)
        return longest[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "tokens": self.tokens, "next": self.next, "final": self.final}


@dataclass(eq=False)
class CompiledGrammar:
    """All tools' automata for one tokenizer; what serving loads from ``EXPORT_DIR/grammar``."""

    automata: dict[str, ToolAutomaton]
    token_bytes: dict[int, bytes]
    eos_token_id: int
    vocab_size: int
    mode: str  # the tools' common mode, or "mixed"
    meta: dict[str, Any] = field(default_factory=dict)
    #: Each tool's tokenization mode (``canonical`` / ``runs`` / ``any``): chosen per tool at compile time.
    modes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.modes:
            self.modes = {name: self.mode for name in self.automata}

    def max_tokens(self) -> int:
        """The longest output any tool allows, EOS included: the prompt limit leaves room for it."""
        return max(a.max_tokens() for a in self.automata.values())

    def matcher(self, tool: str) -> "Matcher":
        try:
            return Matcher(self.automata[tool], self.eos_token_id)
        except KeyError:
            raise GrammarError(f"no grammar for tool {tool!r}; known: {', '.join(self.automata)}") from None

    def text(self, ids: list[int]) -> str:
        """The exact text of generated tokens (EOS writes nothing)."""
        return b"".join(self.token_bytes.get(i, b"") for i in ids if i != self.eos_token_id).decode(
            "utf-8", errors="replace"
        )

    def accepts_text(self, tool: str, text: str) -> bool:
        """Whether *any* token sequence of the automaton writes exactly ``text`` and may stop there.

        A string-level check (all tokenizations tried), used to test what the grammar admits.
        """
        a = self.automata[tool]
        data = text.encode("utf-8")
        frontier = {(0, 0)}
        seen = set()
        while frontier:
            state, pos = frontier.pop()
            if (state, pos) in seen:
                continue
            seen.add((state, pos))
            if pos == len(data) and a.final[state]:
                return True
            for t, n in zip(a.allowed(state), a.next[a.indptr[state] : a.indptr[state + 1]]):
                b = self.token_bytes.get(int(t))
                if n != DONE and b and data.startswith(b, pos):
                    frontier.add((int(n), pos + len(b)))
        return False

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        """Write ``grammar.json`` + one ``<tool>.npz`` per tool, atomically (temp dir, rename)."""
        with atomic_dir(directory) as tmp:
            for name, a in self.automata.items():
                np.savez(tmp / f"{name}.npz", **a.arrays())
            meta = dict(self.meta)
            meta.update(
                format_version=FORMAT_VERSION,
                mode=self.mode,
                modes=self.modes,
                eos_token_id=self.eos_token_id,
                vocab_size=self.vocab_size,
                tools=list(self.automata),
                token_bytes={str(i): b.hex() for i, b in sorted(self.token_bytes.items())},
            )
            (tmp / GRAMMAR_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "CompiledGrammar":
        """Load a saved grammar (tables only: nothing is compiled)."""
        d = Path(directory)
        try:
            meta = json.loads((d / GRAMMAR_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GrammarError(
                f"{d}: no compiled grammar; run the export again (it compiles the grammar) or "
                "vedit.decoding.compile_grammars(EXPORT_DIR)"
            ) from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise GrammarError(f"{d}: grammar format {meta.get('format_version')} is not {FORMAT_VERSION}; recompile it")
        automata = {}
        for name in meta["tools"]:
            with np.load(d / f"{name}.npz", allow_pickle=False) as z:
                automata[name] = ToolAutomaton(name, z["indptr"], z["tokens"], z["next"], z["final"])
        token_bytes = {int(k): bytes.fromhex(v) for k, v in meta.pop("token_bytes").items()}
        modes = meta.get("modes") or {name: meta["mode"] for name in automata}  # files from before per-tool modes
        return cls(automata, token_bytes, int(meta["eos_token_id"]), int(meta["vocab_size"]), meta["mode"], meta,
                   dict(modes))


class Matcher:
    """Per-sequence grammar state. The hot path returns booleans rather than raising."""

    __slots__ = ("automaton", "eos", "state", "finished")

    def __init__(self, automaton: ToolAutomaton, eos_token_id: int):
        self.automaton = automaton
        self.eos = eos_token_id
        self.state = 0
        self.finished = False

    def allowed_tokens(self) -> np.ndarray:
        """Sorted ids allowed next (empty once finished)."""
        if self.finished:
            return self.automaton.tokens[:0]
        return self.automaton.allowed(self.state)

    def mask(self, vocab_size: int) -> np.ndarray:
        """Boolean mask over the vocabulary: True where a token is allowed."""
        m = np.zeros(vocab_size, dtype=bool)
        m[self.allowed_tokens()] = True
        return m

    def advance_nth(self, k: int) -> int:
        """Consume the ``k``-th of :meth:`allowed_tokens` (the loop's choice, by position: no search)
        and return its id."""
        a = self.automaton
        i = a.indptr[self.state] + k
        token, nxt = int(a.tokens[i]), int(a.next[i])
        if nxt == DONE:
            self.finished = True
        else:
            self.state = nxt
        return token

    def take_forced(self) -> tuple[int, ...]:
        """Consume the tokens the grammar forces from here (ending with EOS when the output is
        complete) and return them: :meth:`forced_tokens` and :meth:`advance` on each, in one step."""
        if self.finished:
            return ()
        tokens, nxt = self.automaton.forced_run(self.state)
        if nxt == DONE:
            self.finished = True
        else:
            self.state = nxt
        return tokens

    def advance(self, token: int) -> bool:
        """Consume ``token``; False (and no change) if the grammar refuses it."""
        if self.finished:
            return False
        nxt = self.automaton.step(self.state, int(token))
        if nxt is None:
            return False
        if nxt == DONE:
            self.finished = True
        else:
            self.state = nxt
        return True

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces from here (each state on the way allows exactly one token).

        Ends with EOS when the output is complete. Does not advance the matcher.
        """
        if self.finished:
            return []
        return list(self.automaton.forced_run(self.state)[0])

    def is_final(self) -> bool:
        """The text so far is a complete output (EOS is allowed)."""
        return self.finished or bool(self.automaton.final[self.state])

    def is_finished(self) -> bool:
        """EOS has been consumed."""
        return self.finished


class FreeMatcher:
    """A matcher that allows every token: the decoding loop then does plain greedy decoding.

    Export validation runs the serving loop with it, so what is checked against HF ``generate``
    is the loop that serves. The row ends at EOS or after ``max_tokens`` tokens, like
    ``generate(max_new_tokens=...)``.
    """

    __slots__ = ("all", "eos", "max_tokens", "count", "finished")

    def __init__(self, vocab_size: int, eos_token_id: int, max_tokens: int):
        self.all = np.arange(vocab_size, dtype=np.int64)
        self.eos = eos_token_id
        self.max_tokens = max_tokens
        self.count = 0
        self.finished = max_tokens <= 0

    def allowed_tokens(self) -> np.ndarray:
        return self.all[:0] if self.finished else self.all

    def advance(self, token: int) -> bool:
        if self.finished:
            return False
        self.count += 1
        self.finished = int(token) == self.eos or self.count >= self.max_tokens
        return True

    def forced_tokens(self) -> list[int]:
        return []

    def take_forced(self) -> tuple[int, ...]:
        return ()

    def advance_nth(self, k: int) -> int:
        token = int(self.all[k])
        self.advance(token)
        return token

    def is_finished(self) -> bool:
        return self.finished


def load_grammar(export_dir: str | Path) -> CompiledGrammar:
    """Load ``EXPORT_DIR/grammar`` and check it was compiled for this tokenizer and registry."""
    d = Path(export_dir)
    g = CompiledGrammar.load(d / GRAMMAR_DIR)
    for key, name in (("tokenizer_sha256", "tokenizer.json"), ("registry_sha256", "registry.json")):
        want = g.meta.get(key)
        if want and (d / name).is_file() and sha256_file(d / name) != want:
            raise GrammarError(
                f"{d / GRAMMAR_DIR}: compiled for another {name}; recompile with "
                "vedit.decoding.compile_grammars(EXPORT_DIR)"
            )
    return g


__all__ = ["CompiledGrammar", "DONE", "FreeMatcher", "GRAMMAR_DIR", "Matcher", "ToolAutomaton", "load_grammar"]
