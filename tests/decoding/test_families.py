"""Every tokenizer family keeps jump-forward, at real vocabulary sizes.

The families (trained locally, cached under VEDIT_HOME, see ``vedit.students.families``): T5's
SentencePiece Unigram without digit splitting (32k, ``spiece.model`` only), Llama-2's
SentencePiece BPE with byte fallback (32k, ``tokenizer.model`` only), byte-level BPE (50k,
``tokenizer.json``), and, as the reference, a Unigram that splits digits (vedit's own recipe).

References: the character regex (what is valid), jsonschema-free JSON parsing, the step-by-step
loop (``jump_forward=False``) on the same automaton, and ``sentencepiece`` itself for the
conversion of its model files.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoding_cases import accepted, refused
from test_loop import HistoryModel
from test_loop import test_jump_forward_equals_step_by_step as jump_forward_equals_step_by_step
from vedit.workload.scripted import script_bias, script_tokens
from vedit.decoding.compile import build_grammar
from vedit.decoding.language import char_regex
from vedit.decoding.loop import decode
from vedit.decoding.vocab import TokenizerInfo
from vedit.export.spm import spm_file, tokenizer_from_spm
from vedit.students.families import corpus, family_dir, project_lines

MERGING = ("t5-unigram", "llama2-bpe", "byte-level-bpe")
REFERENCE = "unigram-split-digits"


def _info(name: str) -> TokenizerInfo:
    from tokenizers import Tokenizer

    d = family_dir(name)
    cfg = json.loads((d / "config.json").read_text())
    f = spm_file(d)
    tok = tokenizer_from_spm(f.read_bytes()) if f else Tokenizer.from_file(str(d / "tokenizer.json"))
    return TokenizerInfo(tok, cfg["eos_token_id"], cfg["pad_token_id"], cfg.get("unk_token_id"), tok.get_vocab_size())


@pytest.fixture(scope="module")
def families(registry):
    """name -> (tokenizer info, grammar compiled in mode auto)."""
    out = {}
    for name in (*MERGING, REFERENCE):
        info = _info(name)
        out[name] = (info, build_grammar(registry, info))
    return out


@pytest.fixture(scope="module")
def truth_rows(registry):
    from vedit.data.synth import generate

    return generate(seed=7, n_intents=200, n_test=40, registry=registry).test


def test_families_are_real_size_and_carry_what_checkpoints_carry(families):
    sizes = {n: info.tokenizer.get_vocab_size() for n, (info, _) in families.items()}
    assert sizes["t5-unigram"] >= 31_000 and sizes["llama2-bpe"] >= 32_000 and sizes["byte-level-bpe"] >= 49_000
    assert sorted(p.name for p in family_dir("t5-unigram").iterdir()) == ["config.json", "spiece.model"]
    assert sorted(p.name for p in family_dir("llama2-bpe").iterdir()) == ["config.json", "tokenizer.model"]
    tables = {n: info.tokenizer.get_vocab() for n, (info, _) in families.items()}
    for name in MERGING:  # the point of these families: digits merge with other text
        assert any(re.search(r"\d", p) and len(p) > 1 for p in tables[name]), name
    assert not any(re.search(r"\d", p) and len(p.strip("▁")) > 1 for p in tables[REFERENCE] if not p.startswith("<0x"))


@pytest.mark.parametrize("name", ["t5-unigram", "llama2-bpe", REFERENCE])
def test_sentencepiece_files_load_and_encode_like_sentencepiece(name, registry):
    """The model file alone is rebuilt without the clashing protobuf gencode, and encodes as sentencepiece does."""
    import sentencepiece as spm

    data = spm_file(family_dir(name)).read_bytes()
    sp, tok = spm.SentencePieceProcessor(model_proto=data), tokenizer_from_spm(data)
    project = project_lines(registry, n_intents=150)
    generic = random.Random(0).sample(corpus(registry, n_intents=10)[60:], 1500)
    extra = [" {\"a\":1}", "two  spaces", "  leading", "emoji 😈 ok", "{\"brightness\":-12,\"contrast\":5}"]
    for text in project + extra:
        assert tok.encode(text, add_special_tokens=False).ids == sp.encode(text), text
    # Unigram Viterbi ties (equal-score segmentations of long '=====' runs) may be broken either way
    differ = sum(tok.encode(t, add_special_tokens=False).ids != sp.encode(t) for t in generic)
    assert differ <= 2, differ


def test_merging_families_keep_forced_runs(families):
    modes = {n: g.mode for n, (_, g) in families.items()}
    assert modes == {**{n: "runs" for n in MERGING}, REFERENCE: "canonical"}
    for name in MERGING:
        info = families[name][1].meta["tools_info"]
        assert all(t["chain_tokens"] > 0 and t["unencodable"] == 0 for t in info.values()), (name, info)


@pytest.mark.parametrize("name", MERGING)
def test_runs_grammar_admits_exactly_the_valid_texts(families, registry, name):
    info, grammar = families[name]
    for tool in registry.tools:
        for text in accepted(tool):
            assert grammar.accepts_text(tool.name, text), text
            ids = [*info.tokenizer.encode(text.lstrip(" "), add_special_tokens=False).ids, info.eos_token_id]
            m = grammar.matcher(tool.name)  # the tokenizer's own encoding is one of the paths
            assert all(m.advance(i) for i in ids) and m.is_finished(), text
        for why, text in refused(tool):
            assert not grammar.accepts_text(tool.name, text), why
        rx = re.compile(char_regex(tool))
        rng = random.Random(3)
        for _ in range(30):  # random walks through the automaton write only valid JSON
            m, ids = grammar.matcher(tool.name), []
            while not m.is_finished():
                allowed = m.allowed_tokens()
                ids.append(int(allowed[rng.randrange(len(allowed))]))
                assert m.advance(ids[-1])
            text = grammar.text(ids)
            assert rx.fullmatch(text), text
            json.loads(text)


@pytest.mark.parametrize("name", MERGING)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), group=st.booleans())
def test_jump_forward_is_identical_to_step_by_step(families, registry, name, seed, group):
    """test_loop's check (same tokens, one call per free token, fewer calls) on each family's grammar."""
    jump_forward_equals_step_by_step(families[name][1], registry, group, seed)


def _calls_per_request(grammar, info, registry, rows) -> float:
    """Mean decoder calls per request when every row is steered to its scripted answer."""
    calls = []
    for k, row in enumerate(rows):
        tools = list(registry.tool_names)
        scripts = [script_tokens(grammar, t, row.calls_by_tool[t].dumps(), info.tokenizer) for t in tools]
        model = HistoryModel(grammar.vocab_size, k, False)
        traces = decode(model, [grammar.matcher(t) for t in tools], [[5]] * len(tools),
                        bias=lambda r, pos, logits: script_bias(logits, scripts[r], pos))
        assert [tuple(t.tokens) for t in traces] == scripts
        calls.append(model.calls)
    return sum(calls) / len(calls)


def test_calls_per_request_within_1_2x_of_digit_splitting(families, registry, truth_rows):
    ref = _calls_per_request(*reversed(families[REFERENCE]), registry, truth_rows)
    for name in MERGING:
        info, grammar = families[name]
        calls = _calls_per_request(grammar, info, registry, truth_rows)
        any_calls = _calls_per_request(build_grammar(registry, info, tokenization="any"), info, registry,
                                       truth_rows[:10])
        assert calls <= 1.2 * ref, (name, calls, ref)
        assert calls < 0.75 * any_calls, (name, calls, any_calls)
