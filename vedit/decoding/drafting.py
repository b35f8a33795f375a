"""What a row will probably write next, and how much of it is worth feeding.

:func:`~vedit.decoding.loop.decode_drafted` feeds, after each row's decision and forced run, a
*draft* of the row's next free tokens and keeps the part the model confirms. A draft costs the
tokens it feeds whatever happens, and saves a call per confirmed token. Whether that pays depends on
the host: on a small model a call costs the same with 3 or 30 tokens (drafts of 16 free tokens
halved the demo T5's time), on a base-size model on 2 cores a call is compute-bound and its cost
grows with every token fed (drafts of a fixed length were 0.96x-1.05x of jump-forward's time). So the
length is chosen per call from two measurements rather than fixed:

- :class:`CallCost`: a decoder call's seconds as ``a + b * tokens fed``, fitted online from the
  calls this predictor makes (its own host, its own model, its own batch sizes);
- :class:`Drafter`: per grammar state, the choice the model made most often there and how often
  (the confidence that a drafted token is confirmed).

Every token of an answer is fed once whatever happens; what a request's time depends on is the
number of calls (each settles one decision per row, plus the confirmed part of the drafts) and the
tokens fed for nothing (padding to a call's longest row, drafts the model rejects). So each call
takes the draft length that maximises decisions per second of that overhead: (rows + drafted free
tokens expected to be confirmed) / (a + b * tokens expected to be wasted). Drafts are fed where calls
are dear and tokens cheap, or where they fill a short row's padding; none where a wrong guess costs
more than a call. Drafts never change the output, only the calls it takes.
"""

from __future__ import annotations

import threading
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol, Sequence

from vedit.decoding.grammar import DONE

if TYPE_CHECKING:
    from vedit.decoding.grammar import ToolAutomaton


class _Matcher(Protocol):
    automaton: "ToolAutomaton"
    state: int


class CallCost:
    """A decoder call's wall time as ``a + b * tokens``, fitted by least squares with exponential
    forgetting (``decay`` per call: the host's load and the batch sizes drift).

    ``tokens`` is what the call computes: rows times the longest run fed (rows are padded to it).
    :meth:`fit` is ``None`` until ``min_calls`` calls with different token counts were seen: a
    draft length cannot be priced before the cost of a token is told apart from a call's. Shared by
    the threads of one predictor (a lock keeps the sums consistent)."""

    def __init__(self, *, decay: float = 0.98, min_calls: int = 8):
        self.decay = decay
        self.min_calls = min_calls
        self.calls = 0
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self._lock = threading.Lock()

    def add(self, tokens: int, seconds: float) -> None:
        d = self.decay
        with self._lock:
            self.calls += 1
            self._w = self._w * d + 1.0
            self._x = self._x * d + tokens
            self._y = self._y * d + seconds
            self._xx = self._xx * d + tokens * tokens
            self._xy = self._xy * d + tokens * seconds

    def fit(self) -> tuple[float, float] | None:
        """``(a, b)``: seconds per call and per token fed, both >= 0; ``None`` while unknown."""
        with self._lock:
            if self.calls < self.min_calls:
                return None
            mx, my = self._x / self._w, self._y / self._w
            var = self._xx / self._w - mx * mx
            if var < 0.25:  # every call fed the same count: no slope to fit
                return None
            b = max(0.0, (self._xy / self._w - mx * my) / var)
            return max(1e-6, my - b * mx), b  # a call is never free: a rate divides by it


class FixedCost(CallCost):
    """A cost that does not learn (tests, or a host whose costs were measured beforehand)."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.ab = (a, b)

    def add(self, tokens: int, seconds: float) -> None:
        pass

    def fit(self) -> tuple[float, float] | None:
        return self.ab


#: A row's full draft: its tokens, the indices of the free ones, and for each free one the chance
#: (as measured) that it and every free one before it are confirmed.
Draft = tuple[list[int], list[int], list[float]]


class Drafter:
    """Proposes what a row will write next, to verify several model decisions in one decoder call.

    The guess at each grammar state is the choice the model made most often when a row stood in
    that state (the automaton's states tell fields and digits apart, so this learns a tool's usual
    values, such as the neutral 0 of most adjust fields, from the student's own answers; the most
    frequent choice beat the most recent one: 0.33 against 0.38 decoder calls per free token on the
    demo T5's scripted answers); its confidence is how often that choice was made there. Forced runs
    are followed; a draft stops at a state never decided before, at the end of the output, or after
    ``max_free`` free tokens. How much of it is fed is :meth:`plan`'s choice.

    Until :class:`CallCost` can price a token, the length follows the measured acceptance: it
    doubles after a draft accepted whole (up to ``max_free``) and falls to one more than what was
    accepted otherwise, never under ``floor``.

    Shared by the calls of one predictor, and by the workers of a
    :class:`~vedit.client.LocalClient` (each learns from every answer). The counts are
    read-modify-write updates that a thread switch could split (two rows counting the same choice
    at once would count it once, and a state's count could pass its total), so :meth:`learn`,
    :meth:`seed` and :meth:`measured` hold a lock (uncontended it costs ~0.1 us of a decision's
    ~1 ms); :meth:`draft` reads without it and only sees an older or newer guess.
    """

    def __init__(self, max_free: int = 16, start: int = 2, floor: int = 2, cost: CallCost | None = None):
        self.table: dict[tuple[str, int], int] = {}  # (tool, state) -> position of the guessed choice
        self.counts: dict[tuple[str, int], dict[int, int]] = {}  # (tool, state) -> choice -> times made
        self.totals: dict[tuple[str, int], int] = {}  # (tool, state) -> decisions made there
        self.cost = cost if cost is not None else CallCost()
        self.floor = floor
        self.max_free = max_free
        self.limit = start
        self.proposed = 0  # free draft tokens fed
        self.accepted = 0  # of those, the ones the model chose too
        self._lock = threading.Lock()

    def learn(self, m: _Matcher, nth: int) -> None:
        """The model chose the ``nth`` allowed token at ``m``'s current state (before advancing)."""
        key = (m.automaton.tool, m.state)
        with self._lock:
            seen = self.counts.setdefault(key, {})
            seen[nth] = times = seen.get(nth, 0) + 1
            self.totals[key] = self.totals.get(key, 0) + 1
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
        with self._lock:
            return self._seed(tools, automata)

    def _seed(self, tools: dict, automata: dict) -> int:
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
            self.totals[key] = sum(seen.values())
        return len(self.counts)

    def draft(self, m: _Matcher, limit: int | None = None) -> Draft:
        """The draft from ``m``'s state, up to ``limit`` free tokens (default ``max_free``)."""
        a, tool, table, counts, totals = m.automaton, m.automaton.tool, self.table, self.counts, self.totals
        limit = self.max_free if limit is None else limit
        indptr, toks, nxt = a.indptr, a.tokens, a.next
        s, out, free, sure = m.state, [], [], []
        chance = 1.0
        while True:
            lo = int(indptr[s])
            if indptr[s + 1] - lo != 1:
                nth = table.get((tool, s))
                if nth is None or len(free) >= limit:
                    return out, free, sure
                key = (tool, s)
                chance *= counts[key][nth] / (totals[key] + 1)  # one unseen outcome: a single sighting is a coin toss
                free.append(len(out))
                sure.append(chance)
                lo += nth
            out.append(int(toks[lo]))
            s = int(nxt[lo])
            if s == DONE:
                return out, free, sure

    def plan(self, ms: Sequence[_Matcher], pending: Sequence[int]) -> list[tuple[list[int], list[int]]]:
        """Every row's draft for the next call (``pending[i]``: tokens row ``i`` feeds anyway), all cut
        at the same number of free tokens: the one with most decisions per second of overhead under
        :class:`CallCost` (0: a plain jump-forward call; see the module docstring). A drafted token is
        kept if every free one up to it is confirmed (the chances of :meth:`draft`); the rest is fed
        for nothing. Before the cost is known, :attr:`limit` free tokens."""
        fit = self.cost.fit()
        if fit is None:
            return [cut(self.draft(m, self.limit), self.limit) for m in ms]
        full = [self.draft(m) for m in ms]
        a, b = fit
        rows, fed = len(ms), sum(pending)
        ends = [[*free, len(tokens)] for tokens, free, _ in full]  # [n]: tokens fed for n free ones
        gains = [list(accumulate(sure, initial=0.0)) for _, _, sure in full]  # [n]: decisions expected
        kept = [list(accumulate((s * (e[j + 1] - e[j]) for j, s in enumerate(sure)), initial=0.0))
                for (_, _, sure), e in zip(full, ends)]  # [n]: tokens expected to be kept of n free ones
        best, best_rate = 0, rows / (a + b * (rows * max(pending) - fed))
        for n in range(1, max(map(len, kept))):
            at = [min(n, len(k) - 1) for k in kept]
            decided = rows + sum(g[i] for g, i in zip(gains, at))
            width = max(p + e[i] for p, e, i in zip(pending, ends, at))
            waste = rows * width - fed - sum(k[i] for k, i in zip(kept, at))  # padding and rejected drafts
            rate = decided / (a + b * waste)
            if rate > best_rate:
                best, best_rate = n, rate
        return [cut(d, best) for d in full]

    def measured(self, proposed: int, accepted: int) -> None:
        """One call's drafted free tokens and the confirmed part (totals, and the unpriced length)."""
        with self._lock:
            self.proposed += proposed
            self.accepted += accepted
            if proposed:
                self.limit = min(self.max_free, self.limit * 2) if accepted == proposed else max(self.floor, accepted + 1)


def cut(d: Draft, n: int) -> tuple[list[int], list[int]]:
    """``d`` up to (not including) its ``n``-th free token: the tokens and the free ones' indices."""
    tokens, free, _ = d
    if n >= len(free):
        return tokens, free
    return tokens[: free[n]], free[:n]


__all__ = ["CallCost", "Draft", "Drafter", "FixedCost", "cut"]
