"""Latency regression runs (pytest-benchmark): not part of the correctness suite.

Reuses the tiny students of tests/conftest.py (built locally in seconds), so the suite runs on
any machine, CI included, without the demo artifacts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(_TESTS))
_spec = importlib.util.spec_from_file_location("vedit_test_fixtures", _TESTS / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

registry = _fixtures.registry
tiny_sp_model = _fixtures.tiny_sp_model
tiny_t5_dir = _fixtures.tiny_t5_dir
export_root = _fixtures.export_root
t5_fp32 = _fixtures.t5_fp32
