"""Where vedit keeps what it builds.

Everything goes under one home directory: ``$VEDIT_HOME`` if set, else ``./artifacts`` (relative to
the working directory, so the README's commands keep everything inside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("VEDIT_HOME", "artifacts")).resolve()


def data_dir() -> Path:
    """Demo dataset: ``train.jsonl``, ``test.jsonl``, ``stats.json``."""
    return home() / "data"


def students_dir() -> Path:
    """Demo students: ``t5/``, ``llama-base/``, ``llama-lora/`` (adapter), ``t5-lora/`` (adapter)."""
    return home() / "students"


def exports_dir() -> Path:
    """Default parent of export directories, e.g. ``exports/flan-t5-fp32``."""
    return home() / "exports"


def reports_dir() -> Path:
    return home() / "reports"
