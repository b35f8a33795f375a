"""LoRA merge: merged logits equal the adapter model's (PyTorch), the exported ONNX equals the merged
model, and adapters for another base are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.export.conftest import INTENTS, leftovers
from vedit.errors import ModelDirError

pytestmark = pytest.mark.slow


def _prompt_logits(model, tok, family):
    import torch

    enc = tok(["golden hour", "a cold blue winter morning, please"], padding=True, return_tensors="pt")
    with torch.no_grad():
        if family == "t5":
            return model(**enc, decoder_input_ids=torch.tensor([[0, 5, 6, 7]] * 2)).logits.numpy()
        return model(**enc).logits.numpy()[enc["attention_mask"].numpy().astype(bool)]


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_merge_matches_adapter_model(family, tmp_path, request):
    from peft import PeftModel
    from transformers import AutoTokenizer, LlamaForCausalLM, T5ForConditionalGeneration

    from vedit.export import merge

    base = request.getfixturevalue(f"tiny_{family}_dir")
    adapter = request.getfixturevalue(f"tiny_{family}_lora_dir")
    cls = T5ForConditionalGeneration if family == "t5" else LlamaForCausalLM
    report = merge(base, adapter, tmp_path / "merged")
    out = tmp_path / "merged"
    assert report.passed and report.max_abs_diff <= report.tolerance and report.lora_modules > 0
    assert report.adapter_effect > 1e-3  # the fixture adapters have non-zero lora_B
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    assert json.loads((out / "merge_report.json").read_text())["max_abs_diff"] == report.max_abs_diff
    assert (out / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()

    tok = AutoTokenizer.from_pretrained(base)
    with_adapter = PeftModel.from_pretrained(cls.from_pretrained(base), adapter).eval()
    merged = cls.from_pretrained(out).eval()
    base_model = cls.from_pretrained(base).eval()
    ref = _prompt_logits(with_adapter, tok, family)
    np.testing.assert_allclose(_prompt_logits(merged, tok, family), ref, atol=1e-4 + 1e-5 * np.abs(ref).max())
    assert np.abs(_prompt_logits(base_model, tok, family) - ref).max() > 1e-3
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_export_with_adapter_equals_merged_pytorch(family, tmp_path, request):
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM, T5ForConditionalGeneration

    from vedit.export import export_model, merge

    base = request.getfixturevalue(f"tiny_{family}_dir")
    adapter = request.getfixturevalue(f"tiny_{family}_lora_dir")
    result = export_model(base, tmp_path / "exp", family=family, adapter_dir=adapter, intents=INTENTS[:1],
                          max_new_tokens=16)
    m = result.manifest
    assert m["validation"]["passed"] and m["merge"]["passed"]
    assert m["source"]["adapter_dir"] == str(adapter.resolve())
    assert "adapter/adapter_model.safetensors" in m["source"]["sha256"]

    merge(base, adapter, tmp_path / "merged")
    cls = T5ForConditionalGeneration if family == "t5" else LlamaForCausalLM
    merged = cls.from_pretrained(tmp_path / "merged").eval()
    tok = AutoTokenizer.from_pretrained(base)
    enc = tok(["golden hour"], return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    with torch.no_grad():
        if family == "t5":
            ref = merged(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                         decoder_input_ids=torch.tensor([[0]])).logits.numpy()
            h = ort.InferenceSession(str(result.out_dir / "encoder_model.onnx")).run(
                None, {"input_ids": ids, "attention_mask": mask})[0]
            got = ort.InferenceSession(str(result.out_dir / "decoder_model.onnx")).run(
                ["logits"], {"input_ids": np.array([[0]]), "encoder_attention_mask": mask,
                             "encoder_hidden_states": h, "last_index": np.array([0])})[0]
        else:
            # the exported graph's lm_head runs at one position per row (last_index): the last one
            ref = merged(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()[:, -1:]
            sess = ort.InferenceSession(str(result.out_dir / "model.onnx"))
            past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
                    for i in sess.get_inputs() if i.name.startswith("past_key_values")}
            got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask,
                                        "position_ids": np.arange(ids.shape[1])[None],
                                        "last_index": np.array([ids.shape[1] - 1]), **past})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4 + 1e-5 * np.abs(ref).max())


def test_adapter_for_another_architecture_is_refused(tiny_llama_dir, tiny_t5_lora_dir, tmp_path):
    from vedit.export import merge

    with pytest.raises(ModelDirError, match=r"adapter does not fit the base model \(trained for another base\?\): target module 'k' not found"):
        merge(tiny_llama_dir, tiny_t5_lora_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_adapter_with_other_shapes_is_refused(tiny_llama_dir, tiny_llama_lora_dir, tmp_path):
    """Same architecture and module names, different hidden size: the lora_A/B shapes give it away."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from vedit.export import merge

    other = tmp_path / "other_base"
    cfg = LlamaConfig.from_pretrained(tiny_llama_dir)
    cfg.hidden_size, cfg.intermediate_size = 32, 96
    LlamaForCausalLM(cfg).save_pretrained(other)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_llama_dir / f, other / f)
    with pytest.raises(ModelDirError, match=r"shape \(4, 64\) does not fit the base layer"):
        merge(other, tiny_llama_lora_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_quantized_base_is_refused(tiny_llama_dir, tiny_llama_lora_dir, tmp_path):
    from vedit.export import merge

    base = tmp_path / "q"
    shutil.copytree(tiny_llama_dir, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirError, match=r"saved quantized \(bitsandbytes\).*full-precision base"):
        merge(base, tiny_llama_lora_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
