"""The tokenization mode is chosen per tool: a free string (``caption``'s text in
examples/tools/video.json) takes its own tool to ``runs`` and leaves the file's other tools
``canonical``, with their jump-forward chains.

References: the same tools compiled in a file without the free string (what they must stay), the
character regex (what is valid), the step-by-step loop (``jump_forward=False``) on the same
automata, and the tokenizer's own encoding of each answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from test_loop import HistoryModel
from test_loop import test_jump_forward_equals_step_by_step as jump_forward_equals_step_by_step
from vedit.decoding.compile import build_grammar, sample_calls
from vedit.decoding.grammar import CompiledGrammar
from vedit.decoding.language import char_regex
from vedit.decoding.loop import decode
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import GrammarError
from vedit.registry.model import load_registry, registry_from_dict
from vedit.workload.scripted import script_bias, script_tokens

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools" / "video.json"


@pytest.fixture(scope="module")
def video():
    return load_registry(EXAMPLE)


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)  # splits digits: canonical where the tool allows it


@pytest.fixture(scope="module")
def grammar(video, tok):
    return build_grammar(video, tok)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.arrays().values(), b.arrays().values()))


def test_a_free_string_costs_only_its_own_tool_the_canonical_mode(grammar, video, tok):
    assert grammar.modes == {"speed": "canonical", "caption": "runs", "vignette": "canonical"}
    assert grammar.mode == "mixed" and list(grammar.meta["fallback_reasons"]) == ["caption"]
    assert "free string" in grammar.meta["fallback_reasons"]["caption"]
    # the other tools' automata are exactly those of a file without the free string
    raw = json.loads(EXAMPLE.read_text())
    without = build_grammar(registry_from_dict([f for f in raw if f["function"]["name"] != "caption"]), tok)
    assert without.modes == {"speed": "canonical", "vignette": "canonical"}
    for name in ("speed", "vignette"):
        assert _same(grammar.automata[name], without.automata[name]), name
    # the free string's tool keeps forced chains around the string (the runs mode's)
    info = grammar.meta["tools_info"]["caption"]
    assert info["mode"] == "runs" and info["chain_tokens"] > 0 and info["unencodable"] == 0


def test_per_tool_modes_are_saved_and_loaded(grammar, tmp_path):
    grammar.save(tmp_path / "g")
    back = CompiledGrammar.load(tmp_path / "g")
    assert back.modes == grammar.modes and back.mode == "mixed"


def test_explicit_modes_apply_to_every_tool(video, tok):
    assert set(build_grammar(video, tok, tokenization="runs").modes.values()) == {"runs"}
    with pytest.raises(GrammarError, match="caption"):
        build_grammar(video, tok, tokenization="canonical")


def test_each_tool_admits_exactly_the_valid_texts(grammar, video, tok):
    for tool in video.tools:
        rx = re.compile(char_regex(tool))
        for call in sample_calls(tool, n=30, seed=5):
            text = call.dumps()
            assert rx.fullmatch(text) and grammar.accepts_text(tool.name, text), text
            ids = [*tok.tokenizer.encode(text, add_special_tokens=False).ids, tok.eos_token_id]
            m = grammar.matcher(tool.name)  # the tokenizer's own encoding is a path of every mode
            assert all(m.advance(i) for i in ids) and m.is_finished(), text
        for bad in ('{"rate":4.01,"reverse":false}', '{"text":"","position":"top"}', '"on"', '{}x'):
            assert not grammar.accepts_text(tool.name, bad), (tool.name, bad)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("group", [False, True])
def test_jump_forward_is_identical_to_step_by_step(grammar, video, seed, group):
    jump_forward_equals_step_by_step(grammar, video, group, seed)


def _decisions(grammar, video, tok) -> tuple[float, dict[str, int]]:
    """Decoder calls per request (the three tools as rows of one call) and the model decisions of
    each tool's row in all, when every row is steered to a sample answer as the tokenizer writes it."""
    answers = {t.name: [c.dumps() for c in sample_calls(t, n=12, seed=11)] for t in video.tools}
    n = min(map(len, answers.values()))
    calls, free = [], dict.fromkeys(video.tool_names, 0)
    for k in range(n):
        scripts = [script_tokens(grammar, t, answers[t][k], tok.tokenizer) for t in video.tool_names]
        model = HistoryModel(grammar.vocab_size, k, False)
        traces = decode(model, [grammar.matcher(t) for t in video.tool_names], [[5]] * len(scripts),
                        bias=lambda r, pos, logits: script_bias(logits, scripts[r], pos))
        assert [tuple(t.tokens) for t in traces] == scripts
        calls.append(model.calls)
        for name, trace in zip(video.tool_names, traces):
            free[name] += trace.free
    return sum(calls) / n, free


def test_canonical_tools_decide_no_more_than_in_one_mode(grammar, video, tok):
    """Per tool, the canonical tools' rows take no more model decisions than in a one-mode (runs)
    grammar, the free string's row the same, and any request no more decoder calls."""
    calls, free = _decisions(grammar, video, tok)
    one_calls, one_free = _decisions(build_grammar(video, tok, tokenization="runs"), video, tok)
    assert free["caption"] == one_free["caption"]
    assert free["speed"] <= one_free["speed"] and free["vignette"] <= one_free["vignette"]
    assert calls <= one_calls
