"""``manifest.json``: what an export directory holds and how it was checked.

Format (version 1)::

    {"format": "vedit-export", "version": 1, "family": "t5"|"llama", "precision": "fp32"|"fp16"|"int8",
     "opset": int, "files": {role: file}, "io": {file: {"inputs": [...], "outputs": [...]}},
     "sizes": {file: bytes}, "sha256": {file: hex}, "source": {"model_dir", "adapter_dir", "sha256": {file: hex}},
     "merge": {...} | null, "versions": {package: version}, "validation": {...},
     "grammar": {...} | null, "created": ISO time}

Roles in ``files``: T5 ``encoder``, ``decoder``, ``decoder_with_past``; Llama ``decoder``.
``sizes`` and ``sha256`` cover every file of the directory but the manifest; :func:`vedit.manifest.read_manifest`
checks both at every load.
Non-finite numbers (e.g. an unlimited int8 tolerance) are written as ``null``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vedit.atomicio import atomic_open, sha256_file


#: Bumped whenever the graphs an export writes change (a new input, a fused graph). An export whose
#: manifest names another revision is stale even when its source weights are the same: the main job and
#: the bench's real-size shapes export it again (:func:`vedit.export.checks.export_is_current`).
GRAPHS_REVISION = ("2026-12-07: T5 decoder self-attention mask; fused Llama decoder; lm_head at last_index, "
                   "several positions per row (drafts)")


def graph_recipe(family: str, precision: str, fused: bool = True) -> str:
    """What the decoder graphs of an export are made of, as written to ``manifest["graphs"]``."""
    kind = "vedit-fused" if fused and family == "llama" and precision != "fp16" else "optimum"
    return f"{kind} ({GRAPHS_REVISION})"


PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "peft", "vedit")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` (non-finite floats as null) and return exactly what was written."""
    clean = _finite(data)
    path.write_text(json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return clean


def file_sizes(export_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(export_dir)): p.stat().st_size
        for p in sorted(export_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def file_hashes(export_dir: Path) -> dict[str, str]:
    """sha256 of every file but the manifest, what :func:`vedit.manifest.check_hashes` checks at load."""
    return {
        str(p.relative_to(export_dir)): sha256_file(p)
        for p in sorted(export_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def recompile_grammar(export_dir: Path, tokenization: str) -> dict[str, Any]:
    """Recompile an export's grammar in ``tokenization`` mode and record the new files' sha256 in
    its manifest (what loading checks), for a bench that compares modes on one export."""
    from vedit.decoding.compile import compile_grammars

    summary = compile_grammars(export_dir, tokenization=tokenization)  # type: ignore[arg-type]
    path = export_dir / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["sha256"], data["grammar"] = file_hashes(export_dir), summary
    with atomic_open(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return summary

