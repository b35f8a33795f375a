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

import time
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Protocol, Sequence

import numpy as np

from vedit.decoding.drafting import Drafter

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
        started = time.perf_counter()
        rows = backend.schedule(active)
        drafts = drafter.plan([matchers[r] for r in rows], [len(pending[r]) for r in rows])
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
        drafter.cost.add(len(rows) * max(map(len, fed)), time.perf_counter() - started)
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


__all__ = ["Backend", "Bias", "RowTrace", "decode", "decode_drafted", "pad_runs", "pick_rows", "positions"]
