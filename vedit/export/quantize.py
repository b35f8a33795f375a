"""Lower-precision copies of an fp32 export: fp16 (GPU serving) and int8 (CPU / edge).

- int8: ``onnxruntime.quantization.quantize_dynamic``, int8 weights per output channel, activations
  quantized at run time, and ``reduce_range=True`` (7-bit weights): on x86 CPUs without VNNI (AVX2
  only, like the CI machines) onnxruntime's u8s8 kernels saturate int16 intermediate sums, which with
  full-range per-channel weights gave logit errors 15x larger than per-tensor on a single MatMul
  (0.29 vs 0.019); with ``reduce_range`` per-channel is back to 0.019. On random or lightly trained
  weights it does not reproduce fp32 greedy output, so its validation reports diffs and token
  agreement without failing on them; its quality is judged by the offline metrics (bench).
- fp16: ``onnxruntime.transformers.float16`` with fp32 inputs/outputs (``keep_io_types``). T5 overflows
  in fp16 (activations of the feed-forward output and the residual stream exceed 65504), so for T5 the
  overflow-prone ops stay fp32: the ``wo`` projections (as transformers keeps them in fp32), the
  residual ``Add``s, the RMSNorm ops (``Pow``/``ReduceMean``/``Sqrt``/``Div``) and ``Softmax``.
"""

from __future__ import annotations

from pathlib import Path

TWO_GB = 2 * 1024**3

#: Op types kept in fp32 for T5 (see module docstring); the defaults of the converter are added.
T5_FP16_OP_BLOCK = ("Pow", "ReduceMean", "Sqrt", "Div", "Add", "Softmax")
#: Node-name fragments kept in fp32 for T5: the feed-forward output projections.
T5_FP16_NODE_BLOCK = ("/DenseReluDense/wo/",)


def _total_size(path: Path) -> int:
    from vedit.export.onnx_common import external_data_files

    return path.stat().st_size + sum((path.parent / n).stat().st_size for n in external_data_files(path))


def _save(model, dst: Path, large: bool) -> None:
    import onnx

    if large:
        onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=dst.name + "_data", size_threshold=1024)
    else:
        onnx.save(model, str(dst))


def to_int8(src: Path, dst: Path, *, per_channel: bool = True, reduce_range: bool = True) -> None:
    """Dynamic int8 quantization of the MatMul weights (int8, per output channel by default)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" is logged on the root logger every call
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            use_external_data_format=_total_size(src) > TWO_GB // 4,  # int8 weights are 4x smaller
        )
    finally:
        root.setLevel(level)


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


def to_fp16(src: Path, dst: Path, *, family: str) -> None:
    """fp16 weights and compute, fp32 inputs/outputs; T5 keeps its overflow-prone ops in fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src), load_external_data=True)
    op_block = list(DEFAULT_OP_BLOCK_LIST)
    node_block: list[str] = []
    if family == "t5":
        op_block += list(T5_FP16_OP_BLOCK)
        node_block = [n.name for n in model.graph.node if any(f in n.name for f in T5_FP16_NODE_BLOCK)]
    large = _total_size(src) > TWO_GB
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=op_block,
        node_block_list=node_block,
        disable_shape_infer=large,
    )
    _drop_duplicate_nodes(converted.graph)
    _save(converted, dst, large=_total_size(src) // 2 > TWO_GB)
