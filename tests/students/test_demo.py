"""The cached demo build (quick sizes): deterministic, cached, atomic, and its CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedit.students import demo
from vedit.students.demo import DemoConfig, build, evaluate, stage_dir

pytestmark = pytest.mark.slow

WEIGHTS = ("students/t5/model.safetensors", "students/t5-lora/adapter_model.safetensors",
           "students/llama-base/model.safetensors", "students/llama-lora/adapter_model.safetensors",
           "students/tokenizer/spiece.model", "data/train.jsonl", "data/test.jsonl")


def _digest(home: Path) -> dict[str, str]:
    return {p: hashlib.sha256((home / p).read_bytes()).hexdigest() for p in WEIGHTS}


def _mtimes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def quick_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("demo_home")
    result = build(home, quick=True, progress=False)
    assert not result.cached and result.built == list(demo.STAGES)
    return home


def test_layout_and_train_info(quick_home):
    for rel in WEIGHTS:
        assert (quick_home / rel).is_file(), rel
    for stage in ("t5", "llama-base"):
        d = stage_dir(quick_home, stage)
        assert (d / "registry.json").is_file() and (d / "tokenizer.json").is_file()
        assert not list(d.glob("*.bin"))
    for stage in ("t5-lora", "llama-lora"):
        assert (stage_dir(quick_home, stage) / "adapter_config.json").is_file()
    info = json.loads((quick_home / "students/t5/train_info.json").read_text())
    assert info["seed"] == 0 and info["steps"] > 0 and info["quick"] is True
    assert {"key", "seconds", "first_loss", "last_loss", "loss_curve"} <= set(info)
    assert not [p for p in quick_home.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_second_build_is_cached_and_trains_nothing(quick_home, monkeypatch):
    before = _mtimes(quick_home)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached build must not train")

    monkeypatch.setattr(demo, "_run_stage", no_training)
    result = build(quick_home, quick=True, progress=False)
    assert result.cached and result.built == []
    assert _mtimes(quick_home) == before
    assert demo.is_built(quick_home, quick=True)
    assert not demo.is_built(quick_home)  # the full-size build is a different key


def test_same_seed_same_bytes(quick_home, tmp_path):
    again = build(tmp_path, quick=True, progress=False)
    assert not again.cached
    assert _digest(tmp_path) == _digest(quick_home)


def test_only_changed_stages_rebuild(quick_home, tmp_path):
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(quick_home, home)
    cfg = DemoConfig.quick()
    cfg = replace(cfg, t5_lora=replace(cfg.t5_lora, r=2))
    result = build(home, config=cfg, progress=False)
    assert result.built == ["t5-lora"]
    assert _digest(home)["students/t5/model.safetensors"] == _digest(quick_home)["students/t5/model.safetensors"]
    assert _digest(home)["students/t5-lora/adapter_model.safetensors"] != _digest(quick_home)[
        "students/t5-lora/adapter_model.safetensors"]


def test_failed_stage_leaves_previous_dir(quick_home, tmp_path, monkeypatch):
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(quick_home, home)
    before = _digest(home)

    def boom(stage, cfg, home_, out, progress):
        (out / "partial.safetensors").write_bytes(b"x")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(demo, "_run_stage", boom)
    with pytest.raises(RuntimeError):
        build(home, quick=True, force=True, progress=False)
    assert _digest(home) == before
    assert not list((home / "data").glob("partial*"))
    assert not [p for p in home.rglob(".*") if ".tmp-" in p.name]


def test_evaluate_scores_and_caches(quick_home):
    first = evaluate("t5", quick_home, progress=False)
    assert not first.cached
    report = first.report.to_json()
    assert set(report) == {"All", "r_3", "r_5"} and report["All"]["n"] == DemoConfig.quick().n_test
    rows = [json.loads(line) for line in first.predictions.read_text().splitlines()]
    assert len(rows) == report["All"]["n"]
    again = evaluate("t5", quick_home, progress=False)
    assert again.cached and again.report.to_json() == report
    llama = evaluate("llama", quick_home, progress=False)
    assert "llama-lora" in json.loads((quick_home / "reports/demo-llama-metrics.json").read_text())["source"]
    assert set(llama.report.to_json()) == {"All", "r_3", "r_5"}


def test_evaluate_without_build(tmp_path):
    from vedit.errors import ModelDirError

    with pytest.raises(ModelDirError, match="vedit demo build"):
        evaluate("t5", tmp_path, progress=False)
    with pytest.raises(ModelDirError, match="choose one of"):
        evaluate("gpt", tmp_path, progress=False)


def test_cli(quick_home, tmp_path):
    from vedit.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["demo", "build", "--home", str(quick_home), "--quick"])
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output
    res = runner.invoke(cli, ["demo", "metrics", "--home", str(quick_home), "--student", "t5", "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.output)) == {"All", "r_3", "r_5"}
    res = runner.invoke(cli, ["demo", "metrics", "--home", str(quick_home)])
    assert res.exit_code == 0, res.output
    assert "T5 student" in res.output and "Llama student + LoRA adapter" in res.output and "r_5" in res.output
    res = runner.invoke(cli, ["demo", "--home", str(quick_home), "--quick"])  # build + metrics, cached
    assert res.exit_code == 0, res.output
    assert "up to date" in res.output and res.output.count("overall") == 2
    res = runner.invoke(cli, ["demo", "metrics", "--home", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "error: no demo students" in res.output
