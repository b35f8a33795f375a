"""GPU profiles bound each instance's memory: the sizing in profiles.py reaches config.pbtxt and the
CUDA execution provider options the served model builds (vedit.decoding.session.cuda_provider)."""

from __future__ import annotations

import pytest

from vedit.decoding.session import CUDA, cuda_provider
from vedit.triton_repo import config as cfgmod
from vedit.triton_repo.profiles import CUDA_CONTEXT_GIB, GIB, PROFILES, get_profile


def _params(registry, name: str, weights: int) -> dict[str, str]:
    profile = get_profile(name)
    cfg = cfgmod.build_config(name="vedit", profile=profile, registry=registry,
                              instance_count=profile.instance_count(weights), family="t5",
                              precision=profile.precisions[0])
    parsed = cfgmod.parse_config(cfgmod.config_text(cfg))
    return {k: v.string_value for k, v in parsed.parameters.items()}


@pytest.mark.parametrize("name, weights_gib, instances", [("l4", 0.05, 2), ("l4", 13.5, 1), ("a100", 0.05, 4), ("a100", 13.5, 4)])
def test_gpu_profiles_write_a_memory_bound_per_instance(registry, name, weights_gib, instances):
    p = PROFILES[name]
    params = _params(registry, name, int(weights_gib * GIB))
    limit = int(params["gpu_mem_limit"])
    # hand-computed: (card - reserve) / instances - CUDA context
    assert limit == int(((p.gpu_memory_gib - p.reserve_gib) / instances - CUDA_CONTEXT_GIB) * GIB)
    assert limit >= weights_gib * p.activation_factor * GIB  # the share holds what the sizing assumed
    assert instances * (limit / GIB + CUDA_CONTEXT_GIB) <= p.gpu_memory_gib - p.reserve_gib + 1e-6
    assert params["arena_extend_strategy"] == "kSameAsRequested"
    assert params["allow_cpu_fallback"] == "false"
    # what the served model hands to onnxruntime
    assert cuda_provider(1, gpu_mem_limit=limit, arena_extend_strategy=params["arena_extend_strategy"]) == (
        CUDA, {"device_id": 1, "gpu_mem_limit": limit, "arena_extend_strategy": "kSameAsRequested"})


def test_cpu_profile_has_no_gpu_memory_parameters(registry):
    params = _params(registry, "cpu", 50 * 1024**2)
    assert "gpu_mem_limit" not in params and "arena_extend_strategy" not in params
    assert params["allow_cpu_fallback"] == "false"


@pytest.mark.parametrize("name", ["l4", "a100"])
def test_limit_covers_the_model_for_every_size_the_sizing_accepts(name):
    p = PROFILES[name]
    for weights_gib in (0.01, 0.5, 2, 5, 9, 13.5, 17):
        try:
            count = p.instance_count(int(weights_gib * GIB))
        except Exception:
            continue
        assert p.gpu_mem_limit(count) >= weights_gib * p.activation_factor * GIB
