"""The tiny "align rows" graphs (vedit/decoding/ops/align_rows_*.onnx) that rearrange a batched
self-attention cache where it lives (on the device with IO binding): rows that finished leave, each
row's real positions move to the end, common holes are cut (see :mod:`vedit.decoding.seq2seq`).

They are checked in (the runtime has no ``onnx`` package); this file builds them and checks that the
shipped files are exactly these graphs. Regenerate with ``python tests/decoding/test_align_rows.py``.
"""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ops_graphs import DTYPES, op_model, save_all, shipped


def build(dtype: str) -> onnx.ModelProto:
    """cache (rows, heads, positions, dim) + flat shape [-1, dim] + index + output shape -> cache."""
    t = DTYPES[dtype]
    inputs = [helper.make_tensor_value_info("cache", t, ["rows", "heads", "positions", "dim"]),
              helper.make_tensor_value_info("flat_shape", TensorProto.INT64, [2]),
              helper.make_tensor_value_info("index", TensorProto.INT64, ["picked"]),
              helper.make_tensor_value_info("shape", TensorProto.INT64, [4])]
    out = helper.make_tensor_value_info("aligned", t, ["out_rows", "heads", "out_positions", "dim"])
    nodes = [helper.make_node("Reshape", ["cache", "flat_shape"], ["flat"]),  # (rows * heads * positions, dim)
             helper.make_node("Gather", ["flat", "index"], ["picked_rows"], axis=0),
             helper.make_node("Reshape", ["picked_rows", "shape"], ["aligned"])]
    return op_model(nodes, f"align_rows_{dtype}", inputs, [out])


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_shipped_graph_is_the_built_one(dtype):
    got = shipped("align_rows", dtype)
    assert got.graph == build(dtype).graph and got.ir_version == 8


@pytest.mark.parametrize("bound", [False, True], ids=["host", "io-binding"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_moves_each_rows_real_positions_to_the_end(dtype, bound):
    """Against a hand-written numpy reference: rows kept in order, real positions right-aligned."""
    import onnxruntime as ort

    from vedit.decoding.seq2seq import AlignRows
    from vedit.decoding.session import CPU

    rng = np.random.default_rng(0)
    cache = rng.standard_normal((3, 2, 7, 4)).astype(dtype)
    rows = [2, 0]  # batch indices kept (row 1 finished)
    ends, lengths = [5, 7], [5, 3]  # row 2's real positions are 0..4, row 0's are 4..6
    align = AlignRows(np.dtype(dtype), "cpu", 0, [CPU])
    value = ort.OrtValue.ortvalue_from_numpy(cache) if bound else cache
    got = align(value, rows, ends, lengths, width=5)
    got = got.numpy() if isinstance(got, ort.OrtValue) else got
    assert got.shape == (2, 2, 5, 4)
    np.testing.assert_array_equal(got[0], cache[2, :, 0:5])
    np.testing.assert_array_equal(got[1, :, 2:], cache[0, :, 4:7])
    assert np.isfinite(got).all()  # holes hold some real values: masked, never NaN


if __name__ == "__main__":
    save_all("align_rows", build)
