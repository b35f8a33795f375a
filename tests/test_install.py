"""Packaging: the base install is a working runtime without torch, and the GPU serving set has
onnxruntime-gpu and no CPU onnxruntime.

- A fresh venv gets ``pip install <repo>`` with no extras (from PyPI: the one place besides
  loopback these tests reach, and only where the registry answers) and answers ``vedit predict``
  exactly like the in-process predictor of the main venv.
- Importing the runtime and running the Triton model's ``initialize`` imports no torch, transformers,
  optimum, peft, tritonclient or matplotlib (subprocess, ``sys.modules``).
- requirements/serving-gpu.txt is setup.cfg's runtime with onnxruntime swapped for onnxruntime-gpu,
  and pip's resolution of it (``--dry-run --report``, for this Python and for the Triton 24.10
  container's 3.10) has no CPU onnxruntime and none of the training stack.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
#: what the runtime must never pull in
HEAVY = ("torch", "transformers", "optimum", "peft", "tritonclient", "matplotlib", "outlines_core", "sentencepiece")
HEAVY_DISTS = {"torch", "transformers", "optimum", "optimum-onnx", "peft", "tritonclient", "nvidia-pytriton",
               "matplotlib", "outlines-core", "sentencepiece", "onnx", "pillow", "scikit-image", "colour-science",
               "scipy"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "linux_x86_64"]


def _registry_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


needs_registry = pytest.mark.skipif(not _registry_reachable(), reason="PyPI is not reachable from here")


def _base_requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return [Requirement(line) for line in cfg["options"]["install_requires"].split("\n") if line.strip()]


def _serving_requirements(python_version: str) -> list[Requirement]:
    """requirements/serving-gpu.txt with its markers evaluated for ``python_version``."""
    out = []
    for line in (REPO / "requirements" / "serving-gpu.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"python_version": python_version}):
            req.marker = None
            out.append(req)
    return out


# ---------------------------------------------------------------- imports: no torch in the runtime

_PROBE = r"""
import json, sys, types
from pathlib import Path

pb = types.ModuleType("triton_python_backend_utils")  # exists only inside Triton's stub process
class TritonModelException(Exception):
    pass
pb.TritonModelException = TritonModelException
sys.modules["triton_python_backend_utils"] = pb

import vedit.cli, vedit.client, vedit.decoding, vedit.predict_cli
import importlib.util
repo, args = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
spec = importlib.util.spec_from_file_location("model", repo / "vedit" / "1" / "model.py")
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)
m = model.TritonPythonModel()
m.initialize(args)
answer = m.predictor.predict(["golden hour"])[0].to_json()
print(json.dumps({"modules": sorted({n.split(".")[0] for n in sys.modules}), "answer": answer}))
"""


def test_runtime_and_triton_model_import_no_training_stack(tmp_path, tiny_export):
    from google.protobuf import json_format

    from vedit.triton_repo import build_repository
    from vedit.triton_repo.config import parse_config

    repo = build_repository(tiny_export, profile="cpu", out=tmp_path / "repo")
    cfg = parse_config((repo / "vedit" / "config.pbtxt").read_text())
    args = {  # what Triton hands to initialize()
        "model_config": json_format.MessageToJson(cfg, preserving_proto_field_name=True),
        "model_instance_kind": "CPU", "model_instance_device_id": "0",
        "model_repository": str(repo / "vedit"), "model_version": "1",
    }
    (tmp_path / "args.json").write_text(json.dumps(args))
    r = subprocess.run([sys.executable, "-c", _PROBE, str(repo), str(tmp_path / "args.json")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    imported = [m for m in HEAVY if m in result["modules"]]
    assert imported == [], f"the runtime imported {imported}"
    from vedit.decoding import Predictor

    assert result["answer"] == Predictor.load(tiny_export, threads=1).predict(["golden hour"])[0].to_json()


# ---------------------------------------------------------------- GPU serving set

def test_serving_requirements_are_the_runtime_with_onnxruntime_gpu():
    base = {canonicalize_name(r.name): r.specifier for r in _base_requirements()}
    assert "onnxruntime" in base and not HEAVY_DISTS & set(base), "the base install must stay the runtime"
    for python in ("3.10", "3.11", "3.12"):
        serving = {canonicalize_name(r.name): r.specifier for r in _serving_requirements(python)}
        assert "onnxruntime" not in serving and "onnxruntime-gpu" in serving
        assert set(serving) - {"onnxruntime-gpu"} == set(base) - {"onnxruntime"}
        for name in set(base) - {"onnxruntime"}:
            assert str(serving[name]) == str(base[name]), name
    dockerfile = (REPO / "Dockerfile.triton").read_text()
    # the image installs the hashed closure of serving-gpu.txt (tests/deploy/test_dockerfile.py checks it covers it)
    assert "-r /opt/vedit/requirements/serving-gpu-hashes.txt" in dockerfile and "--no-deps" in dockerfile


@needs_registry
@pytest.mark.slow
@pytest.mark.parametrize("python", ["3.10", f"{sys.version_info.major}.{sys.version_info.minor}"])
def test_gpu_serving_set_resolves_without_cpu_onnxruntime_or_torch(tmp_path, python):
    reqs = tmp_path / "serving.txt"
    reqs.write_text("\n".join(str(r) for r in _serving_requirements(python)) + "\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
           "--only-binary=:all:", "--implementation", "cp", "--python-version", python, "--target", str(tmp_path / "t"),
           "-c", str(REPO / "requirements" / "constraints.txt"), "-r", str(reqs)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    print(f"serving set for Python {python}: " + ", ".join(f"{k}=={v}" for k, v in sorted(resolved.items())))
    assert "onnxruntime-gpu" in resolved and "onnxruntime" not in resolved
    assert not HEAVY_DISTS & set(resolved), HEAVY_DISTS & set(resolved)


# ---------------------------------------------------------------- the base install, in a fresh venv

def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@needs_registry
@pytest.mark.slow
def test_base_install_is_a_working_runtime_without_torch(tmp_path, tiny_export):
    src = tmp_path / "src"  # only what a wheel is built from (no build/ litter in the working tree)
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "vedit", src / "vedit", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py, vedit_bin = env_dir / "bin" / "python", env_dir / "bin" / "vedit"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PIP_NO_CACHE_DIR", None)  # pip's own download cache makes a second run fast
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-c", str(REPO / "requirements" / "constraints.txt"),
                        str(src)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, env=env)
    installed = {canonicalize_name(d["name"]) for d in json.loads(listed.stdout)}
    assert "onnxruntime" in installed and not HEAVY_DISTS & installed, HEAVY_DISTS & installed
    print(f"base install: {_du_mb(env_dir):.0f} MB in {len(installed)} distributions")

    env.update(HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    r = subprocess.run([str(vedit_bin), "predict", "--model", str(tiny_export), "--json", "golden hour"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    from vedit.decoding import Predictor

    expected = Predictor.load(tiny_export, threads=1).predict(["golden hour"])[0].to_json()
    assert json.loads(r.stdout) == expected

    # a command that needs an extra says which, in one line, before doing anything
    r = subprocess.run([str(vedit_bin), "triton", "build", str(tiny_export)], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: vedit triton build needs the vedit[triton] extra (missing: grpc, pytriton, tritonclient); "
        "install it with: pip install 'vedit[triton]'"]
    r = subprocess.run([str(vedit_bin), "preview", "golden hour", "--image", "photo.jpg", "-o", "out.png", "--model",
                        str(tiny_export)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: vedit preview needs the vedit[render] extra (missing: PIL, colour, scipy, skimage, tifffile); "
        "install it with: pip install 'vedit[render]'"]
