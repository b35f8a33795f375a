"""The package's layers are a rule the build checks (import-linter contracts in .importlinter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LINT, "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


def test_contracts_hold():
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in res.stdout


def test_an_upward_import_breaks_the_build(tmp_path):
    """The contracts bite: the runtime importing the orchestration layer, or torch, fails the check."""
    shutil.copytree(ROOT / "vedit", tmp_path / "vedit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    loop = tmp_path / "vedit" / "decoding" / "loop.py"
    loop.write_text(loop.read_text() + "\nimport torch  # noqa\nfrom vedit import pipeline  # noqa\n")
    res = _lint(tmp_path)
    assert res.returncode == 1
    assert "vedit.decoding is not allowed to import vedit.pipeline" in res.stdout
    assert "vedit.decoding.loop -> torch" in res.stdout
