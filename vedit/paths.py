"""Where vedit keeps what it builds.

Everything goes under one home directory: ``$VEDIT_HOME`` if set, else the per-user data directory
(``~/.local/share/vedit`` on Linux, via platformdirs). It never depends on the working directory, so
``vedit predict`` finds the same model wherever it is run; the quick start's scripts set
``VEDIT_HOME=./artifacts`` to keep a checkout's results inside it.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("VEDIT_HOME")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_path

    return user_data_path("vedit", appauthor=False)


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
