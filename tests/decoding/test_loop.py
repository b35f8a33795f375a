"""The decoding loop against a reference model whose logits depend only on the row's history.

With such a model, jump-forward and step-by-step decoding must agree token for token, whatever
the grouping of rows into calls, and jump-forward must call the model once per free token.
"""

from __future__ import annotations

import numpy as np
import pytest

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

    def feed(self, rows, tokens):
        self.calls += 1
        out = np.empty((len(rows), self.vocab), dtype=np.float32)
        for k, (r, t) in enumerate(zip(rows, tokens)):
            h = self.history.setdefault(r, [])
            h.extend(t)
            rng = np.random.default_rng([self.seed, r, len(h), *h[-3:]])
            out[k] = rng.standard_normal(self.vocab)
        return out

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
