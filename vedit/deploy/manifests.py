"""Kubernetes and KServe manifests for a built Triton repository, derived and checked offline.

``vedit triton deploy REPO --target k8s|kserve -o DIR`` writes what a cluster needs to serve REPO.
Nothing comes from a hand-kept YAML template: every number is derived from the repository's own
``config.pbtxt`` (instances, batch size, intent limit, GPU arena share) and its serving profile
(:mod:`vedit.triton_repo.profiles`), so a manifest cannot drift from the model it serves.

- ``k8s``: a Deployment (the derived image of ``Dockerfile.triton``; the repository from a
  PersistentVolumeClaim or fetched by an init container from ``--model-uri``; GPU requests, node
  selector and tolerations from the profile; readiness, liveness and startup probes on Triton's
  health endpoints; the response cache; CPU and memory sized from the instances), a Service
  (HTTP 8000, gRPC 8001, metrics 8002), a HorizontalPodAutoscaler, a PodDisruptionBudget and an
  Ingress whose ``proxy-body-size`` is the same limit the local nginx front enforces
  (:func:`vedit.serving.front.body_limit`).
- ``kserve``: an InferenceService with the Triton predictor and the same image, arguments, probes,
  resources and scaling bounds, plus the PodDisruptionBudget.

Before anything is written, the core objects are validated by ``kubernetes-validate`` (Kubernetes'
own OpenAPI schemas, shipped in the package; unknown fields are errors) and the InferenceService
field by field against the KServe SDK's generated models (``kserve.models``: every key must be a
field of that model, every value of the model's type, recursively into the Kubernetes types of
``kubernetes.client``). The directory is written whole or not at all (temp dir, then rename).

Scaling signal: CPU utilisation by default (every decode step is CPU work on the python stub even
with a GPU, and it needs no extra components). ``--scale-on queue`` scales on Triton's queue time
per request instead, a Pods metric that a Prometheus adapter must provide; the adapter rule is in
:data:`QUEUE_METRIC_RULE` and in docs/how-to/deploy-kubernetes.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vedit.atomicio import atomic_dir
from vedit.errors import TritonRepoError
from vedit.triton_repo.config import (
    EXPORT_SUBDIR,
    PARAM_GPU_MEM_LIMIT,
    PARAM_PROFILE,
    parse_config,
)
from vedit.serving.front import body_limit
from vedit.deploy.validate import K8S_VERSION, validate
from vedit.triton_repo.profiles import PROFILES, get_profile

TARGETS = ("k8s", "kserve")
SCALE_SIGNALS = ("cpu", "queue")
DEFAULT_IMAGE = "vedit-triton:latest"
#: Fetches s3://, gs://, https://, pvc:// URIs into a directory; the same one KServe uses itself.
STORAGE_INITIALIZER = "kserve/storage-initializer:v0.21.0"  # the release of the kserve SDK validated against
URI_SCHEMES = ("s3://", "gs://", "https://", "http://", "pvc://", "hdfs://", "webhdfs://")
#: GPU Feature Discovery's product label for each GPU profile's card.
GPU_PRODUCT = {"l4": "NVIDIA-L4", "a100": "NVIDIA-A100-SXM4-80GB"}

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
#: KServe's Triton runtime serves HTTP on 8080 and gRPC on 9000 (its ServingRuntime sets them).
KSERVE_HTTP_PORT = 8080
MODELS_DIR = "/models"
MIB = 1024**2

#: CPU utilisation the HPA keeps pods at: headroom for a burst while a new pod starts (~1 min).
CPU_TARGET_PERCENT = 70
#: ``--scale-on queue``: average time a request waits in Triton's queue that triggers a scale-up.
QUEUE_TARGET_US = 50_000
QUEUE_METRIC = "triton_queue_us_per_request"
QUEUE_METRIC_RULE = """\
# prometheus-adapter rule (values.yaml `rules.custom`): Triton's queue time per request, per pod
- seriesQuery: 'nv_inference_queue_duration_us{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {as: "triton_queue_us_per_request"}
  metricsQuery: |
    sum(rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)
    / clamp_min(sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>), 1)
"""

#: Host memory, from what was measured here (Triton ~45 MB, ~78 MB per python instance for the demo
#: T5, 9 MB of weights): a base for tritonserver and its libraries, and per instance a stub process
#: with Python, onnxruntime and vedit plus the weights twice (file cache and session).
BASE_MEMORY = 512 * MIB
INSTANCE_MEMORY = 256 * MIB
#: A GPU instance also keeps CUDA's host-side state (pinned staging, libraries).
GPU_INSTANCE_HOST_MEMORY = 1024 * MIB


@dataclass(frozen=True)
class DeployOptions:
    target: str = "k8s"
    name: str = "vedit"
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    max_replicas: int | None = None
    """Default: three times ``replicas``."""
    profile: str | None = None
    """Default: the profile the repository was built for; another one is refused."""
    model_uri: str | None = None
    pvc: str | None = None
    """Claim holding the repository when there is no ``model_uri`` (default ``<name>-model-repository``)."""
    scale_on: str = "cpu"
    cache_mb: int = 64
    host: str | None = None
    """Ingress host (default: any host)."""
    namespace: str | None = None


@dataclass(frozen=True)
class RepoFacts:
    """What the manifests need to know about the repository, read from its configs and files."""

    model: str
    profile: str
    kind: str
    instances: int
    max_batch_size: int
    body_limit: int
    weights_bytes: int
    gpu_mem_limit: int


@dataclass
class Manifests:
    objects: dict[str, dict] = field(default_factory=dict)
    """file name -> object, in apply order."""
    notes: list[str] = field(default_factory=list)


# -- reading the repository --------------------------------------------------------------------


def read_repository(repository: str | Path) -> RepoFacts:
    repo = Path(repository)
    if not repo.is_dir():
        raise TritonRepoError(f"{repo}: model repository not found; build one with `vedit triton build`")
    configs = sorted(repo.glob("*/config.pbtxt"))
    if not configs:
        raise TritonRepoError(f"{repo}: no <model>/config.pbtxt inside; not a Triton model repository")
    ours = []
    for path in configs:
        cfg = parse_config(path.read_text(encoding="utf-8"), source=str(path))
        if PARAM_PROFILE in cfg.parameters:
            ours.append((path, cfg))
    if len(ours) != 1:
        raise TritonRepoError(f"{repo}: expected one vedit model (built by `vedit triton build`), found {len(ours)}")
    path, cfg = ours[0]
    name = cfg.name or path.parent.name
    kind = cfg.instance_group[0].kind if cfg.instance_group else 0
    kind_name = type(cfg.instance_group[0]).Kind.Name(kind) if cfg.instance_group else "KIND_CPU"
    instances = sum(g.count or 1 for g in cfg.instance_group) or 1
    export = path.parent / "1" / EXPORT_SUBDIR
    weights = sum(p.stat().st_size for p in export.rglob("*.onnx*")) if export.is_dir() else 0
    gpu_limit = cfg.parameters.get(PARAM_GPU_MEM_LIMIT)
    return RepoFacts(
        model=name,
        profile=cfg.parameters[PARAM_PROFILE].string_value,
        kind=kind_name,
        instances=instances,
        max_batch_size=cfg.max_batch_size,
        body_limit=body_limit(repo),
        weights_bytes=weights,
        gpu_mem_limit=int(gpu_limit.string_value) if gpu_limit and gpu_limit.string_value.isdigit() else 0,
    )


# -- checking options ----------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")


def check_options(opts: DeployOptions, facts: RepoFacts) -> None:
    """Refuse combinations that cannot work, each with one line saying what to do."""
    if opts.target not in TARGETS:
        raise TritonRepoError(f"unknown target {opts.target!r}; use one of: {', '.join(TARGETS)}")
    if opts.profile is not None:
        get_profile(opts.profile)
        if opts.profile != facts.profile:
            raise TritonRepoError(
                f"the repository was built for profile {facts.profile} ({facts.kind}); rebuild it with "
                f"`vedit triton build EXPORT --profile {opts.profile}` or deploy it with --profile {facts.profile}"
            )
    if facts.profile not in PROFILES:
        raise TritonRepoError(f"the repository names profile {facts.profile!r}, which this vedit does not know")
    if not _DNS_LABEL.match(opts.name):
        raise TritonRepoError(f"--name {opts.name!r}: use lower-case letters, digits and '-' (a DNS label, "
                              "at most 42 characters, starting with a letter)")
    if opts.replicas < 1:
        raise TritonRepoError("--replicas must be at least 1")
    if opts.max_replicas is not None and opts.max_replicas < opts.replicas:
        raise TritonRepoError(f"--max-replicas {opts.max_replicas} is below --replicas {opts.replicas}")
    if opts.scale_on not in SCALE_SIGNALS:
        raise TritonRepoError(f"--scale-on {opts.scale_on!r}: use one of {', '.join(SCALE_SIGNALS)}")
    if opts.model_uri is not None and not opts.model_uri.startswith(URI_SCHEMES):
        raise TritonRepoError(f"--model-uri {opts.model_uri!r}: use one of {', '.join(URI_SCHEMES)} "
                              "(the storage initializer fetches those)")
    if opts.model_uri and opts.pvc:
        raise TritonRepoError("--model-uri and --pvc both say where the repository is; give one")
    if opts.target == "kserve":
        if not opts.model_uri:
            raise TritonRepoError("--target kserve needs --model-uri: KServe fetches the model repository from "
                                  "storage (s3://, gs://, pvc://CLAIM/PATH, https://...)")
        if opts.scale_on == "queue":
            raise TritonRepoError("--scale-on queue needs --target k8s (KServe scales on cpu, memory, concurrency "
                                  "or rps)")
        if opts.host:
            raise TritonRepoError("--host applies to --target k8s (KServe makes its own ingress host names)")
    if opts.cache_mb < 0:
        raise TritonRepoError("--cache-mb cannot be negative")


# -- sizing ----------------------------------------------------------------------------------------


def _mi(nbytes: float) -> str:
    return f"{math.ceil(nbytes / MIB)}Mi"


def resources(facts: RepoFacts, cache_mb: int) -> dict[str, dict[str, str]]:
    """Requests and limits for the Triton container, from the instance count and the weights.

    CPU: each instance runs ``threads`` onnxruntime threads (the profile's), plus one core for
    Triton's HTTP/gRPC threads and the dynamic batcher; the limit leaves one more core of burst.
    Memory: :data:`BASE_MEMORY` + the response cache + per instance :data:`INSTANCE_MEMORY` and the
    weights twice; GPU instances add :data:`GPU_INSTANCE_HOST_MEMORY` of host memory. The limit is
    1.5x the request (a reload briefly holds old and new instances). A GPU profile asks for one
    whole GPU: the instance count and each instance's CUDA arena were sized for exactly one card.
    """
    prof = get_profile(facts.profile)
    per_instance = INSTANCE_MEMORY + 2 * facts.weights_bytes
    if prof.kind == "KIND_GPU":
        per_instance += GPU_INSTANCE_HOST_MEMORY
    memory = BASE_MEMORY + cache_mb * MIB + facts.instances * per_instance
    cpu = facts.instances * max(1, prof.threads) + 1
    req = {"cpu": str(cpu), "memory": _mi(memory)}
    lim = {"cpu": str(cpu + 1), "memory": _mi(memory * 1.5)}
    if prof.kind == "KIND_GPU":
        req["nvidia.com/gpu"] = lim["nvidia.com/gpu"] = "1"
    return {"requests": req, "limits": lim}


def _size_text(nbytes: int) -> str:
    """An nginx size: ``64k`` when it divides evenly, else plain bytes."""
    return f"{nbytes // 1024}k" if nbytes % 1024 == 0 else str(nbytes)


# -- building ------------------------------------------------------------------------------------


def _labels(opts: DeployOptions, facts: RepoFacts) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vedit",
        "app.kubernetes.io/instance": opts.name,
        "app.kubernetes.io/component": "triton",
        "vedit/profile": facts.profile,
    }


def _selector(opts: DeployOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vedit", "app.kubernetes.io/instance": opts.name}


def _meta(opts: DeployOptions, facts: RepoFacts, name: str | None = None, **extra) -> dict:
    meta = {"name": name or opts.name, "labels": _labels(opts, facts), **extra}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def _triton_args(facts: RepoFacts, opts: DeployOptions, *, ports: bool) -> list[str]:
    args = [f"--model-repository={MODELS_DIR}"] if ports else []
    if opts.cache_mb:
        args.append(f"--cache-config=local,size={opts.cache_mb * MIB}")
    if ports:
        args += [f"--http-port={PORTS['http']}", f"--grpc-port={PORTS['grpc']}", f"--metrics-port={PORTS['metrics']}"]
    args.append("--exit-timeout-secs=25")  # under the pod's 30 s grace period: in-flight requests finish
    if get_profile(facts.profile).kind == "KIND_CPU":
        args += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
    return args


def _probes(port: int | str) -> dict[str, dict]:
    def get(path, period, failures, **kw):
        return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures,
                "timeoutSeconds": 3, **kw}

    return {
        # loading + warm-up of every instance may take minutes on a cold node: 10 min before liveness counts
        "startupProbe": get("/v2/health/ready", 5, 120),
        "readinessProbe": get("/v2/health/ready", 5, 3),
        "livenessProbe": get("/v2/health/live", 10, 3),
    }


def _gpu_scheduling(facts: RepoFacts) -> dict:
    if get_profile(facts.profile).kind != "KIND_GPU":
        return {}
    out: dict[str, Any] = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    if facts.profile in GPU_PRODUCT:
        out["nodeSelector"] = {"nvidia.com/gpu.product": GPU_PRODUCT[facts.profile]}
    return out


def _shm_volume(facts: RepoFacts) -> dict:
    # the python backend passes tensors through /dev/shm (64 MB by default in containers)
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _mi(128 * MIB + facts.instances * 64 * MIB)}}


def build_k8s(facts: RepoFacts, opts: DeployOptions) -> Manifests:
    out = Manifests()
    res = resources(facts, opts.cache_mb)
    container = {
        "name": "triton",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tritonserver"],
        "args": _triton_args(facts, opts, ports=True),
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in PORTS.items()],
        "resources": res,
        **_probes("http"),
        "volumeMounts": [
            {"name": "model-repository", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    volumes: list[dict] = [_shm_volume(facts)]
    init: list[dict] = []
    if opts.model_uri:
        volumes.insert(0, {"name": "model-repository", "emptyDir": {}})
        init.append({
            "name": "fetch-model-repository",
            "image": STORAGE_INITIALIZER,
            "args": [opts.model_uri, MODELS_DIR],
            "volumeMounts": [{"name": "model-repository", "mountPath": MODELS_DIR}],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        })
        out.notes.append(f"the repository is fetched from {opts.model_uri} by an init container at every pod start")
    else:
        claim = opts.pvc or f"{opts.name}-model-repository"
        volumes.insert(0, {"name": "model-repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        out.notes.append(f"copy the repository into PersistentVolumeClaim {claim} (its root holds {facts.model}/)")
    pod_spec: dict[str, Any] = {
        **({"initContainers": init} if init else {}),
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 30,
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": _selector(opts)}},
        }]}},
        **_gpu_scheduling(facts),
    }
    template_meta = {
        "labels": _labels(opts, facts),
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORTS["metrics"]),
                        "prometheus.io/path": "/metrics"},
    }
    out.objects["deployment.yaml"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(opts, facts),
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": _selector(opts)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }
    out.objects["service.yaml"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(opts, facts),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(opts),
            "ports": [
                {"name": "http", "port": PORTS["http"], "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": PORTS["grpc"], "targetPort": "grpc", "protocol": "TCP",
                 "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": PORTS["metrics"], "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    out.objects["hpa.yaml"] = _hpa(facts, opts)
    out.objects["pdb.yaml"] = _pdb(facts, opts, _selector(opts))
    rule: dict[str, Any] = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": opts.name, "port": {"name": "http"}}}}]}}
    if opts.host:
        rule["host"] = opts.host
    out.objects["ingress.yaml"] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(opts, facts, annotations={
            # the same limit as the local nginx front: a body no valid request needs is refused (413)
            "nginx.ingress.kubernetes.io/proxy-body-size": _size_text(facts.body_limit),
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
        }),
        "spec": {"ingressClassName": "nginx", "rules": [rule]},
    }
    return out


def _hpa(facts: RepoFacts, opts: DeployOptions) -> dict:
    if opts.scale_on == "cpu":
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT}}}
    else:
        metric = {"type": "Pods", "pods": {"metric": {"name": QUEUE_METRIC}, "target": {
            "type": "AverageValue", "averageValue": str(QUEUE_TARGET_US)}}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(opts, facts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": opts.name},
            "minReplicas": opts.replicas,
            "maxReplicas": _max_replicas(opts),
            "metrics": [metric],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},  # a pod takes ~1 min to load
        },
    }


def _max_replicas(opts: DeployOptions) -> int:
    return opts.max_replicas if opts.max_replicas is not None else 3 * opts.replicas


def _pdb(facts: RepoFacts, opts: DeployOptions, selector: dict[str, str]) -> dict:
    # one pod down at a time during node drains; with a single replica that still lets drains proceed
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(opts, facts),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }


def build_kserve(facts: RepoFacts, opts: DeployOptions) -> Manifests:
    out = Manifests()
    res = resources(facts, opts.cache_mb)
    triton = {
        "storageUri": opts.model_uri,
        "protocolVersion": "v2",
        "image": opts.image,
        "args": _triton_args(facts, opts, ports=False),
        "resources": res,
        **_probes(KSERVE_HTTP_PORT),
    }
    predictor: dict[str, Any] = {
        "minReplicas": opts.replicas,
        "maxReplicas": _max_replicas(opts),
        "scaleMetric": "cpu",
        "scaleTarget": CPU_TARGET_PERCENT,
        "triton": triton,
        "volumes": [_shm_volume(facts)],
        **_gpu_scheduling(facts),
    }
    triton["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    out.objects["inferenceservice.yaml"] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(opts, facts, annotations={
            "serving.kserve.io/deploymentMode": "RawDeployment",
            "serving.kserve.io/autoscalerClass": "hpa",
            "serving.kserve.io/enable-prometheus-scraping": "true",
            "prometheus.kserve.io/port": str(PORTS["metrics"]),
            "nginx.ingress.kubernetes.io/proxy-body-size": _size_text(facts.body_limit),
        }),
        "spec": {"predictor": predictor},
    }
    out.objects["pdb.yaml"] = _pdb(facts, opts, {"serving.kserve.io/inferenceservice": opts.name})
    out.notes.append(f"KServe fetches the repository from {opts.model_uri}; the predictor serves HTTP on "
                     f"{KSERVE_HTTP_PORT} and gRPC on 9000")
    return out


def build_manifests(repository: str | Path, opts: DeployOptions) -> tuple[RepoFacts, Manifests]:
    facts = read_repository(repository)
    check_options(opts, facts)
    return facts, (build_k8s if opts.target == "k8s" else build_kserve)(facts, opts)


# -- writing ---------------------------------------------------------------------------------------


def dump(obj: dict) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)


def write_manifests(repository: str | Path, out: str | Path, opts: DeployOptions, *, force: bool = False,
                    k8s_version: str = K8S_VERSION) -> tuple[Path, list[str], Manifests]:
    """Build, validate, then write DIR atomically: the YAML files and a kustomization.yaml."""
    _facts, manifests = build_manifests(repository, opts)
    report = validate(manifests, k8s_version)
    with atomic_dir(out, force=force) as tmp:
        for fname, obj in manifests.objects.items():
            (tmp / fname).write_text(dump(obj), encoding="utf-8")
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                         "resources": list(manifests.objects)}
        (tmp / "kustomization.yaml").write_text(dump(kustomization), encoding="utf-8")
        if opts.target == "k8s" and opts.scale_on == "queue":
            (tmp / "prometheus-adapter-rule.yaml").write_text(QUEUE_METRIC_RULE, encoding="utf-8")
    return Path(out), report, manifests


__all__ = [
    "DeployOptions",
    "Manifests",
    "RepoFacts",
    "build_manifests",
    "read_repository",
    "resources",
    "write_manifests",
]
