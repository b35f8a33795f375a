"""Lower-precision copies of an fp32 export: fp16 (GPU serving) and int8 (CPU / edge).

- int8: ``onnxruntime.quantization.quantize_dynamic``, int8 weights per output channel, activations
  quantized at run time, and ``reduce_range=True`` (7-bit weights): on x86 CPUs without VNNI (AVX2
  only, like the CI machines) onnxruntime's u8s8 kernels saturate int16 intermediate sums, which with
  full-range per-channel weights gave logit errors 15x larger than per-tensor on a single MatMul
  (0.29 vs 0.019); with ``reduce_range`` per-channel is back to 0.019. On random or lightly trained
  weights it does not reproduce fp32 greedy output, so its validation reports diffs and token
  agreement without failing on them; its quality is judged by the offline metrics (bench).
- fp16: ``onnxruntime.transformers.float16``. The KV cache inputs/outputs (and the encoder states
  handed to the decoders) become fp16 too: with fp32 I/O every decoder call converts, and on a GPU
  moves, twice the bytes of the whole cache; only ``logits`` stays fp32 (the grammar's argmax reads
  it). Normalisation stays fp32 for both families (T5 LayerNorm, Llama RMSNorm: the mean of squares
  overflows or loses its small terms in fp16): the nodes are found by name fragments of optimum's
  export, and an export whose names match none of them is refused, so a renamed graph cannot drop
  the protection silently. T5 also overflows in its feed-forward output and residual stream
  (activations beyond 65504), so for T5 the ``wo`` projections (as transformers keeps them in fp32),
  the residual ``Add``s, the norm ops (``Pow``/``ReduceMean``/``Sqrt``/``Div``) and ``Softmax`` stay fp32.
- external data: a protobuf message cannot exceed 2 GB, so a converted model whose serialized size
  (``ModelProto.ByteSize()``, not an estimate from the source size) is over
  :data:`EXTERNAL_DATA_THRESHOLD` is written with its tensors in ``<file>_data`` next to it.
"""

from __future__ import annotations

from pathlib import Path

#: Serialized size above which a model is saved with external data (protobuf's limit is 2 GiB - 1).
#: Tests lower it to exercise the large-model path on tiny models.
EXTERNAL_DATA_THRESHOLD = 2**31 - 1

#: Op types kept in fp32 for T5 (see module docstring); the defaults of the converter are added.
T5_FP16_OP_BLOCK = ("Pow", "ReduceMean", "Sqrt", "Div", "Add", "Softmax")
#: Node-name fragments kept in fp32, per family; every group must match at least one node.
FP16_NODE_BLOCK: dict[str, dict[str, tuple[str, ...]]] = {
    "t5": {
        "feed-forward output projections (wo)": ("/DenseReluDense/wo/",),
        "layer norms": ("layer_norm/",),  # .../layer.N/layer_norm/..., .../final_layer_norm/...
    },
    "llama": {
        "RMSNorm": ("_layernorm/", "/model/norm/"),  # input_/post_attention_layernorm, the final norm
    },
}
#: Graph outputs kept fp32 in fp16 exports (what the decoding loop reads on the host).
FP16_KEEP_IO = ("logits",)


def _is_large(model) -> bool:
    return model.ByteSize() > EXTERNAL_DATA_THRESHOLD


def _save(model, dst: Path) -> None:
    """Save ``model``; its tensors go to ``<dst>_data`` when the serialized size is too large."""
    import onnx

    if _is_large(model):
        onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=dst.name + "_data", size_threshold=1024)
    else:
        onnx.save(model, str(dst))


def to_int8(src: Path, dst: Path, *, per_channel: bool = True, reduce_range: bool = True) -> None:
    """Dynamic int8 quantization of the MatMul weights (int8, per output channel by default).

    The quantizer writes to a scratch directory with external data (it cannot know the size in
    advance); the result is then saved by its real serialized size (:func:`_save`).
    """
    import logging
    import shutil
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    # The quantizer takes any node named "Attention" for its contrib op (QAttention); the fused Llama
    # graph (vedit.export.fuse) has the standard ONNX Attention, which must stay float.
    op_types = [t for t in IntegerOpsRegistry if t != "Attention"]
    # onnxruntime's quantizer logs "consider pre-processing" on the root logger at every call: drop
    # that one record while it runs, without changing the level of a logger the application owns.
    root = logging.getLogger()
    hush = _DropRecords("pre-processing before quantization")
    root.addFilter(hush)
    scratch = Path(tempfile.mkdtemp(prefix=".int8-", dir=dst.parent))
    try:
        quantize_dynamic(
            str(src),
            str(scratch / dst.name),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types,
            use_external_data_format=True,
        )
        _save(onnx.load(str(scratch / dst.name), load_external_data=True), dst)
    finally:
        root.removeFilter(hush)
        shutil.rmtree(scratch, ignore_errors=True)


class _DropRecords:
    """A logging filter that drops records whose message contains ``fragment``."""

    def __init__(self, fragment: str) -> None:
        self.fragment = fragment

    def filter(self, record) -> bool:
        return self.fragment not in record.getMessage()


def _drop_duplicate_nodes(graph) -> None:
    """The fp16 converter inserts the same Cast twice when one tensor feeds two fp32-kept nodes
    (same name, input and output: an invalid graph for onnxruntime). Keep the first copy."""
    seen: dict[str, bytes] = {}
    keep = []
    for node in graph.node:
        key = node.SerializeToString()
        if node.output and all(o in seen for o in node.output):
            if all(seen[o] == key for o in node.output):
                continue
            raise ValueError(f"fp16 conversion produced two different nodes writing {node.output[0]}")
        for o in node.output:
            seen[o] = key
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def fp16_blocked_nodes(model, family: str, *, source: str = "model") -> list[str]:
    """Names of the nodes kept in fp32 for ``family``; raises when a fragment group matched nothing."""
    from vedit.errors import ExportError

    names = [n.name for n in model.graph.node]
    blocked: list[str] = []
    for what, fragments in FP16_NODE_BLOCK.get(family, {}).items():
        found = [n for n in names if any(f in n for f in fragments)]
        if not found:
            raise ExportError(
                f"fp16 {source}: no node name contains {' or '.join(map(repr, fragments))}, so the {what} would "
                "run in fp16 unprotected; the exporter's node naming changed: update FP16_NODE_BLOCK in "
                "vedit/export/quantize.py"
            )
        blocked += found
    return sorted(set(blocked))


def to_fp16(src: Path, dst: Path, *, family: str) -> list[str]:
    """fp16 weights, compute and KV I/O, fp32 logits and normalisation; T5 keeps its overflow-prone
    ops in fp32. Returns the names of the nodes kept in fp32 by name."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src), load_external_data=True)
    large = _is_large(model)
    if large:
        # The converter needs value_info (types of intermediate tensors) to place its Casts; its own
        # shape inference serializes the model in memory, which fails over 2 GB. Infer on the file
        # instead (next to it, so the external data's relative location still resolves).
        inferred = src.with_name(src.stem + ".inferred.onnx")
        try:
            onnx.shape_inference.infer_shapes_path(str(src), str(inferred))
            model = onnx.load(str(inferred), load_external_data=True)
        finally:
            inferred.unlink(missing_ok=True)
    op_block = list(DEFAULT_OP_BLOCK_LIST)
    if family == "t5":
        op_block += list(T5_FP16_OP_BLOCK)
    node_block = fp16_blocked_nodes(model, family, source=src.name)
    keep_io = [o.name for o in model.graph.output if o.name in FP16_KEEP_IO]
    converted = convert_float_to_float16(
        model,
        keep_io_types=keep_io,
        op_block_list=op_block,
        node_block_list=node_block,
        disable_shape_infer=large,  # done above, on the file
    )
    _drop_duplicate_nodes(converted.graph)
    _save(converted, dst)
    return node_block
