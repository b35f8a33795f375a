"""T5 peers end to end on a tiny random T5: optimum ORT (main venv) and CTranslate2 (its own env).

The CTranslate2 test needs the ``ctranslate2`` peer env (torch + transformers, ~1 min and ~1 GB to
build): it runs when that env already exists under the home, or with ``VEDIT_PEER_TESTS=1`` (which
builds it). The default run never builds a peer env.
"""

from __future__ import annotations

import os

import pytest

from vedit.peers import ctranslate2_peer, optimum_ort, peer_paths
from vedit.peers.env import env_path, is_ready
from vedit.workload.scripted import load_scripts, script_cost, steer
from vedit.data.rows import write_jsonl
from vedit.data.synth import generate
from vedit.decoding import Predictor, load_grammar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scripts(tmp_path_factory, t5_fp32):
    rows = generate(seed=5, n_intents=60, n_test=3).test
    path = tmp_path_factory.mktemp("peer-scripts") / "test.jsonl"
    write_jsonl(path, [r.to_json() for r in rows])
    return load_scripts(t5_fp32.out_dir, 3, truth=path)


@pytest.fixture
def peer_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    return tmp_path


def test_optimum_peer_answers_the_scripts_like_vedit_and_a_broken_peer_is_skipped(
        peer_home, tiny_t5_dir, t5_fp32, scripts, monkeypatch):
    export = t5_fp32.out_dir
    # a real failing install (a requirement that does not exist) stands for an unbuildable peer env
    monkeypatch.setattr(ctranslate2_peer, "REQUIREMENTS", (str(peer_home / "no-such-project"),))
    got = peer_paths("t5", student_dir=tiny_t5_dir, exports={"fp32": export},
                     scripts={s.intent: s for s in scripts}, threads=1)
    assert set(got) == {"optimum-ort+grammar-fp32"}
    assert "pip install failed" in got.skipped["ctranslate2_peer"]
    assert got.notes() == [f"peer ctranslate2_peer skipped: {got.skipped['ctranslate2_peer']}"]
    call = got["optimum-ort+grammar-fp32"]
    assert "GrammarLogitsProcessor" in call.info and "fresh optimum export" in call.info
    vedit = Predictor.load(export, threads=1)
    grammar = load_grammar(export)
    for s in scripts:
        cost = call(s.intent)
        assert cost.texts == s.text_tuple()  # steered to the truth answer, through the grammar
        assert cost.texts == tuple(vedit.predict([s.intent], bias=steer([s]))[0].raw.values())
        want = script_cost(grammar, s)
        assert (cost.free_tokens, cost.forced_tokens) == (want.free, want.forced)
        assert cost.decoder_calls == max(len(t) for t in s.tokens.values())  # one generate step per token
    # unscripted: still constrained (valid calls), no free/forced claim
    free = call("a sunny beach")
    assert len(free.texts) == 3 and free.free_tokens is None
    # the optimum export is cached by content: a second load exports nothing
    assert optimum_ort.optimum_export(tiny_t5_dir) == optimum_ort.optimum_export(tiny_t5_dir)


def _ct2_env_or_skip():
    if os.environ.get("VEDIT_PEER_TESTS") == "1":
        return
    if not is_ready(env_path("ctranslate2", ctranslate2_peer.REQUIREMENTS)):
        pytest.skip("no ctranslate2 peer env under the home (VEDIT_PEER_TESTS=1 builds it, ~1 min)")


def test_ctranslate2_decodes_each_row_for_its_scripted_length_like_pytorch_greedy(
        tiny_t5_dir, t5_fp32, scripts, tmp_path, monkeypatch):
    _ct2_env_or_skip()
    import torch
    from transformers import T5ForConditionalGeneration

    from vedit.peers.requests import Requests

    monkeypatch.setattr(ctranslate2_peer, "models_dir", lambda: tmp_path)  # the conversion goes here
    export = t5_fp32.out_dir
    by_intent = {s.intent: s for s in scripts}
    calls = ctranslate2_peer.paths(student_dir=tiny_t5_dir, exports={"fp32": export}, scripts=by_intent, threads=1)
    assert set(calls) == {"ctranslate2-fp32", "ctranslate2-int8"}
    assert "int8" in calls["ctranslate2-int8"].worker.info["compute_type"]
    assert "unconstrained" in calls["ctranslate2-fp32"].info
    requests = Requests.load({"fp32": export}, by_intent)
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).eval()
    for s in scripts:
        lengths = [len(t) for t in s.tokens.values()]
        rows = requests.rows(s.intent)
        for name, call in calls.items():
            reply = call.worker.run(rows=rows.prompts, lengths=lengths)
            assert [len(t) for t in reply["tokens"]] == lengths  # exactly the scripted length per row
            assert reply["steps"] == max(lengths) == call(s.intent).decoder_calls
            assert reply["ms"] > 0
            if name == "ctranslate2-fp32":  # independent reference: PyTorch greedy, EOS held off alike
                width = max(len(r) for r in rows.prompts)
                ids = torch.zeros((3, width), dtype=torch.long)
                mask = torch.zeros_like(ids)
                for k, r in enumerate(rows.prompts):
                    ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
                with torch.inference_mode():
                    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                         min_new_tokens=max(lengths), max_new_tokens=max(lengths))
                want = [row[1 : 1 + n] for row, n in zip(out.tolist(), lengths)]
                assert reply["tokens"] == want
                # target_prefix imposes a row's start: the whole script can be forced, not constrained
                forced = call.worker.run(rows=rows.prompts, prefix=[list(t[:-1]) for t in rows.script],
                                         max_length=max(lengths))
                assert [t[: n - 1] for t, n in zip(forced["tokens"], lengths)] == [list(t[:-1]) for t in rows.script]
