"""Students of a real size with random weights, for latency only.

Why: the demo students are tiny, so their timings say little about the paper's models. These have
real shapes, built locally from a config and the demo tokenizer (the extra embedding rows are
never produced: the grammar masks them):

- ``t5-base-shape``: flan-t5-base (d_model 768, d_ff 2048, 12+12 layers, gated-gelu, vocab 32128,
  untied head);
- ``llama-base-shape``: TinyLlama-1.1B (hidden 2048, 22 layers, intermediate 5632, 32 heads, 4 KV
  heads, vocab 32000, untied head); its fp32 ONNX is ~4.4 GB (external data).

Their own answers are meaningless (a random model picks the shortest forms), so the bench runs
them *scripted* (:mod:`vedit.workload.scripted`): steered to the demo test set's answers, they do
exactly the work of a trained student answering those texts. Built and exported once, cached.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vedit import paths
from vedit.errors import ModelDirError

log = logging.getLogger(__name__)

BASE_VOCAB = 32128
LLAMA_VOCAB = 32000
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
                    "tokenizer.model")


@dataclass(frozen=True)
class Shape:
    """One real-size random model: how to build it and what to call it."""

    name: str  # students/<name>, exports/<name>-<precision>
    family: str
    vocab: int
    title: str  # report heading


T5_BASE = Shape("t5-base-shape", "t5", BASE_VOCAB, "flan-t5-base shape (random weights, scripted answers)")
LLAMA_BASE = Shape("llama-base-shape", "llama", LLAMA_VOCAB, "TinyLlama-1.1B shape (random weights, scripted answers)")
SHAPES = {s.name: s for s in (T5_BASE, LLAMA_BASE)}


def ensure_base_shape(*, tokenizer_dir: Path | None = None, precisions: Sequence[str] = ("fp32",)) -> tuple[Path, dict[str, Path]]:
    """Build (once, cached) the flan-t5-base-shaped student and its exports; return the student and {precision: export}."""
    return ensure_shape(T5_BASE, tokenizer_dir=tokenizer_dir or paths.students_dir() / "t5", precisions=precisions)


def ensure_llama_shape(*, tokenizer_dir: Path | None = None, precisions: Sequence[str] = ("fp32",)) -> tuple[Path, dict[str, Path]]:
    """Build (once, cached) the TinyLlama-shaped student and its exports; return the student and {precision: export}.

    The tokenizer is the demo Llama's (``tokenizer_dir`` or one made from the demo's SentencePiece model).
    """
    return ensure_shape(LLAMA_BASE, tokenizer_dir=tokenizer_dir, precisions=precisions)


def ensure_shape(shape: Shape, *, tokenizer_dir: Path | None = None, precisions: Sequence[str] = ("fp32",),
                 size: str = "base") -> tuple[Path, dict[str, Path]]:
    """Build ``shape``'s student (``size`` of :mod:`vedit.students.models`) and export it per precision, once."""
    from vedit.export import export_model
    from vedit.export.checks import export_is_current
    from vedit.manifest import read_manifest

    student = paths.students_dir() / shape.name
    if not (student / "config.json").exists():
        _build_student(shape, student, tokenizer_dir, size)
    exports = {}
    for precision in precisions:
        export = paths.exports_dir() / f"{shape.name}-{precision}"
        if not export_is_current(export, student):
            log.info(f"exporting {shape.name} to ONNX ({precision}; {'many' if size == 'base' else 'a few'} minutes)")
            export_model(student, export, family=shape.family, precision=precision, force=True,
                         intents=["golden hour"], max_new_tokens=16)
        if read_manifest(export).family != shape.family:
            raise ModelDirError(f"{export}: not a {shape.family} export; delete it and run again")
        exports[precision] = export
    return student, exports


def _build_student(shape: Shape, student: Path, tokenizer_dir: Path | None, size: str) -> None:
    from vedit.atomicio import atomic_dir
    from vedit.students.models import new_llama, new_t5

    log.info(f"building the {shape.name} model ({size}, random weights)")
    with atomic_dir(student, force=True) as tmp:
        _tokenizer(shape, tokenizer_dir, tmp)
        build = new_t5 if shape.family == "t5" else new_llama
        model = build(shape.vocab, size, seed=0)  # type: ignore[arg-type]
        model.save_pretrained(tmp)
        del model
        (tmp / "README.txt").write_text(f"Random weights, {shape.title}: for latency only.\n")


def _tokenizer(shape: Shape, tokenizer_dir: Path | None, out: Path) -> None:
    """The demo tokenizer of the family into ``out``: copied from ``tokenizer_dir``, or (Llama) made
    from the demo's SentencePiece model exactly as the demo Llama's is."""
    if tokenizer_dir is not None and (tokenizer_dir / "tokenizer.json").exists():
        for name in _TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                shutil.copy(tokenizer_dir / name, out / name)
        return
    sp = paths.students_dir() / "tokenizer" / "spiece.model"
    if shape.family != "llama" or not sp.exists():
        where = tokenizer_dir or sp
        raise ModelDirError(f"no tokenizer at {where}; build the demo students first (vedit demo build)")
    from vedit.students.tokenizer import save_tokenizer

    save_tokenizer(sp.read_bytes(), "llama", out)
