"""T5 export: directory contract, validation, and the multi-token decoder with past, checked
directly with onnxruntime against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.export.conftest import leftovers

pytestmark = pytest.mark.slow


def _sess(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _run(sess, feeds) -> dict:
    """Outputs by name; logits at every fed position (one call per position via ``last_index``)."""
    names = [o.name for o in sess.get_outputs()]
    if "last_index" in feeds:
        return dict(zip(names, sess.run(None, feeds)))
    b, s = feeds["input_ids"].shape
    calls = [dict(zip(names, sess.run(None, {**feeds, "last_index": np.full(b, j, np.int64)}))) for j in range(s)]
    return {**calls[-1], "logits": np.concatenate([c["logits"] for c in calls], 1)}


def test_t5_fp32_directory_and_manifest(t5_fp32, tiny_t5_dir, registry):
    out = t5_fp32.out_dir
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "vedit-export" and m["version"] == 2
    assert (m["family"], m["precision"], m["opset"]) == ("t5", "fp32", 18)
    assert m["files"] == {"encoder": "encoder_model.onnx", "decoder": "decoder_model.onnx",
                          "decoder_with_past": "decoder_with_past_model.onnx"}
    for name in m["files"].values():
        assert (out / name).stat().st_size == m["sizes"][name]
    io = m["io"]
    assert io["encoder_model.onnx"] == {"inputs": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state"]}
    assert set(io["decoder_model.onnx"]["inputs"]) == {"input_ids", "encoder_attention_mask", "encoder_hidden_states",
                                                       "last_index"}
    assert "present.1.encoder.value" in io["decoder_model.onnx"]["outputs"]
    past_in = io["decoder_with_past_model.onnx"]["inputs"]
    assert "past_key_values.0.encoder.key" in past_in and "past_key_values.1.decoder.value" in past_in
    assert "attention_mask" in past_in  # the decoder self-attention mask: rows of different lengths join a call
    assert "last_index" in past_in  # the lm_head runs on each row's last fed position only
    assert not any("encoder" in o for o in io["decoder_with_past_model.onnx"]["outputs"])
    # source, versions, validation
    import hashlib

    digest = hashlib.sha256((tiny_t5_dir / "model.safetensors").read_bytes()).hexdigest()
    assert m["source"] == {"model_dir": str(tiny_t5_dir.resolve()), "adapter_dir": None,
                           "sha256": {"model.safetensors": digest}}
    assert set(m["versions"]) >= {"torch", "transformers", "optimum", "onnx", "onnxruntime", "peft", "vedit"}
    v = m["validation"]
    assert v["passed"] and v["precision"] == "fp32" and v["tolerance"]["logits_gated"]
    assert v["max_abs_diff"]["decoder_model.onnx:logits"] < 1e-3
    assert v["greedy"]["identical"] + v["greedy"]["ties"] == v["greedy"]["sequences"] == 3 * 2
    assert v["intents"] == ["golden hour", "cold tone"]
    # packaged files: registry snapshot, tokenizer byte for byte, configs
    snapshot = json.loads((out / "registry.json").read_text())
    assert snapshot == {**registry.raw, "prompt": {"kind": "vedit", "template": "", "eos_token": "", "source": ""}}
    # the tools file: carried (the package's default here), its hash and the prompt in the manifest
    assert json.loads((out / "tools.json").read_text()) == registry.functions
    assert m["tools"]["sha256"] == hashlib.sha256((out / "tools.json").read_bytes()).hexdigest()
    assert m["prompt"]["sample_input"]["adjust"] == registry.prompt("adjust", "golden hour", "t5")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"):
        assert (out / name).read_bytes() == (tiny_t5_dir / name).read_bytes()
    assert json.loads((out / "config.json").read_text())["model_type"] == "t5"
    assert (out / "generation_config.json").exists()
    assert not (out / ".staging").exists() and not leftovers(out.parent)


def test_t5_with_past_decoder_takes_several_tokens(t5_fp32, tiny_t5_dir):
    """3 new tokens in one call == PyTorch == 3 single-token calls."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out = t5_fp32.out_dir
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    enc = tok(["golden hour", "a much longer request about a cold blue winter morning"], padding=True,
              return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    dec = np.array([[0, 17, 42, 99, 7], [0, 5, 6, 300, 8]], dtype=np.int64)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    decoder_input_ids=torch.from_numpy(dec)).logits.numpy()

    hidden = _sess(out / "encoder_model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})[0]
    first = _sess(out / "decoder_model.onnx")
    res = _run(first, {"input_ids": dec[:, :2], "encoder_attention_mask": mask, "encoder_hidden_states": hidden})
    np.testing.assert_allclose(res["logits"], ref[:, :2], atol=2e-4)
    past = {k.replace("present", "past_key_values"): v for k, v in res.items() if k.startswith("present")}
    with_past = _sess(out / "decoder_with_past_model.onnx")

    ones = np.ones((2, 5), dtype=np.int64)  # decoder self-attention mask: past + new, no holes
    multi = _run(with_past, {"input_ids": dec[:, 2:], "encoder_attention_mask": mask, "attention_mask": ones, **past})
    assert multi["logits"].shape == (2, 3, ref.shape[-1])
    np.testing.assert_allclose(multi["logits"], ref[:, 2:], atol=2e-4)
    assert multi["present.0.decoder.key"].shape[2] == 5

    singles, p = [], dict(past)
    for j in range(2, 5):
        o = _run(with_past, {"input_ids": dec[:, j:j + 1], "encoder_attention_mask": mask,
                             "attention_mask": ones[:, : j + 1], **p})
        p.update({k.replace("present", "past_key_values"): v for k, v in o.items() if k.startswith("present")})
        singles.append(o["logits"])
    np.testing.assert_allclose(np.concatenate(singles, 1), multi["logits"], atol=1e-5)


def test_t5_decoders_compute_logits_at_each_rows_last_position(t5_fp32, tiny_t5_dir):
    """Rows with runs of different lengths in one call (right-padded): with ``last_index`` each
    decoder returns (rows, 1, vocab), PyTorch's logits at each row's own last real position."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out = t5_fp32.out_dir
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).eval()
    enc = AutoTokenizer.from_pretrained(tiny_t5_dir)(["golden hour", "a cold blue winter morning", "neon"],
                                                     padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    dec = np.array([[0, 17, 42, 99, 7], [0, 5, 6, 300, 8], [0, 9, 10, 11, 12]], dtype=np.int64)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    decoder_input_ids=torch.from_numpy(dec)).logits.numpy()
    hidden = _sess(out / "encoder_model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})[0]
    first = _sess(out / "decoder_model.onnx")
    res = _run(first, {"input_ids": dec[:, :2], "encoder_attention_mask": mask, "encoder_hidden_states": hidden,
                       "last_index": np.array([1, 0, 1])})
    assert res["logits"].shape == (3, 1, ref.shape[-1])
    np.testing.assert_allclose(res["logits"][:, 0], ref[[0, 1, 2], [1, 0, 1]], atol=2e-4)
    past = {k.replace("present", "past_key_values"): v for k, v in res.items() if k.startswith("present")}
    last = np.array([2, 0, 1])  # runs of 3, 1 and 2 tokens, right-padded to 3
    got = _run(_sess(out / "decoder_with_past_model.onnx"),
               {"input_ids": dec[:, 2:], "encoder_attention_mask": mask, "attention_mask": np.ones((3, 5), np.int64),
                "last_index": last, **past})["logits"]
    assert got.shape == (3, 1, ref.shape[-1])
    np.testing.assert_allclose(got[:, 0], ref[np.arange(3), 2 + last], atol=2e-4)


def test_t5_with_past_decoder_honours_the_decoder_mask(t5_fp32, tiny_t5_dir):
    """Rows of different lengths share a call with holes in front of the shorter caches: masked
    holes change nothing (== PyTorch on the row alone), unmasked ones do (the mask reaches the graph)."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out = t5_fp32.out_dir
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir).eval()
    enc = AutoTokenizer.from_pretrained(tiny_t5_dir)(["golden hour"], return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    dec = np.array([[0, 17, 42, 99, 7]], dtype=np.int64)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    decoder_input_ids=torch.from_numpy(dec)).logits.numpy()
    hidden = _sess(out / "encoder_model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})[0]
    first = _sess(out / "decoder_model.onnx")
    res = _run(first, {"input_ids": dec[:, :2], "encoder_attention_mask": mask, "encoder_hidden_states": hidden})
    holes = 3
    past = {}
    for k, v in res.items():
        if k.startswith("present"):
            if ".decoder." in k:  # a hole is any finite value: these are another row's keys/values
                v = np.concatenate([np.random.default_rng(0).standard_normal(v.shape[:2] + (holes,) + v.shape[3:]).astype(v.dtype), v], 2)
            past[k.replace("present", "past_key_values")] = v
    with_past = _sess(out / "decoder_with_past_model.onnx")
    feeds = {"input_ids": dec[:, 2:], "encoder_attention_mask": mask, **past}
    masked = np.array([[0] * holes + [1] * 5], dtype=np.int64)
    got = _run(with_past, {**feeds, "attention_mask": masked})["logits"]
    np.testing.assert_allclose(got, ref[:, 2:], atol=2e-4)
    unmasked = _run(with_past, {**feeds, "attention_mask": np.ones_like(masked)})["logits"]
    assert np.abs(unmasked - ref[:, 2:]).max() > 1e-2


def test_t5_int8_smaller_and_reported(t5_int8, t5_fp32):
    m = t5_int8.manifest
    assert m["precision"] == "int8" and m["files"] == t5_fp32.manifest["files"]
    for name in m["files"].values():
        assert m["sizes"][name] < 0.6 * t5_fp32.manifest["sizes"][name]
    v = m["validation"]
    assert v["passed"] and not v["tolerance"]["logits_gated"] and not v["tolerance"]["greedy_gated"]
    assert v["tolerance"]["atol"] is None  # unlimited, written as null
    assert all(np.isfinite(d) for d in v["max_abs_diff"].values())
    # the weights really are quantized: int8 moves the logits far more than fp32's export noise
    fp32_worst = max(t5_fp32.manifest["validation"]["max_abs_diff"].values())
    assert max(v["max_abs_diff"].values()) > 100 * fp32_worst
    g = v["greedy"]
    assert g["sequences"] == 3 * 2 and g["tokens_compared"] > 0
    assert g["token_agreement"] == pytest.approx(g["tokens_agreeing"] / g["tokens_compared"])
    assert any("not gated" in n for n in v["notes"])
    import onnx

    ops = {n.op_type for n in onnx.load(str(t5_int8.out_dir / "decoder_with_past_model.onnx")).graph.node}
    assert "MatMulNBits" in ops and "DynamicQuantizeLinear" not in ops


def test_export_is_current_only_for_the_same_weights(t5_fp32, tiny_t5_dir, tmp_path):
    """The main job reuses an export only when the manifest's source hashes match the weights now."""
    import shutil

    from transformers import AutoTokenizer

    from vedit.export.checks import export_is_current
    from vedit.students.models import new_t5

    assert export_is_current(t5_fp32.out_dir, tiny_t5_dir)
    retrained = tmp_path / "retrained"
    shutil.copytree(tiny_t5_dir, retrained)
    new_t5(len(AutoTokenizer.from_pretrained(tiny_t5_dir)), "tiny", seed=123).save_pretrained(retrained)
    assert not export_is_current(t5_fp32.out_dir, retrained)
    assert not export_is_current(tmp_path / "missing", tiny_t5_dir)


def test_export_of_older_graphs_is_not_current(t5_fp32, tmp_path):
    """Same weights, but graphs written by an older vedit (another revision in the manifest): export again."""
    import json
    import shutil

    from vedit.export.checks import export_is_current

    old = tmp_path / "old-graphs"
    shutil.copytree(t5_fp32.out_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    source = manifest["source"]["model_dir"]
    assert export_is_current(old, source)
    manifest["graphs"] = "optimum (an older revision)"
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert not export_is_current(old, source)
    del manifest["graphs"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert not export_is_current(old, source)


def test_export_for_other_tools_or_an_old_registry_is_not_current(t5_fp32, tmp_path):
    """Same weights and graphs, but other tools (or a registry format this vedit no longer reads): export again."""
    import json
    import shutil

    from vedit.export.checks import export_is_current
    from vedit.export.manifest import file_hashes
    from vedit.registry import load_registry

    old = tmp_path / "other-tools"
    shutil.copytree(t5_fp32.out_dir, old)
    source = json.loads((old / "manifest.json").read_text())["source"]["model_dir"]
    assert export_is_current(old, source)
    raw = json.loads((old / "registry.json").read_text())
    raw["tools"][2]["function"]["parameters"]["properties"]["intensity"]["maximum"] = 50
    (old / "registry.json").write_text(json.dumps(raw))
    manifest = json.loads((old / "manifest.json").read_text())  # an export made for these tools, not a
    manifest["sha256"] = file_hashes(old)                        # tampered one (which is never current)
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert not export_is_current(old, source)
    assert export_is_current(old, source, registry=load_registry(old / "registry.json"))
    (old / "registry.json").write_text(json.dumps({"version": 1, "tools": [], "preset_sets": {}}))
    assert not export_is_current(old, source)
