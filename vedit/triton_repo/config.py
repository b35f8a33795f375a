"""``config.pbtxt`` for the vedit python-backend model, built as Triton's own protobuf message.

The configuration is assembled as a :class:`tritonclient.grpc.model_config_pb2.ModelConfig`, so a
field name or enum that Triton does not know cannot even be set; the text is then parsed back into
a fresh ``ModelConfig`` before anything is written, which is the check Triton itself applies when it
loads the repository (it only says "failed to read text proto"; the parser here gives line:column).

What is the same for every profile, and why:

- one input ``INTENT`` (``TYPE_STRING``, dims ``[1]``: one UTF-8 intent per batch row);
- one output per tool, named after the tool, ``TYPE_STRING`` dims ``[1]``: the tool's JSON text;
- ``response_cache``: the decoding is greedy and deterministic, so a repeated intent is answered
  from the cache without running the model (the server must be started with ``--cache-config``);
- ``model_warmup``: one real intent at load time, so the first user request does not pay for
  onnxruntime's lazy initialisation;
- ``version_policy latest 1``: a new version directory replaces the old one on reload;
- a bounded queue (``default_queue_policy``): at most :data:`QUEUE_BATCHES_PER_INSTANCE` full
  batches per instance wait, none longer than :data:`QUEUE_TIMEOUT_US`; Triton rejects the rest
  at once with UNAVAILABLE (HTTP 503), which the client retries, instead of piling up memory and
  latency under a flood;
- ``parameters``: the runtime knobs (threads, jump-forward, drafts, providers, the request size limit; on GPU
  the per-instance CUDA memory bound ``gpu_mem_limit`` in bytes, ``arena_extend_strategy`` and
  ``allow_cpu_fallback``, see :mod:`vedit.triton_repo.profiles`) and
  the registry snapshot, which clients read to type the answers with the server's own registry.
"""

from __future__ import annotations

import json
import struct

from typing import TYPE_CHECKING

from vedit.errors import TritonRepoError
from vedit.intents import MAX_INTENT_BYTES
from vedit.registry import Registry
from vedit.triton_repo.profiles import Profile

if TYPE_CHECKING:  # Triton's schema comes with the [triton] extra; imported when a config is built
    from tritonclient.grpc import model_config_pb2 as mc

INPUT_NAME = "INTENT"


#: Warm-up intent; its serialized form is written to ``<model>/warmup/<WARMUP_FILE>``.
WARMUP_INTENT = "golden hour"
WARMUP_FILE = "intent"

#: Names of the ``parameters`` entries read by the model and by clients.
PARAM_THREADS = "threads"
PARAM_JUMP_FORWARD = "jump_forward"
PARAM_DRAFT = "draft"
#: ``draft`` values: forced on, forced off, or ``auto`` (on where the export can; see
#: :meth:`vedit.decoding.Predictor.load`), and back for the model.
DRAFT_VALUES = {True: "true", False: "false", None: "auto"}
DRAFT_MODES = {v: k for k, v in DRAFT_VALUES.items()}
PARAM_PROVIDERS = "providers"
PARAM_GPU_MEM_LIMIT = "gpu_mem_limit"
PARAM_ARENA_EXTEND = "arena_extend_strategy"
PARAM_ALLOW_CPU_FALLBACK = "allow_cpu_fallback"
PARAM_MAX_INTENT_BYTES = "max_intent_bytes"
PARAM_EXPORT_SUBDIR = "export_subdir"
PARAM_REGISTRY = "vedit_registry"
PARAM_FAMILY = "vedit_family"
PARAM_PRECISION = "vedit_precision"
PARAM_PROFILE = "vedit_profile"

EXPORT_SUBDIR = "export"

#: Queue bound: full batches waiting per instance, and the longest wait (both Triton-enforced).
QUEUE_BATCHES_PER_INSTANCE = 16
QUEUE_TIMEOUT_US = 20_000_000


def build_config(
    *,
    name: str,
    profile: Profile,
    registry: Registry,
    instance_count: int,
    family: str,
    precision: str,
    jump_forward: bool = True,
    draft: bool | None = None,
    max_intent_bytes: int = MAX_INTENT_BYTES,
) -> mc.ModelConfig:
    """The model configuration for one export served under ``profile``."""
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig(name=name, backend="python", max_batch_size=profile.max_batch_size)
    cfg.version_policy.latest.num_versions = 1
    cfg.input.add(name=INPUT_NAME, data_type=mc.TYPE_STRING, dims=[1])
    for tool in registry.tool_names:
        cfg.output.add(name=tool, data_type=mc.TYPE_STRING, dims=[1])
    cfg.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(profile.kind), count=instance_count)
    cfg.dynamic_batching.max_queue_delay_microseconds = profile.max_queue_delay_us
    queue = cfg.dynamic_batching.default_queue_policy
    queue.max_queue_size = QUEUE_BATCHES_PER_INSTANCE * max(1, profile.max_batch_size) * instance_count
    queue.timeout_action = mc.ModelQueuePolicy.TimeoutAction.REJECT
    queue.default_timeout_microseconds = QUEUE_TIMEOUT_US
    queue.allow_timeout_override = False
    cfg.response_cache.enable = True
    warm = cfg.model_warmup.add(name="intent", batch_size=1, count=1)
    warm.inputs[INPUT_NAME].data_type = mc.TYPE_STRING
    warm.inputs[INPUT_NAME].dims.append(1)
    warm.inputs[INPUT_NAME].input_data_file = WARMUP_FILE
    params = {
        PARAM_THREADS: str(profile.threads),
        PARAM_JUMP_FORWARD: "true" if jump_forward else "false",
        PARAM_DRAFT: DRAFT_VALUES[draft],
        PARAM_PROVIDERS: ",".join(profile.providers),
        PARAM_MAX_INTENT_BYTES: str(max_intent_bytes),
        PARAM_EXPORT_SUBDIR: EXPORT_SUBDIR,
        PARAM_REGISTRY: json.dumps(registry.raw, separators=(",", ":"), ensure_ascii=False),
        PARAM_FAMILY: family,
        PARAM_PRECISION: precision,
        PARAM_PROFILE: profile.name,
        PARAM_ALLOW_CPU_FALLBACK: "true" if profile.allow_cpu_fallback else "false",
    }
    if profile.kind == "KIND_GPU":
        params[PARAM_GPU_MEM_LIMIT] = str(profile.gpu_mem_limit(instance_count))
        if profile.arena_extend_strategy:
            params[PARAM_ARENA_EXTEND] = profile.arena_extend_strategy
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    return cfg


def config_text(cfg: mc.ModelConfig) -> str:
    """The ``config.pbtxt`` text, checked by parsing it back into a ``ModelConfig``."""
    from google.protobuf import text_format

    text = text_format.MessageToString(cfg, as_utf8=True)
    if parse_config(text) != cfg:
        raise TritonRepoError("config.pbtxt does not round-trip through Triton's schema (vedit bug)")
    return text


def parse_config(text: str, *, source: str = "config.pbtxt") -> mc.ModelConfig:
    """Parse ``text`` against Triton's schema; a typo is reported with its line:column."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as exc:
        raise TritonRepoError(f"{source}: {exc} (not a valid Triton ModelConfig)") from None
    return cfg


def serialize_strings(values: list[str]) -> bytes:
    """Triton's raw form of a TYPE_STRING tensor (warm-up data files): u32 length + bytes each."""
    out = bytearray()
    for v in values:
        b = v.encode("utf-8")
        out += struct.pack("<I", len(b)) + b
    return bytes(out)


def parameters(cfg_json: dict) -> dict[str, str]:
    """``parameters`` of a model config in Triton's JSON form (as the model and clients see it)."""
    return {k: v.get("string_value", "") for k, v in (cfg_json.get("parameters") or {}).items()}


__all__ = [
    "INPUT_NAME",
    "MAX_INTENT_BYTES",
    "build_config",
    "config_text",
    "parameters",
    "parse_config",
    "serialize_strings",
]
