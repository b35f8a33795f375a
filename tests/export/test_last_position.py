"""The last-position graph pass (vedit.export.last_position) on a small lm_head graph, run through the
runtime's Session with and without IO binding: each row's logits at its own position, checked
against numpy on the full logits."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from vedit.decoding.session import CPU, LAST_INDEX, Session
from vedit.errors import ExportError
from vedit.export.last_position import gather_last, gather_last_in_file

D, V = 8, 11
RNG = np.random.default_rng(3)
W = RNG.standard_normal((D, V)).astype(np.float32)
SCALE = np.float32(D**-0.5)


def _head_graph(op: str = "MatMul"):
    """hidden (batch, sequence, D) -> tied-T5-like scaling (Mul) -> lm_head -> logits (batch, sequence, V)."""
    nodes = [helper.make_node("Mul", ["hidden", "scale"], ["scaled"], name="/Mul"),
             helper.make_node(op, ["scaled", "lm_head.weight"] if op == "MatMul" else ["scaled", "scaled"], ["logits"],
                              name="/lm_head/MatMul")]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch_size", "decoder_sequence_length", D])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "decoder_sequence_length",
                                                                     V if op == "MatMul" else D])],
        initializer=[numpy_helper.from_array(W, "lm_head.weight"), numpy_helper.from_array(SCALE, "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("io_binding", [False, True])
def test_rows_get_logits_at_their_own_last_position(tmp_path, io_binding):
    import onnx

    path = tmp_path / "head.onnx"
    onnx.save(_head_graph(), str(path))
    gather_last_in_file(path)
    gather_last_in_file(path)  # applying it twice changes nothing
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input].count(LAST_INDEX) == 1
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert (out_dims[0].dim_param, out_dims[1].dim_param) == ("batch_size", "positions")
    onnx.checker.check_model(model, full_check=True)

    session = Session(path, providers=[CPU], threads=1, io_binding=io_binding)
    assert session.gathers_last
    hidden = RNG.standard_normal((3, 5, D)).astype(np.float32)
    last = np.array([4, 0, 2])  # runs of 5, 1 and 3 tokens, right-padded to 5
    out = session.run({"hidden": hidden}, last=last)
    full = (hidden * SCALE) @ W  # numpy: every position, then pick
    assert out["logits"].shape == (3, 1, V)
    np.testing.assert_allclose(out["last_logits"], full[np.arange(3), last], rtol=1e-5, atol=1e-6)
    assert out["last_logits"].dtype == np.float32


def test_a_graph_without_an_lm_head_matmul_is_refused():
    with pytest.raises(ExportError, match="not the lm_head MatMul"):
        gather_last(_head_graph("Mul"))


@pytest.mark.parametrize("io_binding", [False, True])
def test_several_positions_per_row_for_drafts(tmp_path, io_binding):
    """``last`` of shape (rows, k): each row's logits at its k positions (a draft verified in one call),
    against numpy on the full logits; the same graph still takes one position per row."""
    import onnx

    path = tmp_path / "head.onnx"
    onnx.save(_head_graph(), str(path))
    gather_last_in_file(path)
    session = Session(path, providers=[CPU], threads=1, io_binding=io_binding)
    assert session.gathers_many
    hidden = RNG.standard_normal((3, 5, D)).astype(np.float32)
    last = np.array([[0, 2, 4], [0, 0, 0], [1, 2, 2]])
    out = session.run({"hidden": hidden}, last=last)
    full = (hidden * SCALE) @ W
    assert out["last_logits"].shape == (3, 3, V)
    np.testing.assert_allclose(out["last_logits"], full[np.arange(3)[:, None], last], rtol=1e-5, atol=1e-6)
    one = session.run({"hidden": hidden}, last=np.array([4, 0, 2]))["last_logits"]
    np.testing.assert_allclose(one, full[np.arange(3), [4, 0, 2]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("io_binding", [False, True])
def test_full_logits_sessions_also_give_several_positions(tmp_path, io_binding):
    """An older export without ``last_index`` (full logits): the runtime's own gather, k per row."""
    import onnx

    path = tmp_path / "head.onnx"
    onnx.save(_head_graph(), str(path))
    session = Session(path, providers=[CPU], threads=1, io_binding=io_binding)
    assert session.gathers_many and not session.gathers_last
    hidden = RNG.standard_normal((2, 4, D)).astype(np.float32)
    last = np.array([[3, 1], [0, 2]])
    got = session.run({"hidden": hidden}, last=last)["last_logits"]
    np.testing.assert_allclose(got, ((hidden * SCALE) @ W)[np.arange(2)[:, None], last], rtol=1e-5, atol=1e-6)
