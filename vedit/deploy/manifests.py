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

Security (issue 22): every pod passes the Pod Security Standards "restricted" profile and checkov
(``tests/deploy/test_checkov.py``): non-root user :data:`RUN_AS_USER` (the ``USER`` of
``Dockerfile.triton``), seccomp RuntimeDefault, every capability dropped, no privilege escalation,
read-only root filesystems (emptyDirs for /tmp, /dev/shm and what nginx writes), no
service-account token, limits on every container, images by digest only (``--allow-tag`` to
accept a tag). In the k8s pod, Triton's HTTP and gRPC ports listen on loopback only: traffic comes
through the nginx front in the same pod (:func:`vedit.serving.front.pod_front_conf`, the local
front's rendering: same allow-list and limits), and a NetworkPolicy admits the ingress controller
to the front's port and Prometheus to the metrics port, nothing else. The Ingress terminates TLS
and rate-limits per client. ``--model-uri`` (https, s3, gs or pvc) names one archive of the
repository whose sha256 (``--model-sha256``) an init container checks before it unpacks it:
the server never starts on a repository other than the one named.

Scaling signal: CPU utilisation by default (every decode step is CPU work on the python stub even
with a GPU, and it needs no extra components). ``--scale-on queue`` scales on Triton's queue time
per request instead, a Pods metric that a Prometheus adapter must provide; the adapter rule is in
:data:`QUEUE_METRIC_RULE` and in docs/how-to/deploy-kubernetes.md.
"""

from __future__ import annotations

import hashlib
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
from vedit.serving.front import body_limit, pod_front_conf
from vedit.deploy.validate import K8S_VERSION, validate
from vedit.triton_repo.profiles import PROFILES, get_profile

TARGETS = ("k8s", "kserve")
SCALE_SIGNALS = ("cpu", "queue")
#: Fetches s3://, gs://, https://, pvc:// URIs into a directory; the same one KServe uses itself.
STORAGE_INITIALIZER = "kserve/storage-initializer:v0.21.0"  # the release of the kserve SDK validated against
#: Where a repository may come from: encrypted or in-cluster only (no http://, hdfs://: a man in the
#: middle would choose the model.py the server runs).
URI_SCHEMES = ("https://", "s3://", "gs://", "pvc://")
#: ``name@sha256:<64 hex>``: the only image references accepted without ``--allow-tag``.
IMAGE_DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: The non-root user every container runs as (``USER`` in Dockerfile.triton; above 10000 so it
#: matches no user of the node).
RUN_AS_USER = 10001
#: The front (nginx, in the vedit image) listens here in the pod; Triton's own ports are loopback.
FRONT_PORT = 8080
FRONT_DIR = "/run/vedit-front"
FRONT_CONF_DIR = "/etc/vedit-front"
FETCH_DIR = "/fetch"
#: Who may connect (NetworkPolicy): the ingress controller's pods to the front, Prometheus to metrics.
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_POD_LABELS = {"app.kubernetes.io/name": "ingress-nginx"}
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
#: Ingress rate limits per client address (nginx-ingress): requests per second and open connections.
INGRESS_RPS = 50
INGRESS_CONNECTIONS = 20
#: GPU Feature Discovery's product label for each GPU profile's card.
GPU_PRODUCT = {"l4": "NVIDIA-L4", "a100": "NVIDIA-A100-SXM4-80GB"}

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
#: KServe's Triton runtime serves HTTP on 8080 and gRPC on 9000 (its ServingRuntime sets them).
KSERVE_HTTP_PORT = 8080
#: Where KServe's Triton runtime reads the repository (its ``--model-store``).
KSERVE_MODELS_DIR = "/mnt/models"
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
    image: str | None = None
    """The image built from Dockerfile.triton, by digest (``name@sha256:...``)."""
    allow_tag: bool = False
    """Accept image tags (``:latest``, ``:1.0``): the registry then chooses what runs."""
    model_sha256: str | None = None
    """sha256 of the repository archive at ``model_uri`` (required with it)."""
    fetch_image: str = STORAGE_INITIALIZER
    tls_secret: str | None = None
    """Ingress TLS certificate Secret (default ``<name>-tls``)."""
    basic_auth_secret: str | None = None
    """Ingress basic authentication (an htpasswd Secret); the bearer token is the front's."""
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
    namespace: str = "vedit"
    """Never ``default`` (checkov CKV_K8S_21): the objects get a namespace of their own."""


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
                              "(encrypted or in-cluster storage: the repository's model.py runs in the server)")
    if opts.model_uri is not None and not SHA256_HEX.match(opts.model_sha256 or ""):
        raise TritonRepoError("--model-uri needs --model-sha256 (64 hex digits): the sha256 of the repository "
                              "archive, checked before the server starts (`sha256sum repo.tar.gz`)")
    if opts.model_uri is not None and opts.model_uri.startswith("pvc://"):
        claim, _, path = opts.model_uri.removeprefix("pvc://").partition("/")
        if not _DNS_LABEL.match(claim) or not path or path.endswith("/") or ".." in path.split("/"):
            raise TritonRepoError(f"--model-uri {opts.model_uri!r}: use pvc://CLAIM/PATH/TO/ARCHIVE (one archive "
                                  "file on that claim)")
    if opts.model_sha256 is not None and opts.model_uri is None:
        raise TritonRepoError("--model-sha256 checks the archive at --model-uri; give --model-uri too")
    if not opts.image:
        raise TritonRepoError("give --image NAME@sha256:DIGEST: the image built from Dockerfile.triton, pushed "
                              "where the cluster pulls from (`docker push` prints the digest)")
    for flag, image in (("--image", opts.image), ("--fetch-image", opts.fetch_image if _downloads(opts) else None)):
        if image and not opts.allow_tag and not IMAGE_DIGEST.match(image):
            raise TritonRepoError(f"{flag} {image!r}: give it by digest (NAME@sha256:...) so the registry cannot "
                                  "change what runs, or pass --allow-tag")
    if not _DNS_LABEL.match(opts.namespace) or opts.namespace == "default":
        raise TritonRepoError(f"--namespace {opts.namespace!r}: a DNS label other than 'default'")
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
        # HTTP and gRPC on loopback: only the front in the same pod reaches them; metrics for Prometheus
        args += [f"--http-port={PORTS['http']}", "--http-address=127.0.0.1", f"--grpc-port={PORTS['grpc']}",
                 "--grpc-address=127.0.0.1", f"--metrics-port={PORTS['metrics']}", "--metrics-address=0.0.0.0"]
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


def _container_security() -> dict:
    """PSS "restricted" for a container, plus a read-only root filesystem."""
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _small_resources(cpu: str = "500m", memory: str = "256Mi") -> dict:
    return {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": memory}}


def _image_fields(opts: DeployOptions, image: str | None = None) -> dict:
    # by digest: the kubelet pulls exactly that image (Always only re-checks the registry's credentials)
    return {"image": image or opts.image, "imagePullPolicy": "Always"}


def verify_script(sha256: str, archive: str | None) -> str:
    """The init step that checks the fetched archive against ``--model-sha256`` and unpacks it.

    ``archive``: its path (pvc), or None when the storage initializer fetched it into
    :data:`FETCH_DIR` (then exactly one file must be there: an initializer that unpacked it leaves
    a tree, which is refused rather than served unchecked)."""
    find = (f'f="{archive}"' if archive else
            f'set -- {FETCH_DIR}/*; if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then '
            f'echo "error: expected one archive file in {FETCH_DIR}, found: $*" >&2; exit 1; fi; f="$1"')
    return (
        "set -eu; " + find + "; "
        f'if ! echo "{sha256}  $f" | sha256sum -c - >/dev/null; then '
        'echo "error: $f: sha256 $(sha256sum "$f" | cut -d" " -f1) is not the --model-sha256 given to '
        '`vedit triton deploy`; refusing to serve it" >&2; exit 1; fi; '
        f'tar -xf "$f" -C {MODELS_DIR} --no-same-owner --no-same-permissions; echo "verified and unpacked $f"'
    )


def _fetch(opts: DeployOptions, models_dir: str = MODELS_DIR) -> tuple[list[dict], list[dict]]:
    """Init containers and volumes that put the checked repository into the ``model-repository`` volume."""
    assert opts.model_uri and opts.model_sha256
    sec = _container_security()
    init: list[dict] = []
    if opts.model_uri.startswith("pvc://"):
        claim, _, path = opts.model_uri.removeprefix("pvc://").partition("/")
        volumes = [{"name": "archive-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
        archive = f"{FETCH_DIR}/{path}"
    else:
        volumes = [{"name": "archive-source", "emptyDir": {"sizeLimit": "20Gi"}}]
        archive = None
        init.append({
            "name": "fetch-model-archive",
            **_image_fields(opts, opts.fetch_image),
            "args": [opts.model_uri, FETCH_DIR],
            "env": [{"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": "archive-source", "mountPath": FETCH_DIR},
                             {"name": "tmp", "mountPath": "/tmp"}],
            "resources": _small_resources("1", "1Gi"),
            "securityContext": sec,
        })
    init.append({
        "name": "verify-model-archive",
        **_image_fields(opts),
        "command": ["/bin/sh", "-c", verify_script(opts.model_sha256, archive)],
        "volumeMounts": [{"name": "archive-source", "mountPath": FETCH_DIR, "readOnly": True},
                         {"name": "model-repository", "mountPath": MODELS_DIR}],
        "resources": _small_resources("1", "512Mi"),
        "securityContext": sec,
    })
    return init, volumes


def _downloads(opts: DeployOptions) -> bool:
    """Whether an init container downloads the archive (https, s3, gs; a pvc is mounted)."""
    return bool(opts.model_uri) and not opts.model_uri.startswith("pvc://")


def front_names(opts: DeployOptions) -> tuple[str, ...]:
    """Host names the pod's front answers to: the probes' ``localhost``, the Service's DNS names and
    the Ingress host (without ``--host`` the Ingress routes any host, so any is accepted: ``~.``,
    an nginx regex; the NetworkPolicy still admits only the ingress controller)."""
    svc = [opts.name, f"{opts.name}.{opts.namespace}", f"{opts.name}.{opts.namespace}.svc",
           f"{opts.name}.{opts.namespace}.svc.cluster.local"]
    return ("localhost", *svc, opts.host or "~.")


def _front_conf(facts: RepoFacts, opts: DeployOptions) -> str:
    return pod_front_conf(body_limit=facts.body_limit, listen_port=FRONT_PORT, upstream_port=PORTS["http"],
                          directory=FRONT_DIR, names=front_names(opts))


def build_k8s(facts: RepoFacts, opts: DeployOptions) -> Manifests:
    out = Manifests()
    res = resources(facts, opts.cache_mb)
    # the kubelet probes the pod's address, where only the front and metrics listen: Triton's health
    # is read through the front (Host: localhost, a name the front answers to)
    probes = _probes("front")
    for probe in probes.values():
        probe["httpGet"]["httpHeaders"] = [{"name": "Host", "value": "localhost"}]
    container = {
        "name": "triton",
        **_image_fields(opts),
        "command": ["tritonserver"],
        "args": _triton_args(facts, opts, ports=True),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "metrics", "containerPort": PORTS["metrics"], "protocol": "TCP"}],
        "resources": res,
        **probes,
        "volumeMounts": [
            {"name": "model-repository", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _container_security(),
    }
    front = {
        "name": "front",
        **_image_fields(opts),
        "command": ["nginx", "-p", FRONT_DIR, "-c", f"{FRONT_CONF_DIR}/nginx.conf", "-e", "/dev/stderr"],
        "ports": [{"name": "front", "containerPort": FRONT_PORT, "protocol": "TCP"}],
        "resources": _small_resources("1", "256Mi"),
        "livenessProbe": {"tcpSocket": {"port": "front"}, "periodSeconds": 10, "failureThreshold": 3,
                          "timeoutSeconds": 3},
        "readinessProbe": {"tcpSocket": {"port": "front"}, "periodSeconds": 5, "failureThreshold": 3,
                           "timeoutSeconds": 3},
        "volumeMounts": [
            {"name": "front-config", "mountPath": FRONT_CONF_DIR, "readOnly": True},
            {"name": "front-run", "mountPath": FRONT_DIR},
            {"name": "front-tmp", "mountPath": f"{FRONT_DIR}/tmp"},
        ],
        "securityContext": _container_security(),
    }
    conf = _front_conf(facts, opts)
    volumes: list[dict] = [
        _shm_volume(facts),
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "front-run", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "front-tmp", "emptyDir": {"sizeLimit": _mi(4 * facts.body_limit + 16 * MIB)}},
        {"name": "front-config", "configMap": {"name": f"{opts.name}-front"}},
    ]
    init: list[dict] = []
    if opts.model_uri:
        init, fetch_volumes = _fetch(opts)
        volumes = [{"name": "model-repository", "emptyDir": {"sizeLimit": "20Gi"}}, *fetch_volumes, *volumes]
        out.notes.append(f"the repository archive is fetched from {opts.model_uri} at every pod start and unpacked "
                         f"only if its sha256 is {opts.model_sha256}")
    else:
        claim = opts.pvc or f"{opts.name}-model-repository"
        volumes.insert(0, {"name": "model-repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        out.notes.append(f"copy the repository into PersistentVolumeClaim {claim} (its root holds {facts.model}/)")
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        **({"initContainers": init} if init else {}),
        "containers": [container, front],
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
                        "prometheus.io/path": "/metrics",
                        # a changed front config rolls the pods (a ConfigMap change alone would not)
                        "vedit/front-config-sha256": hashlib.sha256(conf.encode()).hexdigest()},
    }
    out.objects["front-configmap.yaml"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(opts, facts, name=f"{opts.name}-front"),
        "data": {"nginx.conf": conf},
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
                {"name": "http", "port": PORTS["http"], "targetPort": "front", "protocol": "TCP"},
                {"name": "metrics", "port": PORTS["metrics"], "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    out.objects["networkpolicy.yaml"] = _network_policy(facts, opts, _selector(opts), FRONT_PORT)
    out.objects["hpa.yaml"] = _hpa(facts, opts)
    out.objects["pdb.yaml"] = _pdb(facts, opts, _selector(opts))
    out.objects["ingress.yaml"] = _ingress(facts, opts)
    return out


def _network_policy(facts: RepoFacts, opts: DeployOptions, selector: dict[str, str], http_port: int) -> dict:
    """Ingress controller -> ``http_port`` (the front's), Prometheus -> metrics; nothing else in. Out:
    DNS and HTTPS only when an init container downloads the repository, else nothing."""
    def peer(namespace: str, labels: dict[str, str]) -> dict:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "podSelector": {"matchLabels": labels}}

    egress: list[dict] = []
    if _downloads(opts):
        egress = [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                  {"ports": [{"port": 443, "protocol": "TCP"}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(opts, facts),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [peer(INGRESS_NAMESPACE, INGRESS_POD_LABELS)],
                 "ports": [{"port": http_port, "protocol": "TCP"}]},
                {"from": [peer(PROMETHEUS_NAMESPACE, PROMETHEUS_POD_LABELS)],
                 "ports": [{"port": PORTS["metrics"], "protocol": "TCP"}]},
            ],
            "egress": egress,
        },
    }


def _ingress(facts: RepoFacts, opts: DeployOptions) -> dict:
    annotations = {
        # the same limit as the local nginx front: a body no valid request needs is refused (413)
        "nginx.ingress.kubernetes.io/proxy-body-size": _size_text(facts.body_limit),
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "120",
        "nginx.ingress.kubernetes.io/client-body-timeout": "5",
        "nginx.ingress.kubernetes.io/client-header-timeout": "5",
        "nginx.ingress.kubernetes.io/ssl-redirect": "true",
        "nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
        "nginx.ingress.kubernetes.io/limit-rps": str(INGRESS_RPS),
        "nginx.ingress.kubernetes.io/limit-connections": str(INGRESS_CONNECTIONS),
    }
    if opts.basic_auth_secret:
        annotations.update({
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": opts.basic_auth_secret,
            "nginx.ingress.kubernetes.io/auth-realm": "vedit",
        })
    rule: dict[str, Any] = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": opts.name, "port": {"name": "http"}}}}]}}
    tls: dict[str, Any] = {"secretName": opts.tls_secret or f"{opts.name}-tls"}
    if opts.host:
        rule["host"] = opts.host
        tls["hosts"] = [opts.host]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(opts, facts, annotations=annotations),
        "spec": {"ingressClassName": "nginx", "tls": [tls], "rules": [rule]},
    }


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
    """An InferenceService whose predictor pod is as locked down as the k8s one. The repository is
    not fetched by KServe (``storageUri``) but by the same fetch-and-verify init containers, into
    the volume mounted where KServe's Triton runtime reads it (/mnt/models): KServe's own
    initializer would unpack the archive unchecked."""
    out = Manifests()
    res = resources(facts, opts.cache_mb)
    init, fetch_volumes = _fetch(opts)
    triton = {
        "protocolVersion": "v2",
        **_image_fields(opts),
        "args": _triton_args(facts, opts, ports=False),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": res,
        **_probes(KSERVE_HTTP_PORT),
        "volumeMounts": [{"name": "model-repository", "mountPath": KSERVE_MODELS_DIR, "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": _container_security(),
    }
    predictor: dict[str, Any] = {
        "minReplicas": opts.replicas,
        "maxReplicas": _max_replicas(opts),
        "scaleMetric": "cpu",
        "scaleTarget": CPU_TARGET_PERCENT,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "initContainers": init,
        "triton": triton,
        "volumes": [{"name": "model-repository", "emptyDir": {"sizeLimit": "20Gi"}}, *fetch_volumes,
                    _shm_volume(facts), {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        **_gpu_scheduling(facts),
    }
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
    kserve_selector = {"serving.kserve.io/inferenceservice": opts.name}
    out.objects["networkpolicy.yaml"] = _network_policy(facts, opts, kserve_selector, KSERVE_HTTP_PORT)
    out.objects["pdb.yaml"] = _pdb(facts, opts, kserve_selector)
    out.notes.append(f"the repository archive is fetched from {opts.model_uri} and unpacked only if its sha256 is "
                     f"{opts.model_sha256}; the predictor serves HTTP on {KSERVE_HTTP_PORT} and gRPC on 9000")
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
