"""Offline validation of the manifests, before anything is written.

Core objects go through ``kubernetes-validate`` (Kubernetes' own OpenAPI schemas, shipped in the
package; unknown fields are errors); the InferenceService field by field against the KServe SDK's
generated models (``kserve.models``), recursively into ``kubernetes.client``'s types. A cluster is
never needed: a manifest that would be refused by the API server is refused here first.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vedit.errors import TritonRepoError

if TYPE_CHECKING:
    from vedit.deploy.manifests import Manifests

#: Kubernetes version the core objects are validated for (HPA v2, PDB v1, Ingress v1 are GA there).
K8S_VERSION = "1.30.0"


def validate(manifests: Manifests, k8s_version: str = K8S_VERSION) -> list[str]:
    """One line per object checked; raises :class:`TritonRepoError` on the first invalid one."""
    lines = []
    for fname, obj in manifests.objects.items():
        if obj["apiVersion"].startswith("serving.kserve.io/"):
            check_kserve(obj)
            lines.append(f"{fname}: {obj['kind']} valid against the KServe SDK models (kserve {_kserve_version()})")
        else:
            check_core(obj, k8s_version)
            lines.append(f"{fname}: {obj['kind']} valid for Kubernetes {k8s_version} (kubernetes-validate, strict)")
    return lines


def check_core(obj: dict, k8s_version: str = K8S_VERSION) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        raise TritonRepoError("manifests are checked with kubernetes-validate; "
                              "install it with `pip install vedit[deploy]`") from None
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top)"
        raise TritonRepoError(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {where}: "
                              f"{exc.message}") from None


def _kserve_version() -> str:
    return importlib.metadata.version("kserve")


def check_kserve(obj: dict) -> None:
    """Every key a field of the KServe SDK model at that place, every value of its type, every
    field the SDK requires present."""
    problems: list[str] = []
    _check_type(obj, "V1beta1InferenceService", "", problems, sdk_models())
    if problems:
        raise TritonRepoError(f"InferenceService {obj.get('metadata', {}).get('name')}: {problems[0]}"
                              + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))


@dataclass(frozen=True)
class _Model:
    types: dict[str, str]
    """attribute -> OpenAPI type (``str``, ``list[V1EnvVar]``, ``dict(str, str)``, a model name)."""
    json_names: dict[str, str]
    """JSON key -> attribute."""
    required: frozenset[str]


@functools.lru_cache(maxsize=1)
def sdk_models() -> dict[str, _Model]:
    """The OpenAPI models of the KServe SDK, read from its sources. Importing ``kserve`` is not an
    option in a process that has imported tritonclient (both register the gRPC message
    ``inference.ServerLiveRequest``), and the models are plain literals (``openapi_types``,
    ``attribute_map``) that ``ast`` reads without running anything. The Kubernetes types they refer
    to (``V1Probe``, ``V1ResourceRequirements`` ...) are checked against kubernetes-validate's
    strict schemas instead (see :func:`_check_k8s_type`)."""
    spec = importlib.util.find_spec("kserve")
    if spec is None or not spec.submodule_search_locations:
        raise TritonRepoError("InferenceServices are checked against the KServe SDK's models; "
                              "install it with `pip install vedit[deploy]`")
    models: dict[str, _Model] = {}
    for d in [Path(spec.submodule_search_locations[0]) / "models"]:
        for source in sorted(d.glob("*.py")):
            text = source.read_text(encoding="utf-8")
            for node in ast.parse(text).body:
                if isinstance(node, ast.ClassDef) and node.name not in models:
                    model = _read_model(node, ast.get_source_segment(text, node) or "")
                    if model is not None:
                        models[node.name] = model
    return models


def _read_model(node: ast.ClassDef, source: str) -> _Model | None:
    literals = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            if stmt.targets[0].id in ("openapi_types", "attribute_map"):
                literals[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    if len(literals) != 2:
        return None
    required = frozenset(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source))
    return _Model(literals["openapi_types"], {j: a for a, j in literals["attribute_map"].items()}, required)


_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (object,),
    "datetime": (str,), "date": (str,),
}


def _check_type(value: Any, type_name: str, path: str, problems: list[str], models: dict[str, _Model]) -> None:
    where = path or "(top)"
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list")
            return
        for i, item in enumerate(value):
            _check_type(item, type_name[5:-1], f"{path}[{i}]", problems, models)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping")
            return
        inner = type_name[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            _check_type(v, inner, f"{path}.{k}", problems, models)
        return
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        if not ok:
            problems.append(f"{where}: expected {type_name}, got {type(value).__name__}")
        return
    model = models.get(type_name)
    if model is None:
        _check_k8s_type(value, type_name, where, problems)
        return
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a {type_name} mapping")
        return
    for key, item in value.items():
        if key not in model.json_names:
            problems.append(f"{path}.{key}: not a field of {type_name}")
            continue
        _check_type(item, model.types[model.json_names[key]], f"{path}.{key}" if path else key, problems, models)
    present = {model.json_names[k] for k in value if k in model.json_names}
    for attr in sorted(model.required - present):
        json_name = next(j for j, a in model.json_names.items() if a == attr)
        problems.append(f"{where}: {type_name} requires {json_name}")


@functools.lru_cache(maxsize=2)
def _k8s_definitions(k8s_version: str):
    """Kubernetes' own definitions (strict: unknown fields are errors), as kubernetes-validate ships them."""
    try:
        from kubernetes_validate.utils import schema_contents
    except ImportError:
        raise TritonRepoError("manifests are checked with kubernetes-validate; "
                              "install it with `pip install vedit[deploy]`") from None
    from referencing import Registry, Resource

    defs = schema_contents(f"kubernetes-json-schema/v{k8s_version}-local-strict/_definitions.json", k8s_version)
    return defs, Resource.from_contents(defs) @ Registry()


def _check_k8s_type(value: Any, type_name: str, where: str, problems: list[str]) -> None:
    """A Kubernetes type the KServe SDK refers to by its Python client name (``V1Probe``)."""
    import jsonschema

    defs, registry = _k8s_definitions(K8S_VERSION)
    m = re.fullmatch(r"V1([A-Z]\w*)", type_name)
    candidates = [f"io.k8s.api.core.v1.{m.group(1)}", f"io.k8s.apimachinery.pkg.apis.meta.v1.{m.group(1)}"] if m else []
    name = next((c for c in candidates if c in defs["$defs"]), None)
    if name is None:
        problems.append(f"{where}: no schema for {type_name}")
        return
    schema = {"$schema": defs["$schema"], "$ref": f"{defs['$id']}#/$defs/{name}"}
    for error in jsonschema.validators.Draft202012Validator(schema, registry=registry).iter_errors(value):
        sub = ".".join(str(p) for p in error.path)
        problems.append(f"{where}{'.' + sub if sub else ''}: {error.message}")


__all__ = ["K8S_VERSION", "check_core", "check_kserve", "validate"]
