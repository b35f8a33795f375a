"""Graph pass: the lm_head runs on each row's last fed position only (``last_index`` input).

The decoding loop needs the logits of one position per row (the last token of the row's run), but a
traced decoder applies the lm_head (d_model x vocab, the largest MatMul of a small model) to every fed
position: with jump-forward a call feeds several tokens per row. This pass rewrites a decoder graph
so that the hidden state entering the lm_head ``MatMul`` (the node that writes ``logits``; after the
final norm and, for tied T5 heads, the ``d_model**-0.5`` scaling, so whatever comes before it) is
first gathered at ``last_index`` (int64 ``(batch,)``, each row's position in this call):
``GatherND(batch_dims=1)`` then ``Unsqueeze``, so ``logits`` is ``(batch, 1, vocab)``.

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
    """Append the nodes that take ``hidden`` (batch, sequence, d) at ``last_index`` -> (batch, 1, d);
    return the name of the gathered tensor."""
    from onnx import helper, numpy_helper

    axis = f"{prefix}/axis1"
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axis))
    index = f"{prefix}/index"
    picked = f"{prefix}/picked"
    out = f"{prefix}/hidden"
    nodes += [helper.make_node("Unsqueeze", [LAST_INDEX, axis], [index], name=f"{prefix}/Unsqueeze_index"),  # (B, 1)
              helper.make_node("GatherND", [hidden, index], [picked], name=f"{prefix}/GatherND", batch_dims=1),  # (B, d)
              helper.make_node("Unsqueeze", [picked, axis], [out], name=f"{prefix}/Unsqueeze_hidden")]  # (B, 1, d)
    return out


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
    batch = (dims[0].dim_param or "batch_size") if len(dims) else "batch_size"
    new: list = []
    inits: list = []
    gathered = add_gather(new, inits, producer.input[0])
    producer.input[0] = gathered
    at = list(g.node).index(producer)
    for offset, node in enumerate(new):
        g.node.insert(at + offset, node)
    g.initializer.extend(inits)
    g.input.append(helper.make_tensor_value_info(LAST_INDEX, TensorProto.INT64, [batch]))
    if len(dims) == 3:
        dims[1].Clear()
        dims[1].dim_value = 1


def gather_last_in_file(path: Path) -> None:
    """Apply :func:`gather_last` to an ONNX file; external weight files (if any) are left where they are."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    gather_last(model)
    onnx.save(model, str(path))


__all__ = ["LAST_INDEX", "add_gather", "gather_last", "gather_last_in_file"]
