"""Parity and latency benches on the tiny students (real PyTorch, real onnxruntime)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vedit.bench.cli import bench
from vedit.bench.parity import GATES, run_parity
from vedit.data.rows import write_jsonl
from vedit.data.synth import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory):
    rows = generate(seed=3, n_intents=60, n_test=6).test
    path = tmp_path_factory.mktemp("parity") / "test.jsonl"
    write_jsonl(path, [r.to_json() for r in rows])
    return path, rows


def test_fp32_export_is_at_parity_with_its_original(tiny_t5_dir, t5_fp32, truth_file):
    _, rows = truth_file
    result = run_parity(tiny_t5_dir, rows, candidate=t5_fp32.out_dir, threads=1)
    assert result.precision == "fp32" and result.gate == GATES["fp32"]
    # like with like: the constrained original and the ONNX runtime give the same calls
    assert result.agreement == 1.0 and result.disagreements == []
    assert result.overall_delta == 0.0 and result.passed
    # what users see: the same answers draw the same photos (CIEDE2000 0 on every pair)
    assert len(result.visual.per_pair) == 3 * len(rows) and result.visual.max == 0.0
    assert result.candidate.validity == 1.0 and result.reference.validity == 1.0
    # an untrained model rarely writes valid JSON on its own: the unconstrained side shows it
    assert result.unconstrained.validity < 1.0
    assert set(result.to_json()["sides"]) == {"pytorch", "pytorch+grammar", "candidate"}


def test_parity_gate_fails_for_a_different_model(tiny_t5_dir, t5_fp32, tmp_path, truth_file):
    """A differently initialised model is not the export's original: the CLI must exit 1 and say why."""
    import shutil

    from transformers import AutoTokenizer

    from vedit.students.models import new_t5

    other = tmp_path / "other_t5"
    shutil.copytree(tiny_t5_dir, other)
    new_t5(len(AutoTokenizer.from_pretrained(tiny_t5_dir)), "tiny", seed=99).save_pretrained(other)
    path, _ = truth_file
    res = CliRunner().invoke(bench, ["parity", "--reference", str(other), "--candidate", str(t5_fp32.out_dir),
                                     "--data", str(path), "--threads", "1", "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert not out["passed"] and any("agreement" in f for f in out["failures"])


def test_parity_through_the_adapter_matches_the_merged_export(tiny_t5_dir, tiny_t5_lora_dir, export_root, truth_file):
    """The unmerged PeftModel (reference) and the merged ONNX export (candidate) agree."""
    from support import quick_export

    out = export_root / "t5-lora-merged-2"
    merged = quick_export(tiny_t5_dir, out, family="t5", adapter_dir=tiny_t5_lora_dir)
    _, rows = truth_file
    result = run_parity(tiny_t5_dir, rows, candidate=merged.out_dir, adapter_dir=tiny_t5_lora_dir, threads=1)
    assert result.agreement == 1.0 and result.passed


def test_latency_report_has_every_path(tiny_t5_dir, t5_fp32, tmp_path):
    from vedit.bench.latency import measure_model
    from vedit.bench.report import write

    intents = ["golden hour", "cold tone", "neon", "x ray"]
    run = measure_model("tiny", student_dir=tiny_t5_dir, exports={"fp32": t5_fp32.out_dir}, intents=intents,
                        threads=1)
    names = [s.path for s in run.stats]
    assert names == ["pytorch", "pytorch+grammar", "onnx-fp32-step", "onnx-fp32-grouped", "onnx-fp32", "onnx-fp32-draft"]
    by = {s.path: s for s in run.stats}
    assert all(s.n == len(intents) and s.p50_ms > 0 and s.p95_ms >= s.p50_ms for s in run.stats)
    # jump-forward never needs more decoder calls than step-by-step decoding
    assert by["onnx-fp32"].decoder_calls_per_request < by["onnx-fp32-step"].decoder_calls_per_request
    free = by["onnx-fp32"].free_tokens_per_request
    assert by["pytorch"].free_tokens_per_request is None  # plain generate cannot tell free from forced
    # a request's rows each need one call per free token: the calls can be shared, never fewer
    assert free and by["onnx-fp32"].decoder_calls_per_request >= free / 3
    assert by["onnx-fp32"].forced_tokens_per_request > 0
    # unscripted: the constrained paths answer alike (fp32 parity); plain generate is not compared
    assert run.texts.paths == ["pytorch+grammar", "onnx-fp32-step", "onnx-fp32-grouped", "onnx-fp32", "onnx-fp32-draft"]
    assert run.texts.ok
    assert run.machine["cores"] and "onnxruntime" in run.machine["packages"]
    files = write([run], tmp_path)
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    md = files["md"].read_text()
    assert "onnx-fp32-step" in md and "Machine:" in md and "vs pytorch+grammar" in md
    assert json.loads(files["json"].read_text())[0]["stats"][0]["samples_ms"]


def test_latency_report_names_the_users_model(tiny_t5_dir, t5_fp32, tmp_path):
    """A student given with --student is named by its folder, not "demo student"."""
    from vedit.bench.cli import bench

    res = CliRunner().invoke(bench, ["latency", "--student", str(tiny_t5_dir), "--export", f"fp32={t5_fp32.out_dir}",
                                     "--no-triton", "-n", "3", "--concurrency", "1", "--threads", "1",
                                     "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "latency.md").read_text()
    assert tiny_t5_dir.name in md and "demo student" not in md


def test_guarantees_on_hostile_input(t5_fp32):
    from vedit.bench.guarantees import check, hostile_intents

    intents = hostile_intents(12, seed=1)
    assert intents[0] == "" and len(intents[2]) == 5000 and len(intents) == 12
    g = check(t5_fp32.out_dir, ["golden hour", "cold tone", "😈"], fuzz=12, threads=1)
    assert g.valid == 12 * 3 and g.identical == g.compared == 3
    assert g.calls_jump_forward < g.calls_step
