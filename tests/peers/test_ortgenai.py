"""onnxruntime-genai peer end to end on a tiny random Llama: genai's builder (fp32, int8), llguidance
regex guidance with fast-forward, steered to the scripts; per-step cost beside vedit's.

Needs the ``ortgenai`` peer env (onnxruntime-genai 0.18, transformers 5, torch CPU: ~1.3 GB, a few
minutes to build). Runs when that env already exists under the home, or with ``VEDIT_PEER_TESTS=1``
(which builds it). The default run never builds a peer env. The vocabulary rewrite is checked
without the env: its token bytes must equal those of vedit's compiled grammar.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from tests.peers.conftest import BAD_TEXTS, hostile_script, peer_fixtures
from vedit.peers import ortgenai
from vedit.workload.scripted import steer
from vedit.decoding import Predictor, load_grammar
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import ModelDirError


def _worker_module():
    """The worker script as a module (standalone: its only local import is jsonl_protocol beside it)."""
    import sys

    sys.path.insert(0, str(ortgenai.WORKER.parent))
    try:
        spec = importlib.util.spec_from_file_location("ortgenai_worker", ortgenai.WORKER)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ortgenai.WORKER.parent))


def test_the_bpe_rendering_keeps_every_piece_id_and_writes_vedits_bytes(tiny_llama_dir, llama_fp32, tmp_path):
    tj = json.loads((tiny_llama_dir / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = ortgenai.unigram_as_bpe(tj)
    assert bpe["model"]["type"] == "BPE" and bpe["model"]["byte_fallback"] is True
    assert bpe["model"]["vocab"] == {p: i for i, (p, _) in enumerate(tj["model"]["vocab"])}
    assert all(a + b in bpe["model"]["vocab"] for a, b in bpe["model"]["merges"])
    assert bpe["normalizer"] == tj["normalizer"] and bpe["decoder"] == tj["decoder"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(bpe), encoding="utf-8")
    table = _worker_module().token_bytes(tmp_path)  # what the worker decodes genai's tokens with
    grammar = load_grammar(llama_fp32.out_dir)  # independent: vedit's own byte table
    assert {i: table[i] for i in grammar.token_bytes} == grammar.token_bytes
    assert ortgenai.unigram_as_bpe(bpe) is bpe  # already BPE: kept as is


def test_the_base_of_a_lora_export_is_refused_before_any_env_is_built(tiny_llama_dir, llama_fp32, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(llama_fp32.out_dir, export)
    man = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    man["source"] = {**man.get("source", {}), "model_dir": str(tiny_llama_dir), "adapter_dir": str(tmp_path / "lora")}
    (export / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    with pytest.raises(ModelDirError, match="give onnxruntime-genai the merged HF folder"):
        ortgenai.paths(student_dir=tiny_llama_dir, exports={"fp32": export}, scripts={}, threads=1)
    ortgenai.check_student(tiny_llama_dir, {"fp32": llama_fp32.out_dir})  # its own export: accepted


env_ready, scripts, rows = peer_fixtures(ortgenai, "ortgenai", "models_dir", "~1.3 GB, minutes")


@pytest.mark.slow
def test_both_precisions_write_the_scripts_like_vedit(rows, llama_fp32, scripts):
    assert set(rows) == {"ort-genai+guidance-fp32", "ort-genai+guidance-int8"}
    export = llama_fp32.out_dir
    vedit = Predictor.load(export, threads=1)
    grammar = load_grammar(export)
    tok = load_tokenizer(export).tokenizer
    requests = ortgenai.LlamaRequests.load({"fp32": export}, {s.intent: s for s in scripts})
    for name, call in rows.items():
        assert "llguidance regex" in call.info and "1 threads" in call.info and "one after another" in call.info
        assert call.worker.info["threads"] == 1 and call.worker.info["engine"] == "onnxruntime-genai 0.18.0"
        for s in scripts:
            cost = call(s.intent)
            assert cost.texts == s.text_tuple(), name  # genai's own tokens, written by the worker's byte table
            assert cost.texts == tuple(vedit.predict([s.intent], bias=steer([s]))[0].raw.values())
            reply = call.worker.run(rows=requests.rows(s.intent))
            # the HF tokenizer (independent of the worker's byte table) decodes genai's ids to the same texts
            # (its decoder strips one leading space)
            assert tuple(tok.decode(t) for t in reply["tokens"]) == tuple(
                x[1:] if x.startswith(" ") else x for x in s.text_tuple())
            assert all(t[-1] == grammar.eos_token_id for t in reply["tokens"])
            # every token was either picked by genai's sampler or fast-forwarded by llguidance
            assert reply["free"] + reply["forced"] == sum(len(t) for t in reply["tokens"])
            # a prefill per row, a run per pick after the first, and at most one fast-forward run per pick
            assert reply["free"] <= reply["calls"] <= 2 * reply["free"] and reply["forced"] > 0
            assert (cost.decoder_calls, cost.free_tokens, cost.forced_tokens) == (
                reply["calls"], reply["free"], reply["forced"])
            # the kept generators start from the shared prompt prefix (vedit's prefix cache does the same)
            prompts = requests.rows(s.intent)
            assert 0 < reply["prefill_fed"] == sum(len(r["prompt"]) - r["prefix"] for r in prompts)
            assert all(r["prefix"] == len(p) for r, p in zip(prompts, vedit.prompts.shared_prefixes()))


@pytest.mark.slow
def test_the_guidance_holds_against_steering_to_invalid_answers(rows, llama_fp32):
    export = llama_fp32.out_dir
    grammar = load_grammar(export)
    bad = hostile_script(export)
    call = rows["ort-genai+guidance-fp32"]
    requests = ortgenai.LlamaRequests.load({"fp32": export}, {bad.intent: bad})
    reply = call.worker.run(rows=requests.rows(bad.intent), bias=1e4)
    for tool, text in zip(requests.tools, reply["texts"]):
        assert grammar.accepts_text(tool, text), (tool, text)
        assert text != BAD_TEXTS[tool]
    free = call("an unscripted intent")  # unsteered: whatever the random model picks, still valid
    assert free.texts is None
    reply = call.worker.run(rows=ortgenai.LlamaRequests.load({"fp32": export}, {}).rows("an unscripted intent"))
    for tool, text in zip(requests.tools, reply["texts"]):
        assert grammar.accepts_text(tool, text), (tool, text)


@pytest.mark.slow
def test_fresh_generators_answer_like_kept_ones_that_start_from_the_shared_prefix(rows, llama_fp32, scripts):
    call = rows["ort-genai+guidance-int8"]
    requests = ortgenai.LlamaRequests.load({"fp32": llama_fp32.out_dir}, {s.intent: s for s in scripts})
    for s in scripts:
        reused = call.worker.run(rows=requests.rows(s.intent))
        fresh = call.worker.run(rows=requests.rows(s.intent), reuse=False)
        assert reused["texts"] == fresh["texts"] == list(s.text_tuple())
        assert reused["tokens"] == fresh["tokens"] and reused["calls"] == fresh["calls"]
        assert reused["prefill_fed"] < fresh["prefill_fed"] == sum(len(r["prompt"]) for r in requests.rows(s.intent))


@pytest.mark.slow
def test_step_costs_time_both_engines_on_the_same_prompts(env_ready, tiny_llama_dir, llama_fp32, tmp_path, monkeypatch):
    monkeypatch.setattr(ortgenai, "models_dir", lambda: tmp_path)
    got = ortgenai.step_costs(student_dir=tiny_llama_dir, exports={"fp32": llama_fp32.out_dir},
                              intents=["golden hour"], threads=1, steps=4, rounds=2)
    assert [(s.precision, s.batch, s.steps) for s in got] == [("fp32", 3, 4)]
    s = got[0]
    assert min(s.vedit_ms, s.genai_ms, s.vedit_prefill_ms, s.genai_prefill_ms) > 0
    assert s.to_json()["ratio"] == round(s.vedit_ms / s.genai_ms, 3)
