"""Compiled automata over the tiny tokenizer: exact language, EOS, jump-forward chains, persistence."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import numpy as np
import outlines_core
import pytest

from decoding_cases import accepted, refused
from vedit.decoding.compile import build_grammar, compile_grammars
from vedit.decoding.grammar import DONE, CompiledGrammar, load_grammar
from vedit.decoding.language import char_regex
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import GrammarError
from vedit.registry import default_registry
from vedit.registry.schema import validator

TOOL_NAMES = [t.name for t in default_registry().tools]


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module", params=["canonical", "runs", "any"])
def grammar(request, registry, tok) -> CompiledGrammar:
    g = build_grammar(registry, tok, tokenization=request.param)
    assert g.mode == request.param
    return g


def _feed(grammar: CompiledGrammar, tool: str, ids: list[int]) -> bool:
    """Token by token through a matcher; True if every token is accepted and EOS may follow."""
    m = grammar.matcher(tool)
    return all(m.advance(i) for i in ids) and m.is_final()


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_accepts_the_tokenizers_encoding_of_valid_outputs(grammar, tok, registry, tool):
    for text in accepted(registry.tool(tool)):
        ids = tok.tokenizer.encode(text.lstrip(" "), add_special_tokens=False).ids
        m = grammar.matcher(tool)
        for i in ids:
            assert tok.eos_token_id not in m.allowed_tokens()  # EOS only in final states
            assert m.advance(i), (text, i)
        assert m.is_final() and m.allowed_tokens().tolist() == [tok.eos_token_id]
        assert m.advance(tok.eos_token_id) and m.is_finished()
        assert not m.advance(tok.eos_token_id)
        assert grammar.accepts_text(tool, text)


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_refuses_invalid_outputs_token_by_token(grammar, tok, registry, tool):
    for why, text in refused(registry.tool(tool)):
        ids = tok.tokenizer.encode(text, add_special_tokens=False).ids if text else []
        assert not _feed(grammar, tool, ids), why
        assert not grammar.accepts_text(tool, text), why  # under any tokenization


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_random_walks_write_only_valid_outputs(grammar, registry, tool):
    """Whatever a model picks, the text matches the character regex and the JSON Schema."""
    t = registry.tool(tool)
    rx = re.compile(char_regex(t))
    rng = random.Random(7)
    for _ in range(30):
        m, ids = grammar.matcher(tool), []
        while not m.is_finished():
            allowed = m.allowed_tokens()
            assert len(allowed) > 0
            tok_id = int(allowed[rng.randrange(len(allowed))])
            assert m.advance(tok_id)
            ids.append(tok_id)
        text = grammar.text(ids)
        assert rx.fullmatch(text), text
        validator(t).validate(json.loads(text))
        assert len(ids) <= grammar.automata[tool].max_tokens()


def test_forced_tokens_follow_single_choices(grammar, tok, registry):
    """forced_tokens() is the chain of single-choice states; it does not move the matcher."""
    for tool in TOOL_NAMES:
        text = accepted(registry.tool(tool))[-1]
        ids = tok.tokenizer.encode(text.lstrip(" "), add_special_tokens=False).ids
        m = grammar.matcher(tool)
        for i in ids:
            chain = m.forced_tokens()
            state = m.state
            probe = grammar.matcher(tool)
            probe.state = state
            for c in chain:
                assert probe.allowed_tokens().tolist() == [c]
                assert probe.advance(c)
            assert probe.is_finished() or len(probe.allowed_tokens()) > 1
            assert m.state == state
            # take_forced() consumes the same chain in one step, ending where the probe ended
            taker = grammar.matcher(tool)
            taker.state = state
            assert list(taker.take_forced()) == chain
            assert taker.is_finished() == probe.is_finished()
            assert probe.is_finished() or taker.state == probe.state  # a finished matcher has no state
            # advance_nth(k) is advance() of the k-th allowed token
            allowed = m.allowed_tokens().tolist()
            nth = grammar.matcher(tool)
            nth.state = state
            assert nth.advance_nth(allowed.index(i)) == i
            assert m.advance(i)
            assert nth.is_finished() == m.is_finished() and (m.is_finished() or nth.state == m.state)
        assert m.forced_tokens() == [tok.eos_token_id]
        assert m.take_forced() == (tok.eos_token_id,) and m.is_finished() and m.take_forced() == ()


def test_canonical_mode_forces_the_fixed_text(registry, tok):
    """In canonical mode, keys and separators are forced: the model decides far fewer tokens."""
    g = {mode: build_grammar(registry, tok, tokenization=mode) for mode in ("canonical", "any")}
    text = accepted(registry.tool(TOOL_NAMES[0]))[3]
    ids = tok.tokenizer.encode(text, add_special_tokens=False).ids
    free = {}
    for mode, grammar in g.items():
        m, free[mode] = grammar.matcher(TOOL_NAMES[0]), 0
        for i in ids:
            free[mode] += len(m.allowed_tokens()) > 1
            m.advance(i)
    assert free["canonical"] < 0.7 * free["any"]


def test_matches_a_fresh_outlines_index(registry, tok):
    """The CSR tables are outlines-core's automaton: same allowed tokens along every accepted path."""
    from vedit.decoding.vocab import token_bytes

    table = token_bytes(tok.tokenizer)
    automata = build_grammar(registry, tok, tokenization="any").automata
    by_bytes: dict[bytes, list[int]] = {}
    for i, b in enumerate(table):
        if b and i != tok.eos_token_id:
            by_bytes.setdefault(b, []).append(i)
    t = registry.tool(TOOL_NAMES[-1])
    index = outlines_core.Index(char_regex(t), outlines_core.Vocabulary(tok.eos_token_id, by_bytes))
    a = automata[t.name]
    ids = tok.tokenizer.encode(accepted(t)[0], add_special_tokens=False).ids + [tok.eos_token_id]
    s, o = 0, index.get_initial_state()
    for i in ids:
        assert sorted(index.get_allowed_tokens(o)) == a.allowed(s).tolist()
        s, o = a.step(s, i), index.get_next_state(o, i)
        if s == DONE:
            break


def test_save_load_round_trip(tmp_path, registry, tok):
    g = build_grammar(registry, tok)
    g.save(tmp_path / "grammar")
    back = CompiledGrammar.load(tmp_path / "grammar")
    assert back.mode == g.mode and back.eos_token_id == g.eos_token_id and back.token_bytes == g.token_bytes
    for name, a in g.automata.items():
        b = back.automata[name]
        for k, v in a.arrays().items():
            np.testing.assert_array_equal(v, b.arrays()[k])


def test_compile_into_export_dir_and_load_without_compiler(tmp_path, tokenizer_dir, registry, tok):
    import shutil

    d = tmp_path / "export"
    shutil.copytree(tokenizer_dir, d)
    registry.save(d / "registry.json")
    info = compile_grammars(d)
    assert info["mode"] == "canonical" and set(info["tools"]) == set(TOOL_NAMES)
    for v in info["tools"].values():
        assert v["states"] > 0 and v["transitions"] >= v["states"] and v["max_tokens"] > 0
    # Loading needs no compiler: with outlines_core made unimportable, the masks still load and
    # equal a fresh compile's.
    fresh = build_grammar(registry, tok)
    code = (
        "import sys, json; sys.modules['outlines_core'] = None\n"
        "from vedit.decoding import load_grammar\n"
        f"g = load_grammar({str(d)!r})\n"
        "print(json.dumps({n: [a.allowed(s).tolist() for s in range(a.n_states)] for n, a in g.automata.items()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    for n, a in fresh.automata.items():
        assert loaded[n] == [a.allowed(s).tolist() for s in range(a.n_states)]


def test_grammar_for_another_tokenizer_is_refused(tmp_path, tokenizer_dir, registry):
    import shutil

    d = tmp_path / "export"
    shutil.copytree(tokenizer_dir, d)
    registry.save(d / "registry.json")
    compile_grammars(d)
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["model"]["vocab"][10][1] -= 1.0  # any change to the tokenizer
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(GrammarError, match="another tokenizer.json"):
        load_grammar(d)
    with pytest.raises(GrammarError, match="no compiled grammar"):
        load_grammar(tmp_path)
