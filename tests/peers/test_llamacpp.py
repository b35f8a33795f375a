"""llama.cpp peer end to end on a tiny random Llama: GGUF F32 and Q8_0, GBNF, steered to the scripts.

Needs the ``llamacpp`` peer env (llama-cpp-python built from its sdist: minutes on two cores, plus
torch and transformers for the converter). Runs when that env already exists under the home, or
with ``VEDIT_PEER_TESTS=1`` (which builds it). The default run never builds a peer env.
The GBNF rendering is checked here against vedit's own grammar by llama.cpp itself: steered to
the truth answers the rows must write exactly them; steered to invalid answers, and unsteered,
everything they write must be accepted by vedit's compiled grammar.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.conftest import BAD_TEXTS, hostile_script, peer_fixtures
from vedit.peers import llamacpp
from vedit.peers.gbnf import literal, tool_gbnf
from vedit.workload.scripted import steer
from vedit.decoding import Predictor, load_grammar
from vedit.errors import PeerError


def test_gbnf_literals_escape_quotes_backslashes_and_controls():
    assert literal('{"a":1}') == r'"{\"a\":1}"'
    assert literal("a\\b\n\t\x01é") == r'"a\\b\n\t\x01é"'


def test_gbnf_names_every_preset_and_one_rule_per_range(registry):
    filt = next(t for t in registry.tools if t.categories)
    g = tool_gbnf(filt)
    assert g.startswith('root ::= (" ")? body\n')
    assert all(literal(f'"{p}"') in g for p in filt.choices(filt.categories[0]))
    adjust = next(t for t in registry.tools if not t.categories and len(t.slots[0]) == 1)
    ranges = {(p.min, p.max) for p in adjust.slot_params}
    assert tool_gbnf(adjust).count("::=") == 2 + len(ranges)


env_ready, scripts, rows = peer_fixtures(llamacpp, "llamacpp", "gguf_dir", "llama-cpp-python from source")


@pytest.mark.slow
def test_both_precisions_write_the_scripts_like_vedit(rows, llama_fp32, scripts):
    assert set(rows) == {"llama.cpp+gbnf-fp32", "llama.cpp+gbnf-q8_0"}
    vedit = Predictor.load(llama_fp32.out_dir, threads=1)
    for name, call in rows.items():
        assert "GBNF" in call.info and "1 threads" in call.info and "not batched" in call.info
        for s in scripts:
            cost = call(s.intent)
            assert cost.texts == s.text_tuple(), name  # llama.cpp's own bytes for its tokens
            assert cost.texts == tuple(vedit.predict([s.intent], bias=steer([s]))[0].raw.values())
            n = sum(len(t) for t in s.tokens.values())
            # one prefill per row, then one llama_decode per token but the last (EOS): no jump-forward
            assert cost.decoder_calls == n and (cost.free_tokens, cost.forced_tokens) == (n, 0)
            assert 0 < call.last["decode_ms"] <= call.last["ms"]  # the model's share of the worker's time


@pytest.mark.slow
def test_the_grammar_holds_against_steering_to_invalid_answers(rows, llama_fp32, scripts):
    export = llama_fp32.out_dir
    grammar = load_grammar(export)
    bad = hostile_script(export)
    call = rows["llama.cpp+gbnf-fp32"]
    call_rows = llamacpp.LlamaRows.load({"fp32": export}, {bad.intent: bad})
    reply = call.worker.run(rows=call_rows.rows(bad.intent))
    for tool, text, ids in zip(call_rows.tools, reply["texts"], reply["tokens"]):
        assert grammar.accepts_text(tool, text), (tool, text)
        assert text != BAD_TEXTS[tool] and ids[-1] == grammar.eos_token_id
    free = call("an unscripted intent")  # unsteered: whatever the random model picks, still valid
    for tool, text in zip(call_rows.tools, free.texts):
        assert grammar.accepts_text(tool, text), (tool, text)


@pytest.mark.slow
def test_the_gguf_vocabulary_writes_vedits_bytes(rows, llama_fp32):
    grammar = load_grammar(llama_fp32.out_dir)
    ids = sorted(grammar.token_bytes)
    pieces = rows["llama.cpp+gbnf-q8_0"].worker.request("pieces", ids=ids)["pieces"]
    assert {i: bytes.fromhex(p) for i, p in zip(ids, pieces)} == {i: grammar.token_bytes[i] for i in ids}


@pytest.mark.slow
def test_gguf_is_cached_by_content(rows, tiny_llama_dir):
    python = llamacpp.peer_python()
    first = llamacpp.gguf_model(tiny_llama_dir, "q8_0", python=python)
    stamp = first.stat().st_mtime_ns
    assert llamacpp.gguf_model(tiny_llama_dir, "q8_0", python=python) == first
    assert first.stat().st_mtime_ns == stamp and Path(first).parent == llamacpp.gguf_dir()


def test_context_is_capped_at_the_trained_one(llama_fp32, tiny_llama_dir):
    """llama.cpp crashed (signal 11) when its context exceeded the student's trained context: the rows'
    context is capped there, each row generates only what fits after its prompt, and a trained context
    too small for vedit's own prompt limit and longest answer is refused with a reason."""
    export = llama_fp32.out_dir
    free = llamacpp.LlamaRows.load({"fp32": export}, {})
    assert llamacpp.trained_context(tiny_llama_dir) is not None
    cap = free.context - 5
    capped = llamacpp.LlamaRows.load({"fp32": export}, {}, trained_context=cap)
    assert capped.context == cap < free.context
    for row in capped.rows("golden hour"):
        assert len(row["prompt"]) + row["max_new"] <= cap
    with pytest.raises(PeerError, match="trained context"):
        llamacpp.LlamaRows.load({"fp32": export}, {}, trained_context=free.builder.limit)
