"""A flan-t5-base-shaped student with random weights, for latency only.

Why: the demo student is tiny, so its timings say little about the paper's FlanT5-base. This
model has the real shape (d_model 768, d_ff 2048, 12+12 layers, gated-gelu, vocab 32128,
untied head), built locally from a config and the demo tokenizer (the extra embedding rows are
never produced: the grammar masks them). Its answers are meaningless; only its speed is measured.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

from vedit import paths
from vedit.errors import ModelDirError

log = logging.getLogger(__name__)

BASE_VOCAB = 32128
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model")


def ensure_base_shape(*, tokenizer_dir: Path | None = None, precisions: Sequence[str] = ("fp32",)) -> tuple[Path, dict[str, Path]]:
    """Build (once, cached) the base-shaped student and its exports; return the student and {precision: export}."""
    from vedit.export import export_model
    from vedit.export.checks import export_is_current
    from vedit.manifest import read_manifest
    from vedit.atomicio import atomic_dir
    from vedit.students.models import new_t5

    tokenizer_dir = tokenizer_dir or paths.students_dir() / "t5"
    student = paths.students_dir() / "t5-base-shape"
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise ModelDirError(f"no tokenizer at {tokenizer_dir}; build the demo students first (vedit demo build)")
    if not (student / "model.safetensors").exists():
        log.info("building the flan-t5-base-shaped model (random weights)")
        with atomic_dir(student) as tmp:
            for name in _TOKENIZER_FILES:
                if (tokenizer_dir / name).exists():
                    shutil.copy(tokenizer_dir / name, tmp / name)
            new_t5(BASE_VOCAB, "base", seed=0).save_pretrained(tmp)
            (tmp / "README.txt").write_text("Random weights, flan-t5-base shape: for latency only.\n")
    exports = {}
    for precision in precisions:
        export = paths.exports_dir() / f"t5-base-shape-{precision}"
        if not export_is_current(export, student):
            log.info(f"exporting the base-shaped model to ONNX ({precision}, a few minutes)")
            export_model(student, export, family="t5", precision=precision, force=True, intents=["golden hour"],
                         max_new_tokens=16)
        if read_manifest(export).family != "t5":
            raise ModelDirError(f"{export}: not a T5 export; delete it and run again")
        exports[precision] = export
    return student, exports
