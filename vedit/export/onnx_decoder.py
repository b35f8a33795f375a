"""Llama (decoder-only) to ONNX: one ``model.onnx`` with KV cache in and out.

optimum's ``text-generation-with-past`` graph already has a dynamic sequence axis, so several new
tokens can follow a past in one call; with an empty past (length 0) the same file does the prompt.
Batched generation needs left padding and explicit ``position_ids``. Like the T5 decoders, the graph
gets ``last_index`` (:mod:`vedit.export.last_position`): the lm_head runs at each row's last fed position
only. (fp32/int8 exports then replace this graph with the fused one, which has the same inputs.)
"""

from __future__ import annotations

from pathlib import Path

from vedit.export.last_position import gather_last_in_file
from vedit.export.onnx_common import DEFAULT_OPSET, io_names, move_onnx, optimum_export

TASK = "text-generation-with-past"
FILES = {"decoder": "model.onnx"}


def export_llama(model, staging: Path, out: Path, *, opset: int = DEFAULT_OPSET) -> tuple[dict, dict, list[str]]:
    """Export ``model`` (fp32) via ``staging`` into ``out``; same return value as ``export_t5``."""
    optimum_export(model, staging, task=TASK, opset=opset)
    gather_last_in_file(staging / FILES["decoder"])
    written = move_onnx(staging, out, FILES["decoder"])
    return dict(FILES), {FILES["decoder"]: io_names(out / FILES["decoder"])}, written
