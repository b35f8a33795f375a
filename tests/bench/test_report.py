"""The latency report's arithmetic and files, on hand-made samples (no models)."""

from __future__ import annotations

import json

import pytest

from vedit.bench.latency import LatencyRun
from vedit.bench.report import markdown, write
from vedit.bench.timing import summarize


def _run(with_levels: bool) -> LatencyRun:
    stats = [
        summarize("pytorch", [0.400, 0.500, 0.600], 1.5, 1, decoder_calls_per_request=80.0),
        summarize("pytorch+grammar", [0.300, 0.400, 0.500], 1.2, 1, decoder_calls_per_request=80.0),
        summarize("onnx-fp32", [0.040, 0.050, 0.060], 0.15, 1, decoder_calls_per_request=30.0,
                  free_tokens_per_request=40.0),
    ]
    compared = [s.path for s in stats]
    if with_levels:  # served rows: other intents, so never part of a speed-up
        stats += [summarize("triton-grpc", [0.010, 0.020, 0.030], 0.06, 1),
                  summarize("triton-grpc", [0.050, 0.060, 0.070], 0.05, 4)]
    return LatencyRun("hand-made", stats, {"cpu": "test", "cores": 2, "threads": 2, "gpus": [], "load_average": 0.0, "packages": {}}, [], compared)


def test_speedups_are_ratios_of_medians_among_compared_paths():
    run = _run(with_levels=True)
    assert run.speedup("onnx-fp32") == pytest.approx(0.500 / 0.050)
    assert run.speedup("onnx-fp32", "pytorch+grammar") == pytest.approx(0.400 / 0.050)
    assert run.speedup("triton-grpc") is None
    row = next(line for line in markdown([run]).splitlines() if "| onnx-fp32 |" in line)
    assert row.endswith("| 10.0x | 8.0x | - |")
    served = next(line for line in markdown([run]).splitlines() if "| 1 | triton-grpc |" in line)
    assert served.endswith("| - | - | - |")


def test_report_shows_tokens_texts_check_and_path_info():
    from vedit.bench.latency import check_texts

    run = _run(with_levels=False)
    run.stats[2].forced_tokens_per_request = 120.0
    texts = {"pytorch+grammar": {"a": ("x",), "b": ("y",)}, "onnx-fp32": {"a": ("x",), "b": ("z",)}}
    run.texts = check_texts(texts, ["a", "b"], {"a": ("x",), "b": ("y",)})
    run.info = {"onnx-fp32": "fp32, 2 threads"}
    md = markdown([run])
    onnx = next(line for line in md.splitlines() if "| onnx-fp32 |" in line)
    assert "| 40.0 / 120.0 |" in onnx and onnx.endswith("| NO (1/2 differ) |")
    assert next(line for line in md.splitlines() if "| pytorch+grammar |" in line).endswith("| yes |")
    assert next(line for line in md.splitlines() if "| pytorch |" in line).endswith("| - |")
    assert "- `onnx-fp32`: fp32, 2 threads" in md
    assert not run.texts.ok and "onnx-fp32 differs on 1 of 2" in run.texts.describe()


@pytest.mark.parametrize("with_levels", [True, False])
def test_report_files(tmp_path, with_levels):
    files = write([_run(with_levels)], tmp_path)
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    data = json.loads(files["json"].read_text())[0]
    assert data["compared"] == ["pytorch", "pytorch+grammar", "onnx-fp32"]
    assert data["stats"][2]["p50_ms"] == pytest.approx(50.0)
    assert "forced_tokens_per_request" in data["stats"][2] and "texts_check" in data
    assert not list(tmp_path.glob("*.tmp"))
