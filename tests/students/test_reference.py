"""The PyTorch reference predictor on tiny untrained students (typed results, raw text, safety)."""

from __future__ import annotations

import shutil

import pytest

from vedit.errors import ModelDirError
from vedit.reference import ReferencePredictor, ReferenceResult, detect_family, output_token_budget
from vedit.registry import ToolCall, parse_call

INTENTS = ["golden hour", "cold tone", "neon night"]


def _check(results: list[ReferenceResult], registry, predictor: ReferencePredictor) -> None:
    assert [r.intent for r in results] == INTENTS
    for r in results:
        assert list(r.calls) == list(registry.tool_names) == list(r.raw)
        for tool in registry.tools:
            call, text = r.calls[tool.name], r.raw[tool.name]
            assert isinstance(text, str)
            assert 1 <= r.new_tokens[tool.name] <= predictor.max_new_tokens
            if call is None:
                assert tool.name in r.errors
                assert r.outputs()[tool.name] == text
            else:
                assert isinstance(call, ToolCall) and call == parse_call(tool, text)
        assert 1 <= r.decoder_calls <= predictor.max_new_tokens
    assert predictor.stats.requests == len(INTENTS)
    assert predictor.stats.sequences == len(INTENTS) * len(registry.tools)


def _generate_one(predictor: ReferencePredictor, prompt: str) -> str:
    """Independent greedy decode, one prompt, no padding: the batched path must agree."""
    import torch

    tok = predictor.tokenizer
    enc = tok([prompt], return_tensors="pt")
    with torch.inference_mode():
        out = predictor.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False, max_new_tokens=predictor.max_new_tokens,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    skip = 1 if predictor.family == "t5" else enc["input_ids"].shape[1]
    return tok.decode(out[0, skip:], skip_special_tokens=True)


def test_tokenizer_without_pad_token(tiny_llama_dir, tmp_path, registry):
    """Stock Llama-2 has no pad token: batched rows are padded with EOS (masked out), the answers are
    those of the same student with a pad token. Before the fix: TypeError in torch.full(None)."""
    import json

    nopad = tmp_path / "nopad"
    shutil.copytree(tiny_llama_dir, nopad)
    for name in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
        f = nopad / name
        if f.exists():
            cfg = json.loads(f.read_text())
            cfg.pop("pad_token", None), cfg.pop("pad_token_id", None)
            f.write_text(json.dumps(cfg))
    p = ReferencePredictor.load(nopad, threads=1)
    assert p.tokenizer.pad_token_id is None
    got = p.predict(INTENTS, batch_size=3)  # rows of different lengths: padding is needed
    want = ReferencePredictor.load(tiny_llama_dir, threads=1).predict(INTENTS, batch_size=3)
    assert [r.raw for r in got] == [r.raw for r in want]


def test_t5_typed_results_and_raw_text(tiny_t5_dir, registry):
    p = ReferencePredictor.load(tiny_t5_dir, threads=1)
    assert p.family == "t5"
    results = p.predict(INTENTS, batch_size=2)
    _check(results, registry, p)
    assert results[0].raw["filter"] == _generate_one(p, registry.prompt("filter", INTENTS[0], "t5"))
    row = results[0].to_row()
    assert row["intent"] == INTENTS[0] and set(row) == {"intent", *registry.tool_names}


def test_llama_with_adapter_left_padding(tiny_llama_dir, tiny_llama_lora_dir, registry):
    base = ReferencePredictor.load(tiny_llama_dir, threads=1)
    p = ReferencePredictor.load(tiny_llama_dir, tiny_llama_lora_dir, threads=1)
    assert p.family == "llama" and p.tokenizer.padding_side == "left"
    results = p.predict(INTENTS, batch_size=3)
    _check(results, registry, p)
    # left padding: the batched answer equals the unpadded answer of each prompt
    for r in results[:2]:
        for tool in ("adjust", "filter"):
            assert r.raw[tool] == _generate_one(p, registry.prompt(tool, r.intent, "llama"))
    # the (random, non-zero) adapter changes the outputs
    plain = base.predict(INTENTS, batch_size=3)
    assert [r.raw for r in plain] != [r.raw for r in results]


def test_logits_processor_hooks(tiny_t5_dir, registry):
    """Extra logits processors steer every row of every batch; steps are counted per batch."""
    import torch

    p = ReferencePredictor.load(tiny_t5_dir)
    target = p.tokenizer(ToolCall.unused(registry.tool("filter")).dumps(), add_special_tokens=False)["input_ids"]
    target = target + [p.tokenizer.eos_token_id]

    class Force:
        """Forces the ids of the canonical 'none' filter call, then end of sequence."""

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - 1
            forced = torch.full_like(scores, float("-inf"))
            forced[:, target[min(step, len(target) - 1)]] = 0
            return forced

    results = p.predict(INTENTS[:2], batch_size=1, logits_processor=[Force()])
    for r in results:
        assert r.calls["filter"] == ToolCall.unused(registry.tool("filter"))
        assert r.decoder_calls == len(target)
    assert p.stats.decoder_calls == 2 * len(target)


def test_budget_fits_longest_output(tiny_t5_dir, registry):
    p = ReferencePredictor.load(tiny_t5_dir)
    adjust = registry.tool("adjust")
    widest = ToolCall.of(adjust, {p_.name: p_.min for p_ in adjust.slot_params})
    n = len(p.tokenizer(widest.dumps())["input_ids"])
    assert output_token_budget(registry, p.tokenizer) >= n


def test_pickled_weights_refused(tmp_path, tiny_t5_dir):
    import torch
    from transformers import T5ForConditionalGeneration

    d = tmp_path / "pickled"
    shutil.copytree(tiny_t5_dir, d)
    (d / "model.safetensors").unlink()
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(ModelDirError, match="pickled"):
        ReferencePredictor.load(d)
    # explicit opt-in loads, and gives the same answers as the safetensors copy
    ok = ReferencePredictor.load(d, allow_pickle=True)
    ref = ReferencePredictor.load(tiny_t5_dir)
    assert ok.predict(INTENTS[:1])[0].raw == ref.predict(INTENTS[:1])[0].raw


def test_pickled_adapter_refused(tmp_path, tiny_llama_dir, tiny_llama_lora_dir):
    import torch
    from safetensors.torch import load_file

    d = tmp_path / "adapter"
    shutil.copytree(tiny_llama_lora_dir, d)
    torch.save(load_file(d / "adapter_model.safetensors"), d / "adapter_model.bin")
    (d / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="pickled"):
        ReferencePredictor.load(tiny_llama_dir, d)


def test_bad_directories(tmp_path, tiny_t5_dir):
    with pytest.raises(ModelDirError, match="not found"):
        ReferencePredictor.load(tmp_path / "missing")
    d = tmp_path / "bert"
    shutil.copytree(tiny_t5_dir, d)
    (d / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelDirError, match="unsupported model_type 'bert'"):
        detect_family(d)
    with pytest.raises(ModelDirError, match="adapter_config.json"):
        ReferencePredictor.load(tiny_t5_dir, tmp_path)
