"""Export stage: merge LoRA adapters and export students to validated, self-contained ONNX dirs.

Library first (the CLI in :mod:`vedit.export.cli` only maps options onto these):

- :func:`merge` — ``merge_and_unload`` a LoRA adapter into its base, verified against the adapter.
- :func:`export_model` — T5 or Llama (optionally + adapter) to ONNX in fp32/fp16/int8, validated
  against PyTorch, written atomically with ``manifest.json`` (see :mod:`vedit.export.manifest`).
- :func:`read_manifest` — load an export directory's manifest (for later stages).

Modules: ``checks`` (input checks), ``families`` (supported architectures), ``merge``,
``onnx_seq2seq`` / ``onnx_decoder`` (exporters), ``quantize`` (fp16/int8), ``validate`` +
(comparison with PyTorch, through the serving loop), ``manifest`` (writer), ``pipeline``.
"""

from vedit.export.families import FAMILIES, FORMATS
from vedit.manifest import read_manifest
from vedit.export.merge import MERGE_ATOL, MERGE_RTOL, MergeReport, merge
from vedit.export.pipeline import PRECISIONS, ExportResult, export_model
from vedit.export.validate import ValidationReport

__all__ = [
    "FAMILIES",
    "FORMATS",
    "MERGE_ATOL",
    "MERGE_RTOL",
    "PRECISIONS",
    "ExportResult",
    "MergeReport",
    "ValidationReport",
    "export_model",
    "merge",
    "read_manifest",
]
