"""``manifest.json`` of an export directory, read one way everywhere (runtime, Triton builder, tools).

The exporter writes it last (:mod:`vedit.export.manifest`), so a directory with a valid manifest is
a complete export. Every reader goes through :func:`read_manifest`, which checks the format and
version, the family and precision, that ``config.json`` is there, and the size and sha256 of every
file the exporter wrote: a stale, foreign, half-copied or tampered directory fails here with one
line saying what to do, not later inside onnxruntime (or, for a weight matrix changed in place,
never: the model would just answer differently).

Integrity policy (issue 22):

- the exporter records ``"sha256": {file: hex}`` for every file it wrote (manifest excluded);
- every load hashes every listed file (predict, ``vedit triton build``, the Triton model's
  ``initialize``). No cache on disk: a cache is one more thing an attacker could write, and the
  cost is below the onnxruntime session creation that reads the same bytes right after (an 836 MB
  ONNX file: sha256 2.3 s against 3.1 s for the session, 2 cores at load ~9; see SECURITY.md).
  Within one process a file is hashed once per (device, inode, size, mtime, ctime): ctime changes
  with any write and cannot be set back by a non-root user, so a file changed in place or swapped
  is hashed again;
- a manifest without file hashes (written before them) is refused with "export the model again":
  accepting it with a warning would let anyone turn the check off by deleting one key;
- the manifest itself is not signed: it tells a damaged or altered export from the one the exporter
  wrote, not an export rewritten whole by someone who can also rewrite its manifest. Pin the
  archive's sha256 where it crosses a trust boundary (``vedit triton deploy --model-sha256``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vedit.atomicio import sha256_file
from vedit.errors import ExportIntegrityError, ModelDirError

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
    check_hashes(d, data.get("sha256"))
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


def check_hashes(d: Path, hashes: Any) -> None:
    """Every file ``hashes`` lists exists with that sha256; raise :class:`ExportIntegrityError`.

    Files are hashed in parallel threads (hashlib releases the GIL), each at most once per process
    and (device, inode, size, mtime, ctime): see the module docstring for why there is no disk cache.
    """
    if not isinstance(hashes, dict) or not hashes:
        raise ExportIntegrityError(
            f"{d / FILE}: no sha256 of the export's files (written by a vedit before file hashes); "
            "export the model again with this vedit"
        )
    paths = {}
    for name, want in hashes.items():
        p = (d / name).resolve()
        if not isinstance(want, str) or Path(name).is_absolute() or ".." in Path(name).parts or d.resolve() not in p.parents:
            raise ExportIntegrityError(f"{d / FILE}: bad sha256 entry {name!r}; export the model again")
        if not p.is_file():
            raise ModelDirError(f"{d}: missing {name}; the export is incomplete, export the model again")
        paths[name] = p
    with ThreadPoolExecutor(max_workers=max(1, min(len(paths), os.cpu_count() or 1, 4))) as pool:
        got = dict(zip(paths, pool.map(_sha256_once, paths.values())))
    for name, want in hashes.items():
        if got[name] != want.lower():
            raise ExportIntegrityError(
                f"{d / name}: sha256 {got[name][:16]}... differs from the manifest's {want[:16]}...; the file was "
                "changed after export (damaged or tampered): do not serve it, export the model again or restore "
                "the export from a trusted copy"
            )


#: (path, device, inode, size, mtime_ns, ctime_ns) -> sha256 of files hashed by this process
_HASHED: dict[tuple, str] = {}


def _sha256_once(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        digest = sha256_file(path)
        if path.stat().st_ctime_ns == st.st_ctime_ns:  # not written while it was read
            _HASHED[key] = digest
        return digest
    return _HASHED[key]


__all__ = ["DEFAULT_FILES", "FAMILIES", "FILE", "FORMAT", "Family", "Manifest", "PRECISIONS", "READABLE", "VERSION", "check_hashes", "read_manifest"]
