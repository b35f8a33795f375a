"""The decoding loop against a reference model whose logits depend only on the row's history.

With such a model, jump-forward and step-by-step decoding must agree token for token, whatever
the grouping of rows into calls, and jump-forward must call the model once per free token.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vedit.decoding.compile import build_grammar
from vedit.decoding.loop import decode
from vedit.decoding.vocab import load_tokenizer


class HistoryModel:
    """Logits = a pseudo-random function of (row prompt, tokens so far); feeds may be any length."""

    def __init__(self, vocab: int, seed: int, group_by_length: bool):
        self.vocab, self.seed, self.group = vocab, seed, group_by_length
        self.history: dict[int, list[int]] = {}
        self.calls = 0

    def schedule(self, active):
        if not self.group:
            return list(active)
        shortest = min(len(self.history.get(r, [])) for r in active)
        return [r for r in active if len(self.history.get(r, [])) == shortest]

    def feed(self, rows, tokens, want=None):
        """``want``: logits at those positions of each run (a draft to verify), until :meth:`accept`."""
        from vedit.decoding.loop import positions

        self.calls += 1
        at = positions(want) if want is not None else np.array([[len(t) - 1] for t in tokens])
        out = np.empty((len(rows), at.shape[1], self.vocab), dtype=np.float32)
        self.fed = []
        for k, (r, t) in enumerate(zip(rows, tokens)):
            h = self.history.setdefault(r, [])
            self.fed.append((h, len(h)))
            h.extend(t)
            for q, j in enumerate(at[k]):
                seen = h[: len(h) - len(t) + j + 1]
                out[k, q] = self.logits(r, seen)
        return out if want is not None else out[:, 0]

    def logits(self, row, seen):
        return np.random.default_rng([self.seed, row, len(seen), *seen[-3:]]).standard_normal(self.vocab)

    def accept(self, kept):
        for (h, before), n in zip(self.fed, kept):
            del h[before + n :]

    def release(self, row):
        pass


@pytest.fixture(scope="module")
def grammar(tokenizer_dir, registry):
    return build_grammar(registry, load_tokenizer(tokenizer_dir))


@pytest.mark.parametrize("group", [False, True], ids=["one-call-per-round", "grouped-by-length"])
@pytest.mark.parametrize("seed", range(4))
def test_jump_forward_equals_step_by_step(grammar, registry, group, seed):
    tools = list(registry.tool_names) * 3
    results = {}
    for jf in (True, False):
        model = HistoryModel(grammar.vocab_size, seed, group)
        traces = decode(model, [grammar.matcher(t) for t in tools], [[7, r] for r in range(len(tools))],
                        jump_forward=jf)
        results[jf] = (traces, model.calls)
    (jf_traces, jf_calls), (step_traces, step_calls) = results[True], results[False]
    assert [t.tokens for t in jf_traces] == [t.tokens for t in step_traces]
    for a in jf_traces:
        assert len(a.calls) == a.free  # one model call per free token
        assert a.tokens[-1] == grammar.eos_token_id
    assert jf_calls < step_calls
    assert step_calls == max(len(t.tokens) for t in step_traces) or group


def _reference_greedy(model: HistoryModel, matcher, prefix: list[int], row: int) -> list[int]:
    """Constrained greedy decoding of one row written out by hand: one model call per token, the
    highest allowed logit, ties to the lowest id (plain Python, no vedit loop code)."""
    out, feed = [], list(prefix)
    while not matcher.is_finished():
        logits = model.feed([row], [feed])[0]
        allowed = [int(t) for t in matcher.allowed_tokens()]
        tok = min(allowed, key=lambda t: (-float(logits[t]), t))
        assert matcher.advance(tok)
        out.append(tok)
        feed = [tok]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_decode_equals_a_hand_written_greedy_loop(grammar, registry, seed):
    tools = list(registry.tool_names) * 2
    traces = decode(HistoryModel(grammar.vocab_size, seed, False), [grammar.matcher(t) for t in tools],
                    [[7, r] for r in range(len(tools))])
    ref = HistoryModel(grammar.vocab_size, seed, False)
    want = [_reference_greedy(ref, grammar.matcher(t), [7, r], r) for r, t in enumerate(tools)]
    assert [t.tokens for t in traces] == want


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_pick_rows_is_the_first_maximum_of_each_row(data):
    """Integer-valued logits make ties common: the first (lowest id) maximum must win."""
    from vedit.decoding.loop import pick_rows

    vocab = data.draw(st.integers(1, 40))
    rows = data.draw(st.integers(1, 10))  # both the per-row and the segmented form (FEW_ROWS)
    logits = np.array(data.draw(st.lists(st.lists(st.integers(-3, 3), min_size=vocab, max_size=vocab),
                                         min_size=rows, max_size=rows)), dtype=np.float32)
    allowed = [np.array(sorted(data.draw(st.sets(st.integers(0, vocab - 1), min_size=1))), dtype=np.int32)
               for _ in range(rows)]
    got = pick_rows(logits, allowed)
    for k, a in enumerate(allowed):
        values = [float(logits[k, t]) for t in a]
        assert got[k] == values.index(max(values))


@given(runs=st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=6), min_size=1, max_size=9),
       left=st.booleans())
@settings(max_examples=100, deadline=None)
def test_pad_runs_places_each_run_and_marks_it(runs, left):
    from vedit.decoding.loop import pad_runs

    ids, real = pad_runs(runs, -1, left=left)
    width = max(map(len, runs))
    assert ids.shape == real.shape == (len(runs), width) and ids.dtype == np.int64
    for row, mask, run in zip(ids.tolist(), real.tolist(), runs):
        pad = [-1] * (width - len(run))
        assert row == (pad + run if left else run + pad)
        assert mask == [x != -1 for x in row]


class SkewedModel(HistoryModel):
    """A HistoryModel whose logits favour a few tokens, as a trained student favours a tool's usual
    values: drafts learnt from earlier rows are then often right, and sometimes wrong."""

    def logits(self, row, seen):
        out = super().logits(row, seen)
        out[: self.vocab // 3] += 2.5 * np.random.default_rng([self.seed, len(seen)]).standard_normal(self.vocab // 3)
        return out


COSTS = {"learnt": None, "tokens free": (1.0, 0.0), "tokens dear": (1e-3, 1.0), "even": (0.05, 0.01)}


@given(seed=st.integers(0, 2**16), copies=st.integers(1, 4), group=st.booleans(), rounds=st.integers(1, 3),
       cost=st.sampled_from(sorted(COSTS)))
@settings(max_examples=40, deadline=None)
def test_drafts_change_calls_never_tokens(grammar, registry, seed, copies, group, rounds, cost):
    """decode_drafted gives step-by-step's tokens exactly, whatever the drafts (learnt over ``rounds``
    batches, right and wrong, as long as the call's price makes them), and never more calls than
    jump-forward."""
    from vedit.decoding.drafting import Drafter, FixedCost
    from vedit.decoding.loop import decode_drafted

    tools = list(registry.tool_names) * copies
    prefixes = [[7, r % 5] for r in range(len(tools))]
    drafter = Drafter(cost=FixedCost(*COSTS[cost]) if COSTS[cost] else None)
    for _ in range(rounds):
        step = SkewedModel(grammar.vocab_size, seed, group)
        want = decode(step, [grammar.matcher(t) for t in tools], prefixes, jump_forward=False)
        jf = SkewedModel(grammar.vocab_size, seed, group)
        decode(jf, [grammar.matcher(t) for t in tools], prefixes)
        drafted = SkewedModel(grammar.vocab_size, seed, group)
        got = decode_drafted(drafted, [grammar.matcher(t) for t in tools], prefixes, drafter)
        assert [t.tokens for t in got] == [t.tokens for t in want]
        assert [(t.free, t.forced) for t in got] == [(t.free, t.forced) for t in want]
        assert drafted.calls <= jf.calls
    if rounds > 1 and cost == "tokens free":
        assert drafter.accepted > 0  # later rounds verified several decisions per call


def test_drafts_save_calls(grammar, registry):
    """Learnt on one batch, the drafts cut the calls of the same batch to a few (where a call costs
    the same whatever it is fed)."""
    from vedit.decoding.drafting import Drafter, FixedCost
    from vedit.decoding.loop import decode_drafted

    tools = list(registry.tool_names)
    prefixes = [[7, r] for r in range(len(tools))]
    drafter = Drafter(cost=FixedCost(1.0, 0.0))
    first = SkewedModel(grammar.vocab_size, 1, False)
    traces = decode_drafted(first, [grammar.matcher(t) for t in tools], prefixes, drafter)
    again = SkewedModel(grammar.vocab_size, 1, False)
    decode_drafted(again, [grammar.matcher(t) for t in tools], prefixes, drafter)
    free = max(t.free for t in traces)
    assert first.calls == free  # nothing learnt yet: one call per free token, as jump-forward
    assert again.calls <= max(1, free // 2)


def test_no_drafts_where_a_token_costs_more_than_a_call_saves(grammar, registry):
    """Priced at 1 s per token fed against 1 ms per call, no draft can pay for a row alone (in a
    batch, a short row's draft may still fill the padding to the longest row for free): the drafted
    loop makes jump-forward's calls and feeds no draft, however well it learnt the answers."""
    from vedit.decoding.drafting import Drafter, FixedCost
    from vedit.decoding.loop import decode_drafted

    for tool in registry.tool_names:
        drafter = Drafter(cost=FixedCost(1.0, 0.0))
        decode_drafted(SkewedModel(grammar.vocab_size, 1, False), [grammar.matcher(tool)], [[7]], drafter)
        drafter.cost, drafter.proposed = FixedCost(1e-3, 1.0), 0
        jf = SkewedModel(grammar.vocab_size, 1, False)
        decode(jf, [grammar.matcher(tool)], [[7]])
        again = SkewedModel(grammar.vocab_size, 1, False)
        decode_drafted(again, [grammar.matcher(tool)], [[7]], drafter)
        assert drafter.proposed == 0
        assert again.calls == jf.calls
        cheap = SkewedModel(grammar.vocab_size, 1, False)  # the same table, tokens free: drafts pay
        drafter.cost = FixedCost(1.0, 0.0)
        decode_drafted(cheap, [grammar.matcher(tool)], [[7]], drafter)
        assert drafter.proposed > 0 and cheap.calls < jf.calls


def test_the_call_cost_is_fitted_from_the_calls():
    """a + b * tokens recovered from exact samples (hand-computed: 2 ms + 0.5 ms per token), unknown
    before enough calls or when every call fed the same count, and never negative."""
    from vedit.decoding.drafting import CallCost

    cost = CallCost(decay=1.0, min_calls=4)
    for tokens in (3, 9, 30):
        cost.add(tokens, 0.002 + 0.0005 * tokens)
    assert cost.fit() is None  # 3 calls < min_calls
    cost.add(12, 0.002 + 0.0005 * 12)
    a, b = cost.fit()
    assert a == pytest.approx(0.002) and b == pytest.approx(0.0005)

    flat = CallCost(min_calls=2)
    for _ in range(5):
        flat.add(3, 0.01)
    assert flat.fit() is None  # no spread in tokens: a token's price cannot be told apart

    falling = CallCost(decay=1.0, min_calls=2)  # noise that makes longer calls look cheaper
    falling.add(3, 0.010)
    falling.add(30, 0.008)
    a, b = falling.fit()
    assert b == 0.0 and a == pytest.approx(0.009)
    for _ in range(3):
        falling.add(60, 0.0)  # longer calls measured as free: the call price stays above zero
    assert falling.fit()[0] > 0
