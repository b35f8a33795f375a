"""config.pbtxt: built from every profile, checked by Triton's own protobuf schema."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import serialize_byte_tensor

from vedit.errors import TritonRepoError
from vedit.triton_repo import config as cfgmod
from vedit.triton_repo.profiles import GIB, PROFILES, get_profile


def _config(registry, profile_name: str, **kw) -> mc.ModelConfig:
    profile = get_profile(profile_name)
    return cfgmod.build_config(name="vedit", profile=profile, registry=registry,
                               instance_count=profile.instance_count(50 * 1024**2),
                               family="t5", precision=profile.precisions[0], **kw)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_parses_into_model_config(registry, name):
    profile = PROFILES[name]
    text = cfgmod.config_text(_config(registry, name))
    cfg = mc.ModelConfig()
    text_format.Parse(text, cfg)  # Triton's schema, independently of vedit's parser
    assert cfg.backend == "python"
    assert cfg.max_batch_size == profile.max_batch_size
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("INTENT", mc.TYPE_STRING, [1])]
    assert [o.name for o in cfg.output] == list(registry.tool_names)
    assert all(o.data_type == mc.TYPE_STRING and list(o.dims) == [1] for o in cfg.output)
    (group,) = cfg.instance_group
    assert mc.ModelInstanceGroup.Kind.Name(group.kind) == profile.kind
    assert group.count == profile.max_instances  # 50 MB of weights: the cap
    assert cfg.dynamic_batching.max_queue_delay_microseconds == profile.max_queue_delay_us
    assert cfg.dynamic_batching.max_queue_delay_microseconds <= 2000
    assert cfg.response_cache.enable
    assert cfg.version_policy.latest.num_versions == 1
    (warm,) = cfg.model_warmup
    assert warm.inputs["INTENT"].input_data_file == cfgmod.WARMUP_FILE
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params["threads"] == str(profile.threads)
    assert params["providers"].split(",") == list(profile.providers)
    assert params["jump_forward"] == "true"
    assert int(params["max_intent_bytes"]) == cfgmod.MAX_INTENT_BYTES
    import json

    assert json.loads(params["vedit_registry"]) == registry.raw


def test_gpu_profiles_use_gpu_and_fp16_cpu_does_not(registry):
    assert PROFILES["l4"].kind == PROFILES["a100"].kind == "KIND_GPU"
    assert PROFILES["l4"].precisions[0] == PROFILES["a100"].precisions[0] == "fp16"
    assert PROFILES["cpu"].kind == "KIND_CPU" and "fp16" not in PROFILES["cpu"].precisions
    assert PROFILES["a100"].max_instances > PROFILES["l4"].max_instances
    assert all(p.reason for p in PROFILES.values())


def test_jump_forward_off_is_carried(registry):
    cfg = _config(registry, "cpu", jump_forward=False)
    assert cfg.parameters["jump_forward"].string_value == "false"


def test_drafts_are_carried_and_auto_by_default(registry):
    """Default ``auto`` (on where the export can), ``true``/``false`` when asked; the model maps each
    back (a repository built before drafts has none: off)."""
    assert _config(registry, "cpu").parameters["draft"].string_value == "auto"
    assert _config(registry, "cpu", draft=False).parameters["draft"].string_value == "false"
    assert {v: cfgmod.DRAFT_MODES[v] for v in ("true", "false", "auto")} == {"true": True, "false": False, "auto": None}
    cfg = _config(registry, "cpu", draft=True)
    text = cfgmod.config_text(cfg)
    assert 'key: "draft"\n  value {\n    string_value: "true"' in text
    assert cfgmod.parameters({"parameters": {"draft": {"string_value": "true"}}})[cfgmod.PARAM_DRAFT] == "true"


def test_unknown_profile_lists_known_ones():
    with pytest.raises(TritonRepoError) as exc:
        get_profile("h100")
    assert "h100" in str(exc.value)
    for name in PROFILES:
        assert name in str(exc.value)


@pytest.mark.parametrize(
    "good, bad, what",
    [
        ("max_batch_size:", "max_batch_sise:", "max_batch_sise"),
        ("KIND_CPU", "KIND_TPU", "KIND_TPU"),
        ("max_queue_delay_microseconds: 500", "max_queue_delay_microseconds: fast", "fast"),
    ],
)
def test_broken_field_is_rejected_with_line_and_column(registry, good, bad, what):
    text = cfgmod.config_text(_config(registry, "cpu"))
    assert good in text
    broken = text.replace(good, bad, 1)
    line_no = next(i for i, line in enumerate(broken.splitlines(), 1) if bad in line)
    with pytest.raises(TritonRepoError) as exc:
        cfgmod.parse_config(broken)
    msg = str(exc.value)
    assert msg.startswith("config.pbtxt: ")
    assert f"{line_no}:" in msg and what in msg


@pytest.mark.parametrize(
    "profile, gib, expected",
    [
        ("l4", 0.05, 2),    # demo-sized student: the cap
        ("l4", 13.5, 1),    # Llama-2-7b fp16: (24-2) / (13.5*1.25+0.6) = 1.26 -> 1
        ("a100", 13.5, 4),  # (80-4) / 17.475 = 4.35 -> 4 (the cap)
        ("a100", 27.0, 2),  # (80-4) / 34.35 = 2.2 -> 2
        ("cpu", 27.0, 2),   # CPU: fixed count
    ],
)
def test_gpu_instances_are_sized_by_memory(profile, gib, expected):
    assert get_profile(profile).instance_count(int(gib * GIB)) == expected


def test_model_too_large_for_the_card():
    with pytest.raises(TritonRepoError, match="usable"):
        get_profile("l4").instance_count(20 * GIB)


def test_warmup_file_is_tritons_string_serialization():
    values = ["golden hour", "é😈", ""]
    reference = serialize_byte_tensor(np.array([v.encode() for v in values], dtype=np.object_))
    assert cfgmod.serialize_strings(values) == reference.item()
