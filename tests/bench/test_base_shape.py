"""Real-size random models are built and exported once, then reused (checked here at tiny size)."""

from __future__ import annotations

import json

import pytest

from vedit.bench.base_shape import Shape, ensure_shape
from vedit.errors import ModelDirError

pytestmark = pytest.mark.slow


def test_llama_shape_uses_the_demo_tokenizer_and_is_cached(tmp_path, monkeypatch, tiny_sp_model, caplog):
    from vedit.students.models import LLAMA_SIZES

    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    (tmp_path / "students" / "tokenizer").mkdir(parents=True)
    (tmp_path / "students" / "tokenizer" / "spiece.model").write_bytes(tiny_sp_model)
    shape = Shape("llama-tiny-shape", "llama", 1000, "tiny test shape")
    student, exports = ensure_shape(shape, size="tiny")
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["vocab_size"] == 1000 and cfg["hidden_size"] == LLAMA_SIZES["tiny"]["hidden_size"]
    assert (student / "tokenizer.json").exists() and exports["fp32"] == tmp_path / "exports" / "llama-tiny-shape-fp32"
    manifest = json.loads((exports["fp32"] / "manifest.json").read_text())
    assert manifest["family"] == "llama"
    caplog.clear()
    with caplog.at_level("INFO", logger="vedit"):
        again = ensure_shape(shape, size="tiny")
    assert again == (student, exports) and not [r for r in caplog.records if "exporting" in r.getMessage()]
    assert json.loads((exports["fp32"] / "manifest.json").read_text())["created"] == manifest["created"]


def test_no_tokenizer_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    with pytest.raises(ModelDirError, match="build the demo students first"):
        ensure_shape(Shape("t5-x", "t5", 100, "x"), size="tiny")
