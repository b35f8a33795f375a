"""``manifest.json`` of an export directory, read one way everywhere (runtime, Triton builder, tools).

The exporter writes it last (:mod:`vedit.export.manifest`), so a directory with a valid manifest is
a complete export. Every reader goes through :func:`read_manifest`, which checks the format and
version, the family and precision, and that ``config.json`` is there: a stale, foreign or
half-copied directory fails here with one line saying what to do, not later inside onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vedit.errors import ModelDirError

FORMAT = "vedit-export"
#: v2: the T5 with-past decoder takes the decoder self-attention mask (rows of different cache
#: lengths share a call, :mod:`vedit.decoding.seq2seq`); Llama exports did not change.
VERSION = 2
#: manifest versions this vedit serves, per family (an older T5 export must be exported again)
READABLE = {"t5": (2,), "llama": (1, 2)}
FILE = "manifest.json"
FAMILIES = ("t5", "llama")


@dataclass(frozen=True)
class Precision:
    """One export precision: the one table the exporter, the CLIs, Triton profiles and benches read."""

    name: str
    #: bits per MatMul weight in a weight-only quantized export (onnxruntime ``MatMulNBits``), else None
    weight_bits: int | None
    summary: str


PRECISION_TABLE: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", None, "reference"),
    Precision("fp16", None, "GPU serving"),
    Precision("int8", 8, "weight-only 8-bit MatMulNBits, CPU; answers independent of batch partners"),
    Precision("int4", 4, "weight-only 4-bit MatMulNBits, CPU; smallest, least exact"),
)}
PRECISIONS = tuple(PRECISION_TABLE)
#: precisions whose MatMul weights are quantized (their exports are validated, not gated, on logits)
QUANTIZED = tuple(p.name for p in PRECISION_TABLE.values() if p.weight_bits)
#: ONNX file of each role when a manifest names none (optimum's names)
DEFAULT_FILES = {
    "t5": {"encoder": "encoder_model.onnx", "decoder": "decoder_model.onnx",
           "decoder_with_past": "decoder_with_past_model.onnx"},
    "llama": {"decoder": "model.onnx"},
}

Family = Literal["t5", "llama"]


@dataclass(frozen=True)
class Manifest:
    """The checked manifest of one export directory (``data`` keeps every field as written)."""

    path: Path
    family: Family
    precision: str
    files: dict[str, str]
    config: dict[str, Any]
    data: dict[str, Any] = field(repr=False)

    def file(self, role: str) -> Path:
        return self.path / self.files[role]


def read_manifest(export_dir: str | Path) -> Manifest:
    """Load and check ``export_dir/manifest.json`` and ``config.json``; raise :class:`ModelDirError`."""
    d = Path(export_dir)
    if not d.is_dir():
        raise ModelDirError(f"{d}: no such export directory; create one with `vedit export flan-t5 --to onnx`")
    path = d / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{d}: no {FILE}; is this a vedit export directory? (run `vedit export ...`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc}); export the model again") from None
    family = data.get("family") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") not in READABLE.get(family, (VERSION,)):
        got = (data.get("format"), data.get("version")) if isinstance(data, dict) else (type(data).__name__, None)
        raise ModelDirError(
            f"{path}: not a {FORMAT} v{VERSION} manifest (format {got[0]!r}, version {got[1]!r}); "
            "export the model again with this vedit"
        )
    precision = data.get("precision")
    if family not in FAMILIES:
        raise ModelDirError(f"{path}: unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    if precision not in PRECISIONS:
        raise ModelDirError(f"{path}: unknown precision {precision!r}; supported: {', '.join(PRECISIONS)}")
    files = {**DEFAULT_FILES[family], **dict(data.get("files") or {})}
    _check_files(d, files, data.get("sizes") or {})
    try:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{d}: no config.json; the export is incomplete, export the model again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{d / 'config.json'}: not valid JSON ({exc}); export the model again") from None
    return Manifest(path=d, family=family, precision=precision, files=files, config=config, data=data)


def _check_files(d: Path, files: dict[str, str], sizes: dict[str, int]) -> None:
    """Every ONNX file the manifest names exists, and every ONNX file (external data included) has
    the size the exporter wrote.

    A stat per file, no reading: it catches a truncated copy or a file swapped for another, which
    onnxruntime would otherwise report deep inside a session (or, for zeros, not at all). Other files
    are left out: the grammar may be recompiled in place (``compile_grammars``) and checks itself.
    """
    missing = sorted(name for name in files.values() if not (d / name).is_file())
    if missing:
        raise ModelDirError(f"{d}: missing {', '.join(missing)}; the export is incomplete, export the model again")
    for name, size in sizes.items():
        if ".onnx" not in name:
            continue
        p = d / name
        if not p.is_file():
            raise ModelDirError(f"{d}: missing {name}; the export is incomplete, export the model again")
        if p.stat().st_size != size:
            raise ModelDirError(
                f"{p}: {p.stat().st_size} bytes, the manifest says {size}; the file is damaged or replaced, "
                "export the model again"
            )


__all__ = ["DEFAULT_FILES", "FAMILIES", "FILE", "FORMAT", "Family", "Manifest", "PRECISIONS", "READABLE", "VERSION", "read_manifest"]
