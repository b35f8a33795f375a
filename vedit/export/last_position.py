"""Graph pass: the lm_head runs on each row's last fed position only (``last_index`` input).

The decoding loop needs the logits of one position per row (the last token of the row's run), but a
traced decoder applies the lm_head (d_model x vocab, the largest MatMul of a small model) to every fed
position: with jump-forward a call feeds several tokens per row. This pass rewrites a decoder graph
so that the hidden state entering the lm_head ``MatMul`` (the node that writes ``logits``; after the
final norm and, for tied T5 heads, the ``d_model**-0.5`` scaling, so whatever comes before it) is
first gathered at ``last_index`` (int64, each row's position in this call, or ``k`` positions per
row when a draft is verified: :func:`add_gather`): ``GatherND(batch_dims=1)``, so ``logits`` is
``(batch, k, vocab)``, declared with a symbolic ``positions`` dimension (older exports declare 1 and
take one position per row only).

The input is required once present; the runtime (:class:`vedit.decoding.session.Session`) feeds it
when a session declares it and takes ``logits[:, 0]`` as each row's last logits. Exports without it
keep the full logits and the runtime's separate gather. The fused Llama graph
(:mod:`vedit.export.fuse`) is written with the same nodes directly (:func:`add_gather`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vedit.decoding.session import LAST_INDEX
from vedit.errors import ExportError


def add_gather(nodes: list, inits: list, hidden: str, prefix: str = "/last_position") -> str:
    """Append the nodes that take ``hidden`` (batch, sequence, d) at ``last_index`` -> (batch, k, d);
    return the name of the gathered tensor.

    ``last_index`` is int64 of rank 1: ``batch`` positions (one per row, ``k = 1``: what every
    caller fed before drafts existed) or ``batch * k`` positions, row-major (``k`` per row: a draft
    is verified at several positions of one call). It is reshaped to (batch, k) with the batch taken
    from ``hidden``, so the declared input keeps its rank and older callers are served unchanged."""
    from onnx import helper, numpy_helper

    def const(name: str, values: list[int]) -> str:
        inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    p = f"{prefix}/index"  # integer nodes (the fused graph declares every other activation as float)
    nodes += [helper.make_node("Shape", [hidden], [f"{p}/hidden_shape"], name=f"{p}/Shape"),
              helper.make_node("Gather", [f"{p}/hidden_shape", const("zero", [0])], [f"{p}/batch"], name=f"{p}/Gather",
                               axis=0),
              helper.make_node("Concat", [f"{p}/batch", const("minus_one", [-1])], [f"{p}/rows_by_k"],
                               name=f"{p}/Concat", axis=0),
              helper.make_node("Reshape", [LAST_INDEX, f"{p}/rows_by_k"], [f"{p}/table"], name=f"{p}/Reshape"),  # (B, k)
              helper.make_node("Unsqueeze", [f"{p}/table", const("axis2", [2])], [f"{p}/nd"],
                               name=f"{p}/Unsqueeze")]  # (B, k, 1)
    out = f"{prefix}/hidden"
    nodes.append(helper.make_node("GatherND", [hidden, f"{p}/nd"], [out], name=f"{prefix}/GatherND",
                                  batch_dims=1))  # (B, k, d)
    return out


#: the ``logits`` dimension of an export whose decoders take several positions per row
POSITIONS = "positions"


def gather_last(model, logits: str = "logits") -> None:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place) so ``logits`` is computed at ``last_index`` only."""
    from onnx import TensorProto, helper

    g = model.graph
    if any(i.name == LAST_INDEX for i in g.input):
        return
    producer = next((n for n in g.node if logits in n.output), None)
    if producer is None or producer.op_type != "MatMul":
        found = producer.op_type if producer is not None else "no node"
        raise ExportError(f"graph {g.name!r}: {logits!r} comes from {found}, not the lm_head MatMul this pass expects")
    out = next(o for o in g.output if o.name == logits)
    dims = out.type.tensor_type.shape.dim
    new: list = []
    inits: list = []
    gathered = add_gather(new, inits, producer.input[0])
    producer.input[0] = gathered
    at = list(g.node).index(producer)
    for offset, node in enumerate(new):
        g.node.insert(at + offset, node)
    g.initializer.extend(inits)
    g.input.append(helper.make_tensor_value_info(LAST_INDEX, TensorProto.INT64, [POSITIONS]))
    if len(dims) == 3:
        dims[1].Clear()
        dims[1].dim_param = POSITIONS


def gather_last_in_file(path: Path) -> None:
    """Apply :func:`gather_last` to an ONNX file; external weight files (if any) are left where they are."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    gather_last(model)
    onnx.save(model, str(path))


__all__ = ["LAST_INDEX", "POSITIONS", "add_gather", "gather_last", "gather_last_in_file"]
