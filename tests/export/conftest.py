"""Exports of the tiny students, built once per session and shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import EXPORT_INTENTS as INTENTS  # noqa: F401  (re-exported for the tests)
from support import quick_export as _export


def leftovers(parent: Path) -> list[str]:
    """Temp / backup dirs an export or merge may leave next to its target."""
    return [p.name for p in parent.iterdir() if p.name.endswith((".vedit-tmp", ".old"))]


@pytest.fixture(scope="session")
def t5_int8(export_root, tiny_t5_dir):
    return _export(tiny_t5_dir, export_root / "t5-int8", family="t5", precision="int8")


@pytest.fixture(scope="session")
def llama_int8(export_root, tiny_llama_dir):
    return _export(tiny_llama_dir, export_root / "llama-int8", family="llama", precision="int8")
