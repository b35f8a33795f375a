"""Llama export: one model.onnx with KV cache, validated, multi-token calls after a past."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_llama_fp32_directory_and_manifest(llama_fp32, tiny_llama_dir):
    out, m = llama_fp32.out_dir, llama_fp32.manifest
    assert (m["family"], m["precision"], m["files"]) == ("llama", "fp32", {"decoder": "model.onnx"})
    io = m["io"]["model.onnx"]
    assert io["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.1.value" in io["inputs"] and "present.1.key" in io["outputs"]
    assert io["outputs"][0] == "logits"
    v = m["validation"]
    assert v["passed"] and max(v["max_abs_diff"].values()) < 1e-4
    assert v["greedy"]["identical"] + v["greedy"]["ties"] == v["greedy"]["sequences"]
    assert (out / "tokenizer.json").read_bytes() == (tiny_llama_dir / "tokenizer.json").read_bytes()
    assert (out / "registry.json").exists() and (out / "config.json").exists()


def test_llama_multi_token_after_past(llama_fp32, tiny_llama_dir):
    import onnxruntime as ort
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = np.array([[0, 0, 3, 40, 41, 42], [3, 50, 51, 52, 53, 54]], dtype=np.int64)
    mask = (np.arange(6)[None] >= np.array([[2], [0]])).astype(np.int64)
    new = np.array([[60, 61, 62], [70, 71, 72]], dtype=np.int64)
    full_ids, full_mask = np.concatenate([ids, new], 1), np.concatenate([mask, np.ones_like(new)], 1)
    pos = np.where(full_mask == 0, 1, full_mask.cumsum(-1) - 1)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(full_ids), attention_mask=torch.from_numpy(full_mask),
                    position_ids=torch.from_numpy(pos)).logits.numpy()
    sess = ort.InferenceSession(str(llama_fp32.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    kv = [i for i in sess.get_inputs() if i.name.startswith("past_key_values")]
    empty = {i.name: np.zeros((2, i.shape[1], 0, i.shape[3]), np.float32) for i in kv}
    first = dict(zip(names, sess.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos[:, :6],
                                            "last_index": np.array([5, 5]), **empty})))
    past = {k.replace("present", "past_key_values"): v for k, v in first.items() if k.startswith("present")}
    feeds = {"input_ids": new, "attention_mask": full_mask, "position_ids": pos[:, 6:], **past}
    for j in range(3):  # the fused graph's lm_head runs at one position per row (last_index)
        got = sess.run(["logits"], {**feeds, "last_index": np.array([j, 2 - j])})[0]
        assert got.shape == (2, 1, ref.shape[-1])
        np.testing.assert_allclose(got[:, 0], ref[[0, 1], [6 + j, 8 - j]], atol=1e-4)
    np.testing.assert_allclose(first["logits"][:, 0], ref[:, 5], atol=1e-4)


def test_llama_int8(llama_int8, llama_fp32):
    m = llama_int8.manifest
    assert m["precision"] == "int8"
    assert m["sizes"]["model.onnx"] < 0.6 * llama_fp32.manifest["sizes"]["model.onnx"]
    assert m["validation"]["passed"] and not m["validation"]["tolerance"]["greedy_gated"]
