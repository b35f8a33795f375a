"""Per-request latency of each path on the tiny T5 student.

Absolute times on a shared CPU drift; what must not regress is the ratio between paths measured
in the same run. ``test_ratio_*`` time both sides interleaved and fail when the ONNX runtime
loses its lead; the per-path benchmarks feed ``--benchmark-compare-fail`` against the saved
baseline (see README, "Latency regression runs").
"""

from __future__ import annotations

import statistics
import time

import pytest

INTENTS = ["golden hour", "cold tone", "neon night", "x ray", "Morocco"]
#: The ONNX runtime with jump-forward must stay at least this many times faster (median) than HF
#: generate on the tiny student. Measured ~4-8x on a 2-core CPU; the guard leaves room for noise.
MIN_SPEEDUP_VS_GENERATE = 2.0
#: Jump-forward must stay faster than step-by-step constrained decoding.
MIN_SPEEDUP_VS_STEP = 1.05


@pytest.fixture(scope="module")
def paths(tiny_t5_dir, t5_fp32):
    from vedit.bench.latency import onnx_paths, pytorch_paths

    out = pytorch_paths(tiny_t5_dir, None, t5_fp32.out_dir, threads=1)
    out.update(onnx_paths({"fp32": t5_fp32.out_dir}, threads=1))
    for call in out.values():  # warm up
        call(INTENTS[0])
    return out


def _run_all(call):
    for intent in INTENTS:
        call(intent)


@pytest.mark.parametrize("path", ["pytorch", "pytorch+grammar", "onnx-fp32-step", "onnx-fp32"])
def test_path_latency(benchmark, paths, path):
    benchmark.group = "tiny T5, 5 requests"
    benchmark.pedantic(_run_all, args=(paths[path],), rounds=5, iterations=1, warmup_rounds=1)


def _median_ratio(slow, fast, rounds: int = 7) -> float:
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        _run_all(slow)
        t1 = time.perf_counter()
        _run_all(fast)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def test_ratio_onnx_vs_generate(paths, benchmark):
    ratio = _median_ratio(paths["pytorch"], paths["onnx-fp32"])
    benchmark.extra_info["speedup_vs_generate"] = ratio
    benchmark.pedantic(_run_all, args=(paths["onnx-fp32"],), rounds=1, iterations=1)
    assert ratio >= MIN_SPEEDUP_VS_GENERATE, f"ONNX only {ratio:.2f}x faster than HF generate"


def test_ratio_jump_forward_vs_step(paths, benchmark):
    ratio = _median_ratio(paths["onnx-fp32-step"], paths["onnx-fp32"])
    benchmark.extra_info["speedup_vs_step"] = ratio
    benchmark.pedantic(_run_all, args=(paths["onnx-fp32"],), rounds=1, iterations=1)
    assert ratio >= MIN_SPEEDUP_VS_STEP, f"jump-forward only {ratio:.2f}x faster than step-by-step"
