"""Packaging: ``python -m build`` makes an sdist and a wheel that hold every module and data file of
the package, setuptools says nothing to warn about, and ``twine check --strict`` accepts both.

The expected file list is the ``vedit/`` tree itself (every file but byte code), so a new module or
data folder that package discovery or ``package_data`` misses fails here. The build runs offline
(``--no-isolation``: the test extra brings setuptools, build and twine) on a copy of the packaging
inputs, so the working tree gets no ``build/`` or ``*.egg-info`` litter. That the wheel installs
and answers in a fresh venv is tests/test_install.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INPUTS = ("pyproject.toml", "setup.cfg", "README.md", "MANIFEST.in")
#: data files the runtime loads at run time (named here, not only found by walking the tree)
DATA = ("vedit/registry/tools.json", "vedit/data/looks.json", "vedit/decoding/ops/*.onnx", "vedit/peers/workers/*.py")


def _package_files() -> set[str]:
    out = set()
    for p in (REPO / "vedit").rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            out.add(p.relative_to(REPO).as_posix())
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    src = tmp_path_factory.mktemp("src")
    for name in INPUTS:
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "requirements", src / "requirements")
    shutil.copytree(REPO / "vedit", src / "vedit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # its notice is not ours
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    return {"log": r.stdout + r.stderr, "wheel": wheels[0], "sdist": sdists[0]}


def test_setuptools_warns_about_nothing(built):
    warnings = [line for line in built["log"].splitlines() if re.search(r"warn", line, re.IGNORECASE)]
    assert not warnings, "\n".join(warnings)
    assert "absent from the" not in built["log"]


def test_wheel_holds_every_module_and_data_file(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    files = {n for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    expected = _package_files()
    assert files == expected, {"missing": sorted(expected - files), "extra": sorted(files - expected)}
    for pattern in DATA:
        matches = [f for f in files if Path(f).match(pattern)]
        assert matches, f"the wheel has no {pattern}"
    entry_points = zipfile.ZipFile(built["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "vedit = vedit.cli:main" in entry_points and "vedit-export = vedit.cli:export_main" in entry_points


def test_sdist_holds_the_package_and_what_installing_needs(built):
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    files = {n for n in names if n.startswith("vedit/") and not n.startswith("vedit.egg-info")}
    expected = _package_files()
    assert expected <= files, sorted(expected - files)
    assert {"setup.cfg", "pyproject.toml", "README.md", "requirements/serving-gpu.txt"} <= names
    assert not any(n.startswith("tests/") for n in names), "tests do not belong in the sdist"


def test_twine_accepts_both(built):
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(built["wheel"]), str(built["sdist"])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout
