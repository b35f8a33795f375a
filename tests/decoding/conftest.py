"""Export directories of the tiny students for the decoding tests.

The exports themselves come from the real exporter (``t5_fp32`` / ``llama_fp32`` in tests/conftest.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def t5_export(t5_fp32) -> Path:
    return t5_fp32.out_dir


@pytest.fixture(scope="session")
def llama_export(llama_fp32) -> Path:
    return llama_fp32.out_dir


@pytest.fixture(scope="session", params=["t5", "llama"])
def export_dir(request) -> Path:
    return request.getfixturevalue(f"{request.param}_export")


@pytest.fixture(scope="session")
def t5_predictors(t5_export):
    from vedit.decoding import Predictor

    return {jf: Predictor.load(t5_export, threads=2, jump_forward=jf, draft=False) for jf in (True, False)}


@pytest.fixture(scope="session")
def llama_predictors(llama_export):
    from vedit.decoding import Predictor

    return {jf: Predictor.load(llama_export, threads=2, jump_forward=jf, draft=False) for jf in (True, False)}


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
