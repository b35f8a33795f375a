"""Issue 22 on Kubernetes: Pod Security Standards "restricted", the front as a sidecar, the
NetworkPolicy, the Ingress's TLS and limits, and the archive check that runs before the server.

The PSS rules are written out here from the standard (kubernetes.io/docs/concepts/security/
pod-security-standards, "Restricted"), independently of the code that builds the pods; the archive
check is the init container's own shell script, run here with sh, sha256sum and tar.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("kubernetes_validate")

from vedit.deploy import manifests as mf  # noqa: E402
from vedit.deploy.manifests import DeployOptions, write_manifests  # noqa: E402
from vedit.serving.front import nginx_binary, pod_front_conf  # noqa: E402
from vedit.triton_repo import build_repository  # noqa: E402
from support import kserve_pod_spec as as_pod_spec  # noqa: E402

IMAGE = "reg.example/vedit@sha256:" + "a" * 64
FETCH = "reg.example/storage-initializer@sha256:" + "b" * 64
SHA = "c" * 64

#: volume types the restricted profile allows
PSS_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
               "secret"}


def pss_restricted_violations(pod: dict) -> list[str]:
    """Every rule of the "restricted" profile (and "baseline", which it includes) the pod spec breaks."""
    bad = []
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad.append(key)
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= PSS_VOLUMES:
            bad.append(f"volume {v['name']}: {kinds - PSS_VOLUMES}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
        # beyond the profile, what issue 22 asks: read-only root, limits on everything
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem")
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get("limits", {})):
            bad.append(f"{name}: cpu and memory limits")
        if "@sha256:" not in c["image"]:
            bad.append(f"{name}: image by digest")
    if pod.get("automountServiceAccountToken") is not False:
        bad.append("automountServiceAccountToken must be false")
    return bad


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_export):
    return build_repository(tiny_export, profile="cpu", out=tmp_path_factory.mktemp("hardening") / "repo")


def _load(d: Path) -> dict:
    return {f.name: yaml.safe_load(f.read_text()) for f in sorted(d.glob("*.yaml"))}


VARIANTS = {
    "pvc": dict(),
    "s3": dict(model_uri="s3://models/repo.tar.gz", model_sha256=SHA, fetch_image=FETCH),
    "pvc-archive": dict(model_uri="pvc://archives/vedit/repo.tar", model_sha256=SHA),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_pods_pass_the_restricted_profile(repo, tmp_path, variant):
    out, _, _ = write_manifests(repo, tmp_path / "k8s", DeployOptions(image=IMAGE, **VARIANTS[variant]))
    files = _load(out)
    pod = files["deployment.yaml"]["spec"]["template"]["spec"]
    assert pss_restricted_violations(pod) == []
    assert all(o["metadata"]["namespace"] == "vedit" for n, o in files.items() if n != "kustomization.yaml")


def test_kserve_predictor_passes_the_restricted_profile(repo, tmp_path):
    opts = DeployOptions(target="kserve", image=IMAGE, model_uri="https://x.example/repo.tar.gz", model_sha256=SHA,
                         fetch_image=FETCH)
    out, _, _ = write_manifests(repo, tmp_path / "ks", opts)
    assert pss_restricted_violations(as_pod_spec(_load(out)["inferenceservice.yaml"])) == []


def test_the_front_sidecar_is_the_local_fronts_rendering(repo, tmp_path):
    """Same allow-list and limits as `vedit triton serve`'s front: the ConfigMap is that rendering, it
    proxies to Triton's loopback port, and nginx accepts it (nginx -t, with the pod's paths)."""
    out, _, _ = write_manifests(repo, tmp_path / "k8s", DeployOptions(image=IMAGE))
    files = _load(out)
    conf = files["front-configmap.yaml"]["data"]["nginx.conf"]
    facts = mf.read_repository(repo)
    names = ("localhost", "vedit", "vedit.vedit", "vedit.vedit.svc", "vedit.vedit.svc.cluster.local", "~.")
    assert conf == pod_front_conf(body_limit=facts.body_limit, listen_port=8080, upstream_port=8000,
                                  directory="/run/vedit-front", names=names)
    assert mf.front_names(DeployOptions(image=IMAGE, host="vedit.example.com"))[-1] == "vedit.example.com"
    assert f"client_max_body_size {facts.body_limit};" in conf and "server 127.0.0.1:8000;" in conf
    assert "access_log /dev/stdout" in conf and "user " not in conf
    template = files["deployment.yaml"]["spec"]["template"]
    assert template["metadata"]["annotations"]["vedit/front-config-sha256"] == hashlib.sha256(conf.encode()).hexdigest()
    front = template["spec"]["containers"][1]
    assert front["command"][:1] == ["nginx"] and front["ports"] == [{"name": "front", "containerPort": 8080,
                                                                      "protocol": "TCP"}]
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/system-deps.sh)")
    run = tmp_path / "run"
    (run / "tmp").mkdir(parents=True)
    local = conf.replace("/run/vedit-front", str(run)).replace("listen 0.0.0.0:8080", "listen 127.0.0.1:1")
    (tmp_path / "nginx.conf").write_text(local)
    test = subprocess.run([nginx_binary(), "-t", "-p", str(run), "-c", str(tmp_path / "nginx.conf"), "-e", "/dev/stderr"],
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr


def test_network_policy_admits_the_ingress_controller_and_prometheus_only(repo, tmp_path):
    for variant, egress_ports in (("pvc", set()), ("s3", {53, 443}), ("pvc-archive", set())):
        out, _, _ = write_manifests(repo, tmp_path / variant, DeployOptions(image=IMAGE, **VARIANTS[variant]))
        files = _load(out)
        spec = files["networkpolicy.yaml"]["spec"]
        assert spec["podSelector"]["matchLabels"] == files["deployment.yaml"]["spec"]["selector"]["matchLabels"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        allowed = {(r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    tuple(p["port"] for p in r["ports"])) for r in spec["ingress"]}
        assert allowed == {("ingress-nginx", (8080,)), ("monitoring", (8002,))}
        assert {p["port"] for r in spec["egress"] for p in r["ports"]} == egress_ports
        # the ports admitted are the front's and the metrics', and nothing else listens on the pod's address
        pod = files["deployment.yaml"]["spec"]["template"]["spec"]
        assert {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])} == {8080, 8002}


def test_ingress_has_tls_rate_limits_and_optional_basic_auth(repo, tmp_path):
    out, _, _ = write_manifests(repo, tmp_path / "a", DeployOptions(image=IMAGE, host="vedit.example.com"))
    ing = _load(out)["ingress.yaml"]
    ann = ing["metadata"]["annotations"]
    assert ing["spec"]["tls"] == [{"secretName": "vedit-tls", "hosts": ["vedit.example.com"]}]
    assert ann["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert int(ann["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    assert int(ann["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    assert "nginx.ingress.kubernetes.io/auth-type" not in ann
    out, _, _ = write_manifests(repo, tmp_path / "b", DeployOptions(image=IMAGE, tls_secret="cert",
                                                                    basic_auth_secret="htpasswd"))
    ing = _load(out)["ingress.yaml"]
    ann = ing["metadata"]["annotations"]
    assert ing["spec"]["tls"] == [{"secretName": "cert"}]
    assert (ann["nginx.ingress.kubernetes.io/auth-type"], ann["nginx.ingress.kubernetes.io/auth-secret"]) == (
        "basic", "htpasswd")


# -- the archive check, run for real ------------------------------------------------------------

def _archive(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_check(tmp_path: Path, sha: str, archive: str | None) -> subprocess.CompletedProcess:
    fetch, models = tmp_path / "fetch", tmp_path / "models"
    models.mkdir(exist_ok=True)
    script = mf.verify_script(sha, archive).replace(mf.FETCH_DIR, str(fetch)).replace(mf.MODELS_DIR, str(models))
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("sha256sum") is None or shutil.which("tar") is None, reason="coreutils and tar")
def test_the_init_check_unpacks_the_named_archive_and_nothing_else(tmp_path):
    (tmp_path / "fetch").mkdir()
    good = tmp_path / "fetch" / "repo.tar.gz"
    sha = _archive(good, {"vedit/config.pbtxt": b'name: "vedit"\n', "vedit/1/model.py": b"# the real one\n"})
    done = _run_check(tmp_path, sha, None)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "vedit" / "1" / "model.py").read_bytes() == b"# the real one\n"

    shutil.rmtree(tmp_path / "models")
    evil_sha = _archive(good, {"vedit/config.pbtxt": b'name: "vedit"\n', "vedit/1/model.py": b"import os  # evil\n"})
    done = _run_check(tmp_path, sha, None)  # the pinned sha256 is the good one's
    assert done.returncode == 1 and evil_sha[:12] in done.stderr and "refusing to serve it" in done.stderr
    assert list((tmp_path / "models").iterdir()) == []

    (tmp_path / "fetch" / "other").write_bytes(b"x")  # e.g. an initializer that unpacked the archive itself
    done = _run_check(tmp_path, evil_sha, None)
    assert done.returncode == 1 and "expected one archive file" in done.stderr
    assert list((tmp_path / "models").iterdir()) == []

    done = _run_check(tmp_path, evil_sha, f"{mf.FETCH_DIR}/repo.tar.gz")  # a pvc: the path is named
    assert done.returncode == 0 and (tmp_path / "models" / "vedit" / "1" / "model.py").exists()
