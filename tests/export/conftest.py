"""Exports of the tiny students, built once per session and shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

INTENTS = ["golden hour", "cold tone"]


def leftovers(parent: Path) -> list[str]:
    """Temp / backup dirs an export or merge may leave next to its target."""
    return [p.name for p in parent.iterdir() if p.name.endswith((".vedit-tmp", ".old"))]


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


def _export(model_dir, out, **kw):
    from vedit.export import export_model

    return export_model(model_dir, out, intents=INTENTS, max_new_tokens=24, **kw)


@pytest.fixture(scope="session")
def t5_fp32(export_root, tiny_t5_dir):
    return _export(tiny_t5_dir, export_root / "t5-fp32", family="t5")


@pytest.fixture(scope="session")
def llama_fp32(export_root, tiny_llama_dir):
    return _export(tiny_llama_dir, export_root / "llama-fp32", family="llama")


@pytest.fixture(scope="session")
def t5_int8(export_root, tiny_t5_dir):
    return _export(tiny_t5_dir, export_root / "t5-int8", family="t5", precision="int8")


@pytest.fixture(scope="session")
def llama_int8(export_root, tiny_llama_dir):
    return _export(tiny_llama_dir, export_root / "llama-int8", family="llama", precision="int8")
