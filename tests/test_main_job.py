"""The README's main job, end to end on tiny students (`vedit demo run --quick`)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vedit.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.triton]


def test_main_job_quick(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    res = CliRunner().invoke(cli, ["demo", "run", "--quick", "--threads", "1", "--requests", "3"])
    # tiny students barely trained: int8 parity may legitimately fail its gate (exit 1), nothing else
    reports = tmp_path / "reports"
    summary = (reports / "pipeline.md").read_text()
    for section in ("LoRA merge", "Exports", "vedit predict", "Parity: t5 fp32", "Parity: llama fp32",
                    "Triton", "Latency"):
        assert section in summary
    for fam in ("t5", "llama"):
        fp32 = json.loads((reports / f"parity-{fam}-fp32.json").read_text())
        assert fp32["passed"] and fp32["agreement"] == 1.0
        assert fp32["sides"]["candidate"]["validity"] == 1.0
    assert "identical to in-process: True" in summary
    assert (reports / "latency.png").stat().st_size > 10_000
    if res.exit_code != 0:
        assert "parity" in res.output and "int8" in res.output, res.output
