"""Lower-precision copies of an fp32 export: fp16 (GPU serving), int8 and int4 (CPU / edge).

- int8 / int4: weight-only quantization to onnxruntime's ``MatMulNBits`` (the form
  onnxruntime-genai ships), 8 or 4 bits per weight with a scale and zero point per block of
  :data:`BLOCK_SIZES` weights along K; at run time each row's activations are quantized on their
  own (:data:`ACCURACY_LEVEL`), so a row's logits depend on that row alone. The dynamic
  quantization used before (``quantize_dynamic``: ``DynamicQuantizeLinear``, one activation scale
  over the whole input tensor) changed a request's answer with its batch partners (Triton's
  dynamic batching, the in-process batcher) and between jump-forward and step-by-step. Quantized
  weights do not reproduce fp32 greedy output on random or lightly trained weights, so validation
  reports diffs and token agreement without failing on them; quality is judged by the parity gate.
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

#: MatMulNBits ``accuracy_level`` 4: activations quantized to int8 per row and per block of K, and
#: integer dot products, so a row's result is a function of that row alone. Measured on onnxruntime
#: 1.31 CPU (2 threads, 128x384 and 768x2048 MatMuls, rows alone vs in batches of 2-200): bitwise the
#: same at 8 bits, and at 4 bits with blocks of 16 (with blocks of 32 or more a lone 4-bit row takes
#: another kernel and differs in the last bits). The fp32-activation levels (0-2) are not invariant
#: either (a lone row takes a GEMV path) and their 8-bit kernel dequantizes every call: 40x slower
#: than fp32.
ACCURACY_LEVEL: int | None = 4
#: Weights per quantization block along K (one scale and zero point each), per bit width; see
#: ACCURACY_LEVEL for why 4 bits take blocks of 16. Measured on a base-shaped FFN stack (768/2048,
#: one thread, 1/3/8 rows): 8-bit blocks of 32 are 1.07-1.17x faster than blocks of 16, 2.5x/1.8x/1.2x
#: faster than fp32, but 1.4-2.4x slower than the batch-dependent dynamic int8 of before.
BLOCK_SIZES = {8: 32, 4: 16}
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


def to_nbits(src: Path, dst: Path, *, bits: int, block_size: int | None = None,
             accuracy_level: int | None = ACCURACY_LEVEL) -> int:
    """Weight-only quantization of every MatMul with a constant weight to ``MatMulNBits``
    (``bits`` 8 or 4, one scale and zero point per ``block_size`` weights along K, by default
    :data:`BLOCK_SIZES`).

    Returns the number of MatMuls quantized; an export where none was is refused (the graph would
    silently stay fp32 under an int label).
    """
    from vedit.errors import ExportError

    quantizer = _nbits_quantizer()
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    before = sum(n.op_type == "MatMul" for n in model.graph.node)
    q = quantizer(model, bits=bits, block_size=block_size or BLOCK_SIZES[bits], is_symmetric=False, accuracy_level=accuracy_level)
    q.process()
    out = q.model.model
    done = sum(n.op_type == "MatMulNBits" for n in out.graph.node)
    if not done:
        raise ExportError(f"{src.name}: no MatMul with a constant weight to quantize ({before} MatMul nodes); "
                          "export it at fp32")
    _save(out, dst)
    return done


def _nbits_quantizer():
    """onnxruntime's ``MatMulNBitsQuantizer``, imported without its import-time side effect: the
    module calls ``logging.basicConfig(level=INFO)``, which would give an application's root logger a
    handler and an INFO level; a placeholder handler makes that call a no-op, and the module's own
    logger is kept at WARNING (it logs one INFO line per quantized node)."""
    import logging

    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.removeHandler(placeholder)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    return MatMulNBitsQuantizer


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
