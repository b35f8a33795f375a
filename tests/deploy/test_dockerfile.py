"""Dockerfile.triton: a Triton base with the August 2025 fixes, a non-root user, a health check and
hashed requirements that cover what requirements/serving-gpu.txt asks for.

The image cannot be built here (no docker, no GPU): checkov's Dockerfile checks run in
test_checkov.py; this reads the files themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile.triton").read_text()
HASHED = ROOT / "requirements" / "serving-gpu-hashes.txt"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [tuple(ln.strip().split(None, 1)) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_base_image_has_the_2025_fixes():
    (base,) = [arg for op, arg in _instructions() if op == "FROM"]
    m = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-py3", base)
    assert m and (int(m.group(1)), int(m.group(2))) >= (25, 7), base


def test_runs_as_a_non_root_user_with_a_health_check():
    ops = _instructions()
    users = [arg for op, arg in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) == 10001  # the runAsUser of the generated pods
    assert any(op == "HEALTHCHECK" and "/v2/health/ready" in arg for op, arg in ops)


def _hashed() -> dict[str, tuple[str, list[str]]]:
    out = {}
    text = re.sub(r"\\\n", " ", HASHED.read_text())
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        spec, *hashes = line.split("--hash=")
        name, version = spec.strip().split("==")
        out[name] = (version, [h.strip() for h in hashes])
    return out


def test_requirements_are_installed_by_hash_and_cover_the_serving_list():
    assert "--require-hashes" in DOCKERFILE and "requirements/serving-gpu-hashes.txt" in DOCKERFILE
    hashed = _hashed()
    assert all(h and all(re.fullmatch(r"sha256:[0-9a-f]{64}", x) for x in h) for _, h in hashed.values())
    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3"}  # the image's
    constraints = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            r = Requirement(line)
            constraints[r.name.lower()] = r
    wanted = []
    for line in (ROOT / "requirements" / "serving-gpu.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):
            r = Requirement(line)
            if r.marker is None or r.marker.evaluate(env):
                wanted.append(r)
    assert "onnxruntime-gpu" in {r.name for r in wanted} and "onnxruntime" not in hashed
    for r in wanted:
        name = r.name.lower()
        assert name in hashed, f"{name} is not in {HASHED.name}: run scripts/lock-serving-gpu.sh"
        version = hashed[name][0]
        assert r.specifier.contains(version, prereleases=True), (name, version, str(r.specifier))
        if name in constraints:
            assert constraints[name].specifier.contains(version, prereleases=True), (name, version)
