"""The tiny "last position" graphs (vedit/decoding/ops/*.onnx) that pick each row's last logits on the
device, so an IO-bound call brings back (rows, vocab) instead of (rows, tokens, vocab).

They are checked in (the runtime has no ``onnx`` package); this file builds them and checks that the
shipped files are exactly these graphs. Regenerate with ``python tests/decoding/test_last_logits.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

OPS = Path(__file__).resolve().parents[2] / "vedit" / "decoding" / "ops"
DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}


def build(dtype: str) -> onnx.ModelProto:
    """logits (rows, tokens, vocab) + flat index (rows,) -> (rows, vocab) float32."""
    logits = helper.make_tensor_value_info("logits", DTYPES[dtype], ["rows", "tokens", "vocab"])
    index = helper.make_tensor_value_info("index", TensorProto.INT64, ["rows"])
    out = helper.make_tensor_value_info("last", TensorProto.FLOAT, ["rows", "vocab"])
    nodes = [helper.make_node("Flatten", ["logits"], ["flat"], axis=2),  # (rows * tokens, vocab)
             helper.make_node("Gather", ["flat", "index"], ["picked"], axis=0),
             helper.make_node("Cast", ["picked"], ["last"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, f"last_logits_{dtype}", [logits, index], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vedit")
    model.ir_version = 8  # readable by onnxruntime >= 1.14 (the GPU image's 1.23 included)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_shipped_graph_is_the_built_one(dtype):
    shipped = onnx.load(str(OPS / f"last_logits_{dtype}.onnx"))
    assert shipped.graph == build(dtype).graph and shipped.ir_version == 8


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_picks_each_rows_last_position(dtype):
    from vedit.decoding.session import CPU, LastLogits

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 5, 11)).astype(dtype)
    last = np.array([4, 0, 2])
    got = LastLogits(np.dtype(dtype), "cpu", 0, [CPU]).pick(logits, last)
    np.testing.assert_array_equal(got, logits[np.arange(3), last].astype(np.float32))
    assert got.dtype == np.float32


if __name__ == "__main__":
    OPS.mkdir(exist_ok=True)
    for d in DTYPES:
        onnx.save(build(d), str(OPS / f"last_logits_{d}.onnx"))
