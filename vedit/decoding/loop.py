"""Constrained greedy decoding with jump-forward, independent of the model family.

Every row (one tool prompt) has a :class:`~vedit.decoding.grammar.Matcher`. At a free step the
model's logits are restricted to the grammar's allowed tokens and the best one is taken (ties go
to the lowest id, as ``argmax`` over masked logits does). With ``jump_forward=True``, after each
token the tokens the grammar forces are appended at once and fed to the decoder in the same call
as that token, so each decoder call yields one model decision. With ``jump_forward=False`` every
token (forced or not) costs a decoder call: the plain step-by-step reference. Both produce the
same tokens, because feeding a run of tokens in one call computes the same cache and logits as
feeding them one by one.

A *backend* owns the model and its KV cache (``seq2seq``, ``decoder_only``) and decides which
rows can share a call (:meth:`Backend.schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Protocol, Sequence

import numpy as np

from vedit.decoding.grammar import DONE

#: ``bias(row, position, logits) -> logits``: a per-row adjustment of the model's logits at a free
#: step (``position`` = tokens the row has generated so far), applied before the grammar's choice.
#: The latency bench steers every path to the same scripted answers with it.
Bias = Callable[[int, int, np.ndarray], np.ndarray]


class Matcher(Protocol):
    """Per-row grammar state (:class:`~vedit.decoding.grammar.Matcher`, or ``FreeMatcher`` for plain greedy)."""

    def allowed_tokens(self) -> np.ndarray: ...
    def advance_nth(self, k: int) -> int: ...
    def take_forced(self) -> tuple[int, ...]: ...
    def is_finished(self) -> bool: ...


class Backend(Protocol):
    def schedule(self, active: list[int]) -> list[int]:
        """The rows to feed in the next decoder call (a non-empty subset of ``active``)."""

    def feed(self, rows: list[int], tokens: list[list[int]], want: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """Append ``tokens[i]`` to row ``rows[i]``; return logits (rows, vocab) after each row's last token.

        With ``want`` (drafts, :func:`decode_drafted`): logits (rows, k, vocab) at positions
        ``want[i]`` of ``tokens[i]`` (short rows padded, :func:`positions`), and the backend waits for
        :meth:`accept` before the next call."""

    def accept(self, kept: Sequence[int]) -> None:
        """After ``feed(..., want=)``: row ``rows[i]`` keeps the first ``kept[i]`` tokens it was fed."""

    def release(self, row: int) -> None:
        """The row is finished; its cache can go."""


@dataclass
class RowTrace:
    """What one row produced and what it cost."""

    tokens: list[int] = field(default_factory=list)  # generated tokens, EOS included
    free: int = 0  # tokens picked by the model among several allowed
    forced: int = 0  # tokens that were the only allowed one
    calls: list[int] = field(default_factory=list)  # ids of the decoder calls the row took part in


#: Up to this many rows a Python round per row (two numpy calls each) is cheaper than the segmented
#: form's dozen calls (measured: ~7 us per row against ~30 us fixed, 2 cores).
FEW_ROWS = 4


def pad_runs(tokens: Sequence[Sequence[int]], pad_id: int, *, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Runs of different lengths as one (rows, longest) int64 array, padded with ``pad_id`` after
    them (``left``: before them), and the boolean mask of the real positions (every backend builds
    its call's input ids this way). Up to :data:`FEW_ROWS` rows, two numpy calls on padded Python
    lists; beyond, a fixed number of numpy calls whatever the rows (numpy's per-call cost, a few us,
    is what a decoder call's Python time is made of on small models)."""
    if len(tokens) <= FEW_ROWS:
        width = max(map(len, tokens))
        if left:
            ids = [[*[pad_id] * (width - len(t)), *t] for t in tokens]
            real = [[False] * (width - len(t)) + [True] * len(t) for t in tokens]
        else:
            ids = [[*t, *[pad_id] * (width - len(t))] for t in tokens]
            real = [[True] * len(t) + [False] * (width - len(t)) for t in tokens]
        return np.array(ids, dtype=np.int64), np.array(real, dtype=bool)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    width = int(lengths.max())
    if left:
        real = np.arange(width) >= width - lengths[:, None]
    else:
        real = np.arange(width) < lengths[:, None]
    ids = np.full(real.shape, pad_id, dtype=np.int64)
    ids[real] = np.fromiter(chain.from_iterable(tokens), dtype=np.int64, count=int(lengths.sum()))
    return ids, real


def pick_rows(logits: np.ndarray, allowed: Sequence[np.ndarray]) -> list[int]:
    """The greedy choice of every row at once: for row ``k`` of ``logits`` (rows, vocab), the position
    in ``allowed[k]`` (sorted ids) of the first maximum of ``logits[k, allowed[k]]`` (ties go to the
    lowest id, like argmax over masked logits). Past :data:`FEW_ROWS` rows, a fixed number of numpy
    calls whatever the rows (one gather of every row's allowed ids, a segmented max, the first hit
    per segment) instead of a Python round per row; NaN logits (never from a valid export) then take
    the per-row argmax."""
    if len(allowed) <= FEW_ROWS:
        return [int(np.argmax(logits[k, a])) for k, a in enumerate(allowed)]
    counts = np.fromiter(map(len, allowed), dtype=np.int64, count=len(allowed))
    ends = np.cumsum(counts)
    starts = ends - counts
    values = logits[np.repeat(np.arange(len(allowed)), counts), np.concatenate(allowed)]
    best = np.maximum.reduceat(values, starts)
    if np.isnan(best).any():
        return [int(np.argmax(logits[k, a])) for k, a in enumerate(allowed)]
    hits = np.flatnonzero(values == np.repeat(best, counts))
    return (hits[np.searchsorted(hits, starts)] - starts).tolist()


def decode(backend: Backend, matchers: Sequence[Matcher], prefixes: Sequence[list[int]], *,
           jump_forward: bool = True, bias: Bias | None = None) -> list[RowTrace]:
    """Decode every row to completion; ``prefixes[i]`` is what row ``i`` feeds before its output.

    ``bias`` (see :data:`Bias`) adjusts a row's logits at its free steps (forced tokens need none).

    The grammar is acyclic, so every row ends (with EOS) after at most its longest path. Per call,
    the choice of every row is made at once (:func:`pick_rows`) and each matcher advances by the
    position of its choice; a forced run is one precomputed step (``take_forced``).
    """
    traces, pending, active = _start(backend, matchers, prefixes, jump_forward)
    call_id = 0
    while active:
        rows = backend.schedule(active)
        logits = backend.feed(rows, [pending[r] for r in rows])
        allowed = [matchers[r].allowed_tokens() for r in rows]
        if bias is not None:
            logits = np.array(logits, dtype=np.float32)
            for k, r in enumerate(rows):
                if len(allowed[k]) > 1:
                    logits[k] = bias(r, len(traces[r].tokens), logits[k])
        for k, (r, nth) in enumerate(zip(rows, pick_rows(logits, allowed))):
            m, tr = matchers[r], traces[r]
            tr.calls.append(call_id)
            if len(allowed[k]) > 1:
                tr.free += 1
            else:
                tr.forced += 1
            tok = m.advance_nth(nth)
            tr.tokens.append(tok)
            pending[r] = [tok]
            if jump_forward and not m.is_finished():
                _take_forced(m, tr, pending[r])
        call_id += 1
        active = _still_active(backend, matchers, active)
    return traces


def _start(backend: Backend, matchers: Sequence[Matcher], prefixes: Sequence[list[int]],
           jump_forward: bool) -> tuple[list[RowTrace], list[list[int]], list[int]]:
    """Every row's trace, what it feeds first (its prefix, and with jump-forward the forced start),
    and the rows still to decode (a row the grammar completes alone is released at once)."""
    traces = [RowTrace() for _ in matchers]
    pending = [list(p) for p in prefixes]
    active = []
    for i, m in enumerate(matchers):
        if jump_forward:
            _take_forced(m, traces[i], pending[i])
        if m.is_finished():
            backend.release(i)
        else:
            active.append(i)
    return traces, pending, active


def _still_active(backend: Backend, matchers: Sequence[Matcher], active: list[int]) -> list[int]:
    """The rows of ``active`` not finished yet; the finished ones are released."""
    still = []
    for r in active:
        if matchers[r].is_finished():
            backend.release(r)
        else:
            still.append(r)
    return still


def _take_forced(m: Matcher, tr: RowTrace, pending: list[int]) -> None:
    """Advance through the forced chain; its tokens (but not a final EOS) are fed with the next call."""
    run = m.take_forced()
    if run:
        tr.tokens.extend(run)
        tr.forced += len(run)
        pending.extend(run[:-1] if m.is_finished() else run)


def positions(want: Sequence[Sequence[int]]) -> np.ndarray:
    """Per-row lists of fed positions as one (rows, longest) int64 array, each short row repeating
    its last position (its extra logits are never read)."""
    k = max(map(len, want))
    return np.array([[*w, *[w[-1]] * (k - len(w))] for w in want], dtype=np.int64)


class Drafter:
    """Proposes what a row will write next, to verify several model decisions in one decoder call.

    The guess at each grammar state is the choice the model made most often when a row stood in
    that state (the automaton's states tell fields and digits apart, so this learns a tool's usual
    values, such as the neutral 0 of most adjust fields, from the student's own answers; the most
    frequent choice beat the most recent one: 0.33 against 0.38 decoder calls per free token on the
    demo T5's scripted answers); forced runs are followed, and a draft stops at a state never decided
    before, at the end of the output, or after ``limit`` free tokens. ``limit`` follows the measured
    acceptance: it doubles after a draft accepted whole (up to ``max_free``) and falls to one more
    than what was accepted otherwise, never under ``floor``. A short draft costs calls, a long one
    fed tokens that a wrong guess wastes: on the demo T5 (tokens nearly free) floor 4 / at most 16
    took 0.28 calls per free token against 0.33 for floor 1, but on the flan-t5-base shape (2 cores,
    compute-bound calls) it was 1.05x jump-forward's p50 (slower), floor 2 / at most 8 0.96x and
    floor 1 / at most 4 0.95x, with 0.37, 0.39 and 0.40 calls per free token: hence the defaults.
    Drafts never change the output (:func:`decode` keeps only what the model itself would choose);
    they change how many calls it takes. Shared by the calls of one predictor; the table only grows
    by whole assignments, so rows decoded in other threads at once only see an older or newer guess.
    """

    def __init__(self, max_free: int = 8, start: int = 2, floor: int = 2):
        self.table: dict[tuple[str, int], int] = {}  # (tool, state) -> position of the guessed choice
        self.counts: dict[tuple[str, int], dict[int, int]] = {}  # (tool, state) -> choice -> times made
        self.floor = floor
        self.max_free = max_free
        self.limit = start
        self.proposed = 0  # free draft tokens fed
        self.accepted = 0  # of those, the ones the model chose too

    def learn(self, m: Matcher, nth: int) -> None:
        """The model chose the ``nth`` allowed token at ``m``'s current state (before advancing)."""
        key = (m.automaton.tool, m.state)
        seen = self.counts.setdefault(key, {})
        seen[nth] = times = seen.get(nth, 0) + 1
        best = self.table.get(key)
        if best is None or (best != nth and times > seen[best]):
            self.table[key] = nth

    def to_json(self) -> dict:
        """The choices counted so far, ``{tool: {state: {position: times}}}`` (JSON keys are strings)."""
        tools: dict[str, dict[str, dict[str, int]]] = {}
        for (tool, state), seen in sorted(self.counts.items()):
            tools.setdefault(tool, {})[str(state)] = {str(k): v for k, v in sorted(seen.items())}
        return tools

    def seed(self, tools: dict, automata: dict) -> int:
        """Start from counts written by :meth:`to_json` (an export's calibration answers) for these
        ``automata`` (tool -> :class:`~vedit.decoding.grammar.ToolAutomaton`); return the states
        seeded. Counts that name no state or choice of the automata are an error (ValueError)."""
        for tool, states in tools.items():
            a = automata.get(tool)
            if a is None:
                raise ValueError(f"tool {tool!r} is not in the grammar")
            for state, seen in states.items():
                st = int(state)
                if not 0 <= st < a.n_states:
                    raise ValueError(f"tool {tool!r}: state {st} is not in the grammar ({a.n_states} states)")
                width = int(a.indptr[st + 1] - a.indptr[st])
                for nth, times in seen.items():
                    k, t = int(nth), int(times)
                    if not 0 <= k < width or t < 1:
                        raise ValueError(f"tool {tool!r}, state {st}: choice {k} x{t} is not one of its {width}")
                    self.counts.setdefault((tool, st), {})[k] = t
        for key, seen in self.counts.items():
            self.table[key] = max(seen, key=lambda k: (seen[k], -k))
        return len(self.counts)

    def draft(self, m: Matcher) -> tuple[list[int], list[int]]:
        """The draft from ``m``'s state: its tokens, and the indices of the free ones among them."""
        a, tool, table = m.automaton, m.automaton.tool, self.table
        indptr, toks, nxt = a.indptr, a.tokens, a.next
        s, out, free = m.state, [], []
        while True:
            lo = int(indptr[s])
            if indptr[s + 1] - lo != 1:
                nth = table.get((tool, s))
                if nth is None or len(free) >= self.limit:
                    return out, free
                free.append(len(out))
                lo += nth
            out.append(int(toks[lo]))
            s = int(nxt[lo])
            if s == DONE:
                return out, free

    def measured(self, proposed: int, accepted: int) -> None:
        self.proposed += proposed
        self.accepted += accepted
        if proposed:
            self.limit = min(self.max_free, self.limit * 2) if accepted == proposed else max(self.floor, accepted + 1)


def decode_drafted(backend: Backend, matchers: Sequence[Matcher], prefixes: Sequence[list[int]], drafter: Drafter, *,
                   bias: Bias | None = None) -> list[RowTrace]:
    """:func:`decode` with jump-forward and drafts: each call feeds, after a row's decision and its
    forced run, the row's draft (:class:`Drafter`), and gets the logits at every position a drafted
    free token follows. The draft is walked with the row's matcher: where the model's constrained
    choice (the same :func:`pick_rows` rule, the same ``bias``) equals the drafted token it is kept,
    and the first difference is the row's decision for the next call; the rest of the draft is cut
    from the cache (``backend.accept``). So every token is the one step-by-step constrained greedy
    decoding gives, and a call yields one decision plus the accepted draft. Needs a backend whose
    ``feed`` takes ``want`` and a grammar matcher (an automaton); rows without a draft feed as before.
    """
    traces, pending, active = _start(backend, matchers, prefixes, True)
    call_id = 0
    while active:
        rows = backend.schedule(active)
        drafts = [drafter.draft(matchers[r]) for r in rows]
        if not any(d[1] for d in drafts):
            logits = backend.feed(rows, [pending[r] for r in rows])[:, None]
            drafts = [([], [])] * len(rows)
            fed = [pending[r] for r in rows]
        else:
            fed, want = [], []
            for r, (tokens, free) in zip(rows, drafts):
                p = pending[r]
                run = p + (tokens[:-1] if tokens and tokens[-1] == matchers[r].eos else tokens)
                fed.append(run)
                want.append([len(p) + j - 1 for j in free] + [len(run) - 1])
            logits = backend.feed(rows, fed, want)
        kept, proposed, accepted = [], 0, 0
        for k, (r, (tokens, free)) in enumerate(zip(rows, drafts)):
            m, tr = matchers[r], traces[r]
            tr.calls.append(call_id)
            free_at, q, took, decision = set(free), 0, 0, None
            for j, tok in enumerate(tokens):
                if j not in free_at:  # forced: the grammar allows nothing else
                    m.advance_nth(0)
                    tr.tokens.append(tok)
                    tr.forced += 1
                    took += 1
                    continue
                got = _choose(m, tr, logits[k, q], bias, r, drafter)
                q += 1
                proposed += 1
                if got != tok:
                    decision = got
                    break
                accepted += 1
                took += 1
            if decision is None and not m.is_finished():
                allowed = m.allowed_tokens()
                if len(allowed) > 1:
                    decision = _choose(m, tr, logits[k, q], bias, r, drafter)
                else:
                    decision = m.advance_nth(0)
                    tr.tokens.append(decision)
                    tr.forced += 1
            kept.append(min(len(pending[r]) + took, len(fed[k])))
            pending[r] = [] if decision is None else [decision]
            if not m.is_finished():
                _take_forced(m, tr, pending[r])
        if any(d[1] for d in drafts):
            backend.accept(kept)
        drafter.measured(proposed, accepted)
        call_id += 1
        active = _still_active(backend, matchers, active)
    return traces


def _choose(m: Matcher, tr: RowTrace, logits: np.ndarray, bias: Bias | None, row: int, drafter: Drafter) -> int:
    """The row's constrained greedy choice among several allowed tokens (as :func:`decode` makes it)."""
    allowed = m.allowed_tokens()
    if bias is not None:
        logits = bias(row, len(tr.tokens), np.array(logits, dtype=np.float32))
    nth = int(np.argmax(logits[allowed]))
    drafter.learn(m, nth)
    tok = m.advance_nth(nth)
    tr.tokens.append(tok)
    tr.free += 1
    return tok


__all__ = ["Backend", "Bias", "Drafter", "RowTrace", "decode", "decode_drafted", "pad_runs", "pick_rows", "positions"]
