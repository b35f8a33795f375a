"""The tiny "last position" graphs (vedit/decoding/ops/*.onnx) that pick each row's last logits on the
device, so an IO-bound call brings back (rows, vocab) instead of (rows, tokens, vocab).

They are checked in (the runtime has no ``onnx`` package); this file builds them and checks that the
shipped files are exactly these graphs. Regenerate with ``python tests/decoding/test_last_logits.py``.
"""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ops_graphs import DTYPES, op_model, save_all, shipped


def build(dtype: str) -> onnx.ModelProto:
    """logits (rows, tokens, vocab) + flat index (rows,) -> (rows, vocab) float32."""
    logits = helper.make_tensor_value_info("logits", DTYPES[dtype], ["rows", "tokens", "vocab"])
    index = helper.make_tensor_value_info("index", TensorProto.INT64, ["rows"])
    out = helper.make_tensor_value_info("last", TensorProto.FLOAT, ["rows", "vocab"])
    nodes = [helper.make_node("Flatten", ["logits"], ["flat"], axis=2),  # (rows * tokens, vocab)
             helper.make_node("Gather", ["flat", "index"], ["picked"], axis=0),
             helper.make_node("Cast", ["picked"], ["last"], to=TensorProto.FLOAT)]
    return op_model(nodes, f"last_logits_{dtype}", [logits, index], [out])


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_shipped_graph_is_the_built_one(dtype):
    got = shipped("last_logits", dtype)
    assert got.graph == build(dtype).graph and got.ir_version == 8


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
    save_all("last_logits", build)
