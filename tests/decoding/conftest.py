"""Export directories of the tiny students for the decoding tests.

``_export`` is a minimal stand-in for the exporter (optimum's ``main_export`` + registry snapshot +
compiled grammar + manifest); the lead switches it to ``vedit.export``'s API once that lands.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vedit.decoding import compile_grammars


def _export(model_dir: Path, family: str, out: Path, registry) -> Path:
    from optimum.exporters.onnx import main_export

    task = "text2text-generation-with-past" if family == "t5" else "text-generation-with-past"
    main_export(str(model_dir), str(out), task=task, no_post_process=True, do_validation=False)
    registry.save(out / "registry.json")
    files = (
        {"encoder": "encoder_model.onnx", "decoder": "decoder_model.onnx",
         "decoder_with_past": "decoder_with_past_model.onnx"}
        if family == "t5" else {"decoder": "model.onnx"}
    )
    info = compile_grammars(out)
    manifest = {"family": family, "precision": "fp32", "files": files, "grammar": info}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def t5_export(tmp_path_factory, tiny_t5_dir, registry) -> Path:
    return _export(tiny_t5_dir, "t5", tmp_path_factory.mktemp("t5_export") / "onnx", registry)


@pytest.fixture(scope="session")
def llama_export(tmp_path_factory, tiny_llama_dir, registry) -> Path:
    return _export(tiny_llama_dir, "llama", tmp_path_factory.mktemp("llama_export") / "onnx", registry)


@pytest.fixture(scope="session", params=["t5", "llama"])
def export_dir(request) -> Path:
    return request.getfixturevalue(f"{request.param}_export")


@pytest.fixture(scope="session")
def t5_predictors(t5_export):
    from vedit.decoding import Predictor

    return {jf: Predictor.load(t5_export, threads=2, jump_forward=jf) for jf in (True, False)}


@pytest.fixture(scope="session")
def llama_predictors(llama_export):
    from vedit.decoding import Predictor

    return {jf: Predictor.load(llama_export, threads=2, jump_forward=jf) for jf in (True, False)}


@pytest.fixture(scope="session", params=["t5", "llama"])
def predictors(request):
    """``{True: jump-forward predictor, False: step-by-step predictor}`` for each family."""
    return request.getfixturevalue(f"{request.param}_predictors")


@pytest.fixture(scope="session")
def tokenizer_dir(tiny_t5_dir, tmp_path_factory) -> Path:
    """Just the tiny tokenizer + config (for grammar tests that need no model)."""
    out = tmp_path_factory.mktemp("tiny_tok")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        if (tiny_t5_dir / name).exists():
            shutil.copy(tiny_t5_dir / name, out / name)
    return out
