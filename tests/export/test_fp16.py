"""fp16 exports: fp16 KV I/O, fp32 logits and normalisation, a protection that cannot silently match
nothing, and external data decided by the real serialized size (exercised by lowering the threshold)."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from support import quick_export
from vedit.decoding import Predictor
from vedit.decoding.session import CPU, Session
from vedit.errors import ExportError
from vedit.export import quantize

DECODERS = {"t5": ["decoder_model.onnx", "decoder_with_past_model.onnx"], "llama": ["model.onnx"]}


@pytest.fixture(scope="module", params=["t5", "llama"])
def fp16_export(request, export_root):
    family = request.param
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    return family, quick_export(model_dir, export_root / f"{family}-fp16", family=family, precision="fp16")


def _elem_types(values) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


def test_kv_io_is_fp16_and_logits_fp32(fp16_export):
    family, result = fp16_export
    for name in DECODERS[family]:
        g = onnx.load(str(result.out_dir / name), load_external_data=False).graph
        ins, outs = _elem_types(g.input), _elem_types(g.output)
        kv = {k: t for k, t in {**ins, **outs}.items() if k.startswith(("past_key_values.", "present."))}
        assert kv and set(kv.values()) == {TensorProto.FLOAT16}, (name, kv)
        assert outs["logits"] == TensorProto.FLOAT


def test_normalisation_and_protected_nodes_stay_fp32(fp16_export):
    family, result = fp16_export
    for name in DECODERS[family]:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(result.out_dir / name)))
        types = _elem_types(list(model.graph.value_info) + list(model.graph.output))
        blocked = quantize.fp16_blocked_nodes(model, family)
        norm_ops = [n for n in model.graph.node if n.name in blocked and n.op_type in ("Pow", "ReduceMean", "Sqrt")]
        assert norm_ops, f"{name}: no normalisation node found"
        for node in norm_ops:
            assert types.get(node.output[0]) == TensorProto.FLOAT, (node.name, types.get(node.output[0]))
    assert result.validation.passed


def test_fp16_export_serves_valid_answers(fp16_export):
    family, result = fp16_export
    p = Predictor.load(result.out_dir, threads=1)
    out = p.predict(["golden hour", "😈"])
    assert all(set(pred.calls) == set(p.registry.tool_names) for pred in out)
    notes = " ".join(result.validation.to_dict().get("notes", []))
    assert "CPU execution provider" in notes or "CUDAExecutionProvider" in notes


def test_unmatched_node_names_are_refused(t5_fp32, tmp_path):
    model = onnx.load(str(t5_fp32.out_dir / "decoder_model.onnx"))
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    src = tmp_path / "renamed.onnx"
    onnx.save(model, str(src))
    with pytest.raises(ExportError, match="no node name contains '/DenseReluDense/wo/'"):
        quantize.to_fp16(src, tmp_path / "out.onnx", family="t5")
    with pytest.raises(ExportError, match="RMSNorm would run in fp16"):
        quantize.fp16_blocked_nodes(model, "llama")


def _first_call_logits(path) -> np.ndarray:
    s = Session(path, providers=[CPU], threads=1)
    feeds = {}
    for name, spec in s.inputs.items():
        if name == "input_ids":
            feeds[name] = np.array([[0, 5, 7]], dtype=np.int64)
        elif name == "encoder_attention_mask":
            feeds[name] = np.ones((1, 4), dtype=np.int64)
        elif name == "encoder_hidden_states":
            feeds[name] = np.random.default_rng(0).standard_normal((1, 4, spec.shape[2])).astype(np.float32)
    return s.run(feeds, last=np.array([2]))["logits"]


@pytest.mark.parametrize("convert", ["fp16", "int8"])
def test_external_data_by_serialized_size(t5_fp32, tmp_path, monkeypatch, convert):
    src = t5_fp32.out_dir / "decoder_model.onnx"
    fn = (lambda a, b: quantize.to_fp16(a, b, family="t5")) if convert == "fp16" else (lambda a, b: quantize.to_nbits(a, b, bits=8))
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir(), large.mkdir()
    fn(src, small / src.name)
    assert not (small / (src.name + "_data")).exists()
    size = onnx.load(str(small / src.name)).ByteSize()
    monkeypatch.setattr(quantize, "EXTERNAL_DATA_THRESHOLD", size // 2)  # the converted model is over it
    fn(src, large / src.name)
    data = large / (src.name + "_data")
    assert data.is_file() and data.stat().st_size > 0 and (large / src.name).stat().st_size < size
    assert sorted(p.name for p in large.iterdir()) == [src.name, data.name]  # no scratch left behind
    np.testing.assert_array_equal(_first_call_logits(large / src.name), _first_call_logits(small / src.name))
    # at the limit (and the source too, so shape inference runs as in the first call): one file
    monkeypatch.setattr(quantize, "EXTERNAL_DATA_THRESHOLD", max(size, onnx.load(str(src)).ByteSize()))
    shutil.rmtree(large), large.mkdir()
    fn(src, large / src.name)
    assert not (large / (src.name + "_data")).exists()
