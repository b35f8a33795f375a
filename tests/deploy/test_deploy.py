"""``vedit triton deploy``: manifests derived from a real repository, validated offline.

The written YAML is read back and validated again here, independently of the code under test:
core objects with ``kubernetes_validate.validate(strict=True)`` directly, and the expected numbers
(CPU, GPUs, body limit, probes, ports) are worked out from the profile and ``config.pbtxt`` by hand.
"""

from __future__ import annotations

import importlib.util

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from click.testing import CliRunner  # noqa: E402

from vedit.errors import TritonRepoError  # noqa: E402
from vedit.triton_repo import build_repository  # noqa: E402
from vedit.triton_repo.config import MAX_INTENT_BYTES, parse_config  # noqa: E402
from vedit.deploy.manifests import (  # noqa: E402
    K8S_VERSION,
    DeployOptions,
    build_manifests,
    validate,
    write_manifests,
)
from vedit.triton_repo.profiles import PROFILES  # noqa: E402

# never imported: kserve and tritonclient register the same gRPC messages (vedit reads its models' sources)
needs_kserve = pytest.mark.skipif(importlib.util.find_spec("kserve") is None,
                                  reason="the KServe SDK (deploy extra) checks InferenceServices")

CORE_FILES = ["front-configmap.yaml", "deployment.yaml", "service.yaml", "networkpolicy.yaml", "hpa.yaml", "pdb.yaml",
              "ingress.yaml"]
IMAGE = "reg.example/vedit@sha256:" + "a" * 64
FETCH = "reg.example/storage-initializer@sha256:" + "b" * 64
SHA = "c" * 64


def opts_(**kw) -> DeployOptions:
    """Options with an image by digest (required) unless the test says otherwise."""
    return DeployOptions(**{"image": IMAGE, **kw})


@pytest.fixture(scope="module")
def repos(tmp_path_factory, tiny_export):
    base = tmp_path_factory.mktemp("deploy_repos")
    return {p: build_repository(tiny_export, profile=p, out=base / p) for p in ("cpu", "l4", "a100")}


def _load(d):
    return {f.name: yaml.safe_load(f.read_text()) for f in sorted(d.glob("*.yaml"))}


def _container(deployment):
    c, front = deployment["spec"]["template"]["spec"]["containers"]
    assert (c["name"], front["name"]) == ("triton", "front")
    return c


def _instances(repo):
    cfg = parse_config((repo / "vedit" / "config.pbtxt").read_text())
    return sum(g.count for g in cfg.instance_group)


@pytest.mark.parametrize("profile", ["cpu", "l4", "a100"])
def test_k8s_manifests_are_valid_and_follow_the_profile(repos, tmp_path, profile):
    repo = repos[profile]
    out, report, _ = write_manifests(repo, tmp_path / "k8s", opts_(replicas=2))
    files = _load(out)
    assert sorted(files) == sorted(CORE_FILES + ["kustomization.yaml"])
    assert files["kustomization.yaml"]["resources"] == CORE_FILES
    assert len(report) == len(CORE_FILES)
    for name in CORE_FILES:  # independently of vedit's own check
        kubernetes_validate.validate(files[name], K8S_VERSION, strict=True)

    _conf, dep, svc, _netpol, hpa, pdb, ing = (files[n] for n in CORE_FILES)
    c = _container(dep)
    assert c["image"] == IMAGE
    assert "--model-repository=/models" in c["args"]
    assert f"--cache-config=local,size={64 * 1024 * 1024}" in c["args"]
    # Triton's HTTP and gRPC on loopback, reached through the front (port 8080) in the same pod
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1"} <= set(c["args"])
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8002}
    host = [{"name": "Host", "value": "localhost"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "front", "httpHeaders": host}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "front", "httpHeaders": host}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"

    prof = PROFILES[profile]
    n = _instances(repo)
    assert c["resources"]["requests"]["cpu"] == str(n * prof.threads + 1)
    assert int(c["resources"]["limits"]["cpu"]) > int(c["resources"]["requests"]["cpu"])
    req_mi = int(c["resources"]["requests"]["memory"].removesuffix("Mi"))
    lim_mi = int(c["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert 64 + n * 256 < req_mi < lim_mi  # at least the cache and a stub per instance
    pod = dep["spec"]["template"]["spec"]
    if prof.kind == "KIND_GPU":
        assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == {"l4": "NVIDIA-L4", "a100": "NVIDIA-A100-SXM4-80GB"}[
            profile]
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert "--pinned-memory-pool-byte-size=0" not in c["args"]
    else:
        assert "nvidia.com/gpu" not in c["resources"]["limits"] and "nodeSelector" not in pod
        assert "--pinned-memory-pool-byte-size=0" in c["args"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "vedit-model-repository"

    assert dep["spec"]["replicas"] == 2
    sel = dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"] == sel and pdb["spec"]["selector"]["matchLabels"] == sel
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "http": (8000, "front"), "metrics": (8002, "metrics")}
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # the Ingress carries the local front's limit: batch x intent bytes x 6 (JSON escapes) + 16 KiB
    limit = prof.max_batch_size * MAX_INTENT_BYTES * 6 + 16 * 1024
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{limit // 1024}k"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {"name": "vedit",
                                                                                "port": {"name": "http"}}


def test_model_uri_adds_a_fetching_init_container_and_queue_scaling_a_pods_metric(repos, tmp_path):
    opts = opts_(model_uri="s3://models/vedit-cpu.tar.gz", model_sha256=SHA, fetch_image=FETCH, scale_on="queue",
                 replicas=1, max_replicas=5)
    out, _, _ = write_manifests(repos["cpu"], tmp_path / "k8s", opts)
    files = _load(out)
    pod = files["deployment.yaml"]["spec"]["template"]["spec"]
    fetch, verify = pod["initContainers"]
    assert fetch["args"] == ["s3://models/vedit-cpu.tar.gz", "/fetch"] and fetch["image"] == FETCH
    assert verify["image"] == IMAGE and SHA in verify["command"][-1]
    assert pod["volumes"][0] == {"name": "model-repository", "emptyDir": {"sizeLimit": "20Gi"}}
    metric = files["hpa.yaml"]["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "triton_queue_us_per_request"
    assert files["hpa.yaml"]["spec"]["maxReplicas"] == 5
    rule = (out / "prometheus-adapter-rule.yaml").read_text()
    assert "nv_inference_queue_duration_us" in rule and "triton_queue_us_per_request" in rule


@needs_kserve
@pytest.mark.parametrize("profile", ["cpu", "l4"])
def test_kserve_inference_service(repos, tmp_path, profile):
    opts = opts_(target="kserve", model_uri="gs://bucket/vedit.tar", model_sha256=SHA, fetch_image=FETCH)
    out, report, _ = write_manifests(repos[profile], tmp_path / "ks", opts)
    files = _load(out)
    assert sorted(files) == ["inferenceservice.yaml", "kustomization.yaml", "networkpolicy.yaml", "pdb.yaml"]
    assert "valid against the KServe SDK models" in report[0]
    kubernetes_validate.validate(files["pdb.yaml"], K8S_VERSION, strict=True)
    kubernetes_validate.validate(files["networkpolicy.yaml"], K8S_VERSION, strict=True)
    isvc = files["inferenceservice.yaml"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    pred = isvc["spec"]["predictor"]
    t = pred["triton"]
    # fetched and checked by vedit's init containers, not by KServe (whose initializer unpacks unchecked)
    assert "storageUri" not in t and t["image"] == IMAGE
    assert [c["name"] for c in pred["initContainers"]] == ["fetch-model-archive", "verify-model-archive"]
    assert pred["initContainers"][0]["args"] == ["gs://bucket/vedit.tar", "/fetch"]
    assert {"name": "model-repository", "mountPath": "/mnt/models", "readOnly": True} in t["volumeMounts"]
    assert t["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert (pred["minReplicas"], pred["maxReplicas"], pred["scaleMetric"]) == (2, 6, "cpu")
    assert ("nvidia.com/gpu" in t["resources"]["limits"]) == (profile == "l4")
    assert pdb_selects(files["pdb.yaml"]) == {"serving.kserve.io/inferenceservice": "vedit"}


def pdb_selects(pdb):
    return pdb["spec"]["selector"]["matchLabels"]


def test_a_broken_manifest_is_caught_before_writing(repos):
    _, m = build_manifests(repos["cpu"], opts_())
    _container(m.objects["deployment.yaml"])["readinessProbe"]["httpGet"]["paht"] = "/v2/health/ready"
    with pytest.raises(TritonRepoError, match="readinessProbe.httpGet.*'paht' was unexpected"):
        validate(m)
    _, m = build_manifests(repos["cpu"], opts_())
    m.objects["hpa.yaml"]["spec"]["minReplicas"] = "2"
    with pytest.raises(TritonRepoError, match="minReplicas"):
        validate(m)


@needs_kserve
def test_a_broken_inference_service_is_caught(repos):
    _, m = build_manifests(repos["cpu"], opts_(target="kserve", model_uri="s3://b/r.tar", model_sha256=SHA,
                                               fetch_image=FETCH))
    pred = m.objects["inferenceservice.yaml"]["spec"]["predictor"]
    pred["trtion"] = pred.pop("triton")
    with pytest.raises(TritonRepoError, match="trtion: not a field of V1beta1PredictorSpec"):
        validate(m)
    pred["triton"] = pred.pop("trtion")
    pred["triton"]["args"] = "--cache-config=local,size=1"
    with pytest.raises(TritonRepoError, match="triton.args: expected a list"):
        validate(m)
    pred["triton"]["args"] = []
    pred["triton"]["resources"]["limit"] = pred["triton"]["resources"].pop("limits")
    with pytest.raises(TritonRepoError, match="resources: Additional properties.*'limit' was unexpected"):
        validate(m)


INVALID = [
    (dict(profile="l4"), "built for profile cpu"),
    (dict(profile="tpu"), "unknown profile 'tpu'"),
    (dict(target="kserve"), "needs --model-uri"),
    (dict(target="kserve", model_uri="s3://b/r", model_sha256=SHA, fetch_image=FETCH, scale_on="queue"),
     "--scale-on queue needs --target k8s"),
    (dict(replicas=0), "at least 1"),
    (dict(replicas=3, max_replicas=2), "below --replicas"),
    (dict(model_uri="ftp://x/y", model_sha256=SHA), "--model-uri 'ftp://x/y'"),
    (dict(model_uri="http://x/repo.tar", model_sha256=SHA), "--model-uri 'http://x/repo.tar'"),
    (dict(model_uri="hdfs://x/repo.tar", model_sha256=SHA), "--model-uri 'hdfs://x/repo.tar'"),
    (dict(model_uri="https://x/repo.tar"), "--model-uri needs --model-sha256"),
    (dict(model_uri="https://x/repo.tar", model_sha256="abc"), "--model-uri needs --model-sha256 (64 hex"),
    (dict(model_sha256=SHA), "give --model-uri too"),
    (dict(model_uri="pvc://claim", model_sha256=SHA), "use pvc://CLAIM/PATH/TO/ARCHIVE"),
    (dict(model_uri="pvc://claim/../x.tar", model_sha256=SHA), "use pvc://CLAIM/PATH/TO/ARCHIVE"),
    (dict(model_uri="s3://b/r", model_sha256=SHA, fetch_image=FETCH, pvc="claim"), "give one"),
    (dict(model_uri="https://x/repo.tar", model_sha256=SHA), "--fetch-image 'kserve/storage-initializer:v0.21.0'"),
    (dict(image=None), "give --image NAME@sha256:DIGEST"),
    (dict(image="vedit-triton:latest"), "--image 'vedit-triton:latest': give it by digest"),
    (dict(image="reg.example/vedit"), "give it by digest"),
    (dict(image="reg.example/vedit@sha256:abc"), "give it by digest"),
    (dict(namespace="default"), "other than 'default'"),
    (dict(name="Vedit_1"), "DNS label"),
]


@pytest.mark.parametrize("kwargs, message", INVALID, ids=[m for _, m in INVALID])
def test_invalid_combinations_are_one_line_and_write_nothing(repos, tmp_path, kwargs, message):
    with pytest.raises(TritonRepoError) as exc:
        write_manifests(repos["cpu"], tmp_path / "out", opts_(**kwargs))
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_cli_writes_atomically_and_refuses_an_existing_dir(repos, tmp_path):
    from vedit.cli import cli

    out = tmp_path / "k8s"
    no_image = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(out)])
    assert no_image.exit_code == 1 and "give --image NAME@sha256:DIGEST" in no_image.output and not out.exists()
    tagged = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(tmp_path / "tagged"),
                                      "--image", "vedit-triton:1", "--allow-tag"])
    assert tagged.exit_code == 0, tagged.output
    result = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(out), "--replicas", "3",
                                      "--image", IMAGE])
    assert result.exit_code == 0, result.output
    assert result.output.count("valid    ") == len(CORE_FILES)
    assert _load(out)["deployment.yaml"]["spec"]["replicas"] == 3
    again = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(out), "--replicas", "4",
                                     "--image", IMAGE])
    assert again.exit_code == 1 and "already exists" in again.output
    assert _load(out)["deployment.yaml"]["spec"]["replicas"] == 3
    bad = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(out), "--force", "--target", "kserve",
                                   "--image", IMAGE])
    assert bad.exit_code == 1
    assert [ln for ln in bad.output.splitlines() if ln.startswith("error:")] == [bad.output.strip()]
    assert _load(out)["deployment.yaml"]["spec"]["replicas"] == 3  # the refused run changed nothing
    forced = CliRunner().invoke(cli, ["triton", "deploy", str(repos["cpu"]), "-o", str(out), "--replicas", "4", "--force",
                                      "--image", IMAGE])
    assert forced.exit_code == 0 and _load(out)["deployment.yaml"]["spec"]["replicas"] == 4
