"""checkov (the infrastructure-as-code scanner) on what ``vedit triton deploy`` writes and on
Dockerfile.triton: zero failed checks.

checkov's own dependencies conflict with vedit's pins, so it lives in a venv of its own, built once
with pip and cached under ``$VEDIT_HOME/peers`` keyed by its version (the peer-engine machinery,
:func:`vedit.peers.env.peer_env`). checkov has no policies for KServe's InferenceService: its
predictor is checked as the Pod KServe makes of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("kubernetes_validate")

from support import kserve_pod_spec  # noqa: E402

from vedit.deploy.manifests import DeployOptions, write_manifests  # noqa: E402
from vedit.triton_repo import build_repository  # noqa: E402

pytestmark = pytest.mark.slow  # the first run installs checkov (about a minute), later runs reuse it

CHECKOV = "checkov==3.3.30"
ROOT = Path(__file__).resolve().parents[2]
IMAGE = "reg.example/vedit@sha256:" + "a" * 64
FETCH = "reg.example/storage-initializer@sha256:" + "b" * 64
SHA = "c" * 64


@pytest.fixture(scope="module")
def checkov() -> Path:
    from vedit.errors import PeerError
    from vedit.peers.env import peer_env

    try:
        return peer_env("checkov", [CHECKOV], timeout=1200) / "bin" / "checkov"
    except PeerError as exc:  # no package registry reachable and no cached env: say so, do not pass
        pytest.skip(f"checkov could not be installed: {exc}")


def run_checkov(checkov: Path, directory: Path, framework: str) -> dict:
    done = subprocess.run([str(checkov), "-d", str(directory), "--framework", framework, "--quiet", "--compact",
                           "-o", "json", "--skip-download"], capture_output=True, text=True, timeout=600)
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    (report,) = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    return {"passed": report["summary"]["passed"], "failed": failed}


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_export) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("checkov")
    repo = build_repository(tiny_export, profile="cpu", out=base / "repo")
    variants = {
        "k8s": DeployOptions(image=IMAGE),
        "k8s-model-uri": DeployOptions(image=IMAGE, model_uri="s3://models/repo.tar.gz", model_sha256=SHA,
                                       fetch_image=FETCH, scale_on="queue"),
        "k8s-pvc-archive": DeployOptions(image=IMAGE, model_uri="pvc://archives/repo.tar", model_sha256=SHA),
        "kserve": DeployOptions(target="kserve", image=IMAGE, model_uri="https://x.example/repo.tar.gz",
                                model_sha256=SHA, fetch_image=FETCH),
    }
    out = {}
    for name, opts in variants.items():
        out[name], _, _ = write_manifests(repo, base / name, opts)
    isvc = yaml.safe_load((out["kserve"] / "inferenceservice.yaml").read_text())
    meta = {k: isvc["metadata"][k] for k in ("name", "namespace")}
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": kserve_pod_spec(isvc),
           "metadata": {**meta, "labels": {"serving.kserve.io/inferenceservice": meta["name"]}}}  # KServe's label
    (base / "kserve-pod").mkdir()
    (base / "kserve-pod" / "pod.yaml").write_text(yaml.safe_dump(pod))
    shutil.copy(out["kserve"] / "networkpolicy.yaml", base / "kserve-pod")
    out["kserve-pod"] = base / "kserve-pod"
    return out


@pytest.mark.parametrize("variant", ["k8s", "k8s-model-uri", "k8s-pvc-archive", "kserve-pod"])
def test_kubernetes_manifests_fail_no_checkov_check(checkov, written, variant):
    result = run_checkov(checkov, written[variant], "kubernetes")
    assert result["failed"] == [] and result["passed"] > 20


def test_dockerfile_fails_no_checkov_check(checkov, tmp_path):
    shutil.copy(ROOT / "Dockerfile.triton", tmp_path / "Dockerfile.triton")
    result = run_checkov(checkov, tmp_path, "dockerfile")
    assert result["failed"] == [] and result["passed"] > 10


def test_checkov_would_see_a_root_pod(checkov, tmp_path):
    """The scan is not vacuous: the same Deployment with the pod's securityContext removed fails."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "vedit"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": IMAGE}]}}}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(dep))
    failed = {c for c, _, _ in run_checkov(checkov, tmp_path, "kubernetes")["failed"]}
    assert {"CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_38"} <= failed
