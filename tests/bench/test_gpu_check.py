"""scripts/gpu-check.sh's Python entry, run on the CPU execution provider with the tiny test student and
the tiny timing shape: every step the GPU check runs also runs here, so it cannot rot unseen."""

from __future__ import annotations

import pytest

from vedit.bench import gpu_check


@pytest.mark.slow
@pytest.mark.triton
def test_gpu_check_runs_every_step_on_cpu(tiny_t5_dir, tmp_path):
    result = gpu_check.run(device="cpu", student=tiny_t5_dir, work=tmp_path / "work", timing_shape="tiny",
                           parity_limit=6, requests=3)
    table = result.table()
    print(table)
    steps = [r.step for r in result.rows]
    assert steps == ["environment", "export demo T5 fp16 + validation", "fp16 runtime on CPU EP",
                     "parity gate fp16 (6 intents)", "tiny-shaped T5 fp16: vedit vs PyTorch",
                     "Triton l4 repository, real tritonserver"]
    by_step = {r.step: r for r in result.rows}
    for step in steps:
        if step.startswith("parity"):
            continue  # an untrained student may break the fp16 gate; the step itself must run
        assert by_step[step].ok, (step, by_step[step].detail)
    assert "Error" not in by_step["parity gate fp16 (6 intents)"].detail
    assert "IO binding (device-resident KV) == host path: True" in by_step["fp16 runtime on CPU EP"].detail
    assert "gRPC answers == in-process: True" in by_step["Triton l4 repository, real tritonserver"].detail
    assert table.count("\n| ") == len(steps) + 1  # header + one line per step


def test_requesting_cuda_without_it_fails_the_run_loudly(tiny_t5_dir, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is offered here")
    result = gpu_check.run(device="cuda", student=tiny_t5_dir, work=tmp_path, timing_shape="tiny", triton=False,
                           parity_limit=2, requests=1)
    assert not result.passed and result.rows[0].ok is False  # environment: no CUDA provider
    runtime = {r.step: r for r in result.rows}["fp16 runtime on CUDA EP"]
    assert runtime.ok is False and "ProviderError" in runtime.detail
    assert "CUDAExecutionProvider requested but not active" in runtime.detail
