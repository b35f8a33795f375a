"""The fused Llama graph (vedit.export.fuse) against PyTorch: rows with masked holes, explicit
positions, multi-token feeds after a past, a cached prefix placed right-aligned; and the export path
that uses it (fp32 and int8) against optimum's unfused graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _torch_logits(model, ids, mask, pos):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     position_ids=torch.from_numpy(pos)).logits.numpy()


@pytest.fixture(scope="module")
def gqa_llama(tmp_path_factory):
    """A small random Llama with grouped KV heads (6 query heads over 2 KV heads) and its fused graph."""
    from transformers import LlamaConfig, LlamaForCausalLM
    import torch

    from vedit.export import fuse

    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=300, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("fused") / "model.onnx"
    fuse.export_fused(model, path)
    return model, _session(path)


def _run(sess, feeds):
    """Outputs by name; the fused graph's logits at every fed position (one call per position, each
    gathering it via ``last_index``), so they compare with PyTorch's full logits."""
    names = [o.name for o in sess.get_outputs()]
    if "last_index" in feeds or "last_index" not in {i.name for i in sess.get_inputs()}:
        return dict(zip(names, sess.run(None, feeds)))
    b, s = feeds["input_ids"].shape
    calls = [dict(zip(names, sess.run(None, {**feeds, "last_index": np.full(b, j, np.int64)}))) for j in range(s)]
    out = calls[-1]
    out["logits"] = np.concatenate([c["logits"] for c in calls], 1)
    return out


def _past(out):
    return {k.replace("present", "past_key_values"): v for k, v in out.items() if k.startswith("present")}


def test_prefill_then_runs_of_different_lengths_with_holes(gqa_llama):
    """Left-padded prompts, then runs of 2, 3 and 1 tokens right-padded in one call: every real position's
    logits equal PyTorch's with the same mask and positions, and no NaN reaches the cache."""
    model, sess = gqa_llama
    ids = np.array([[0, 0, 3, 40, 41, 42], [3, 50, 51, 52, 53, 54], [0, 3, 7, 8, 9, 10]], dtype=np.int64)
    mask = (np.arange(6)[None] >= np.array([[2], [0], [1]])).astype(np.int64)
    new = np.array([[60, 61, 0], [70, 71, 72], [80, 0, 0]], dtype=np.int64)
    new_mask = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=np.int64)
    full_ids, full_mask = np.concatenate([ids, new], 1), np.concatenate([mask, new_mask], 1)
    pos = np.where(full_mask == 0, 1, full_mask.cumsum(-1) - 1)
    ref = _torch_logits(model, full_ids, full_mask, pos)
    empty = {i.name: np.zeros((3, 2, 0, 16), np.float32) for i in sess.get_inputs() if i.name.startswith("past")}
    first = _run(sess, {"input_ids": ids, "attention_mask": mask, "position_ids": pos[:, :6], **empty})
    assert not any(np.isnan(v).any() for v in first.values())
    real = mask.astype(bool)
    np.testing.assert_allclose(first["logits"][real], ref[:, :6][real], atol=1e-5)
    second = _run(sess, {"input_ids": new, "attention_mask": full_mask, "position_ids": pos[:, 6:], **_past(first)})
    fed = new_mask.astype(bool)
    np.testing.assert_allclose(second["logits"][fed], ref[:, 6:][fed], atol=1e-5)
    # One call, each row's own last position (runs of 2, 3 and 1): logits (rows, 1, vocab) at those positions.
    last = fed.sum(1) - 1
    once = _run(sess, {"input_ids": new, "attention_mask": full_mask, "position_ids": pos[:, 6:], **_past(first),
                       "last_index": last})["logits"]
    assert once.shape == (3, 1, ref.shape[-1])
    np.testing.assert_allclose(once[:, 0], ref[np.arange(3), 6 + last], atol=1e-5)
    # A third call after the padded run: the holes stay masked, positions count real tokens only.
    third_ids = np.array([[90], [91], [92]], dtype=np.int64)
    mask3 = np.concatenate([full_mask, np.ones((3, 1), np.int64)], 1)
    pos3 = full_mask.sum(1, keepdims=True)
    got = _run(sess, {"input_ids": third_ids, "attention_mask": mask3, "position_ids": pos3, **_past(second)})["logits"]
    for r in range(3):  # each row alone, without any padding, in PyTorch
        keep = mask3[r].astype(bool)
        row = np.concatenate([full_ids[r], third_ids[r]])[keep][None]
        alone = _torch_logits(model, row, np.ones_like(row), np.arange(row.shape[1])[None])
        np.testing.assert_allclose(got[r, 0], alone[0, -1], atol=1e-5)


def test_prefix_cache_right_aligned(gqa_llama):
    """A prefix's cache computed alone, placed right-aligned behind masked holes, continues like a full prefill."""
    model, sess = gqa_llama
    prefix = np.array([[3, 11, 12, 13]], dtype=np.int64)
    empty1 = {i.name: np.zeros((1, 2, 0, 16), np.float32) for i in sess.get_inputs() if i.name.startswith("past")}
    cached = _run(sess, {"input_ids": prefix, "attention_mask": np.ones((1, 4), np.int64),
                         "position_ids": np.arange(4)[None], **empty1})
    past = {k: np.concatenate([np.zeros((1, 2, 2, 16), np.float32), v], axis=2) for k, v in _past(cached).items()}
    rest = np.array([[20, 21]], dtype=np.int64)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 1]], dtype=np.int64)
    got = _run(sess, {"input_ids": rest, "attention_mask": mask, "position_ids": np.array([[4, 5]]), **past})["logits"]
    full = np.concatenate([prefix, rest], 1)
    ref = _torch_logits(model, full, np.ones_like(full), np.arange(6)[None])
    np.testing.assert_allclose(got[0], ref[0, 4:], atol=1e-5)


def test_unsupported_models_keep_optimum_graph(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from vedit.errors import ExportError
    from vedit.export import fuse

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, attention_bias=True)
    model = LlamaForCausalLM(cfg).eval()
    assert "bias" in fuse.unsupported_reason(model)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"optimum's graph")
    assert fuse.replace_with_fused(model, path) is False and path.read_bytes() == b"optimum's graph"
    with pytest.raises(ExportError, match="no fused graph"):
        fuse.build(model)


def test_export_is_fused_and_matches_unfused(llama_fp32, llama_int8, export_root, tiny_llama_dir):
    """The exporter writes the fused graph (fp32 and int8, both validated against PyTorch by the export);
    on one batch with holes its logits equal optimum's unfused export's."""
    import onnx

    from support import quick_export

    for res in (llama_fp32, llama_int8):
        ops = {n.op_type for n in onnx.load(str(res.out_dir / "model.onnx"), load_external_data=False).graph.node}
        assert {"Attention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization"} <= ops
        assert res.manifest["validation"]["passed"]
    v = llama_fp32.manifest["validation"]
    assert max(v["max_abs_diff"].values()) < 1e-4
    assert v["greedy"]["identical"] + v["greedy"]["ties"] == v["greedy"]["sequences"]
    unfused = quick_export(tiny_llama_dir, export_root / "llama-unfused", family="llama", fused=False)
    ops = {n.op_type for n in onnx.load(str(unfused.out_dir / "model.onnx"), load_external_data=False).graph.node}
    assert "Attention" not in ops and "Softmax" in ops
    fused, plain = _session(llama_fp32.out_dir / "model.onnx"), _session(unfused.out_dir / "model.onnx")
    kv = [i for i in plain.get_inputs() if i.name.startswith("past")]
    rng = np.random.default_rng(0)
    past = {i.name: rng.standard_normal((2, i.shape[1], 5, i.shape[3])).astype(np.float32) for i in kv}
    feeds = {"input_ids": np.array([[5, 6, 7], [8, 9, 0]]), "attention_mask": np.array([[0, 1, 1, 1, 1, 1, 1, 1],
                                                                                         [1, 1, 0, 1, 1, 1, 1, 0]]),
             "position_ids": np.array([[4, 5, 6], [4, 5, 6]]), **past}
    a, b = _run(fused, feeds), _run(plain, feeds)
    real = feeds["attention_mask"][:, -3:].astype(bool)
    np.testing.assert_allclose(a["logits"][real], b["logits"][real], atol=1e-4)
    for name in b:
        if name.startswith("present"):
            np.testing.assert_allclose(a[name], b[name], atol=1e-5)


def test_large_models_write_external_data_tensor_by_tensor(gqa_llama, tmp_path, monkeypatch):
    """Over the size limit the weights go to ``model.onnx_data`` (found by the exporter's mover) and the
    graph computes the same logits as the inline one."""
    from vedit.export import fuse
    from vedit.export.onnx_common import external_data_files

    model, inline = gqa_llama
    monkeypatch.setattr(fuse, "EXTERNAL_DATA_BYTES", 0)
    path = tmp_path / "model.onnx"
    fuse.export_fused(model, path)
    assert external_data_files(path) == ["model.onnx_data"]
    assert path.stat().st_size < 64 * 1024 < (tmp_path / "model.onnx_data").stat().st_size
    empty = {i.name: np.zeros((1, 2, 0, 16), np.float32) for i in inline.get_inputs() if i.name.startswith("past")}
    feeds = {"input_ids": np.array([[3, 9, 27]]), "attention_mask": np.ones((1, 3), np.int64),
             "position_ids": np.arange(3)[None], **empty}
    np.testing.assert_array_equal(_run(_session(path), feeds)["logits"], _run(inline, feeds)["logits"])
