"""The `vedit-export` commands with their defaults (VEDIT_HOME points at a temp home)."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from vedit.export.cli import export


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_default_model_missing_says_run_demo_build(home):
    r = CliRunner().invoke(export, ["flan-t5", "--to", "onnx"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: demo t5 student not found at {home / 'students' / 't5'}; run `vedit demo build` first "
        "or pass --model DIR"
    )


@pytest.mark.slow
def test_flan_t5_to_onnx_with_defaults(home, tiny_t5_dir):
    shutil.copytree(tiny_t5_dir, home / "students" / "t5")
    r = CliRunner().invoke(export, ["flan-t5", "--to", "onnx"])
    assert r.exit_code == 0, r.stderr
    out = home / "exports" / "flan-t5-fp32"
    assert (out / "manifest.json").exists() and (out / "decoder_with_past_model.onnx").exists()
    assert "validation (fp32, gated): passed" in r.stdout
    assert "decoder_with_past_model.onnx[+3 tokens]:logits" in r.stdout
    assert "[export] exporting to ONNX" in r.stderr  # progress goes to stderr


@pytest.mark.slow
def test_llama_defaults_merge_the_demo_adapter(home, tiny_llama_dir, tiny_llama_lora_dir):
    shutil.copytree(tiny_llama_dir, home / "students" / "llama-base")
    shutil.copytree(tiny_llama_lora_dir, home / "students" / "llama-lora")
    r = CliRunner().invoke(export, ["llama", "--to", "onnx", "--precision", "int8"])
    assert r.exit_code == 0, r.stderr
    import json

    m = json.loads((home / "exports" / "llama-int8" / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["merge"]["passed"]
    assert m["source"]["adapter_dir"] == str((home / "students" / "llama-lora").resolve())
    assert "merged adapter" in r.stdout


@pytest.mark.slow
def test_merge_command(tmp_path, tiny_t5_dir, tiny_t5_lora_dir):
    out = tmp_path / "merged"
    args = ["merge", "--base", str(tiny_t5_dir), "--adapter", str(tiny_t5_lora_dir), "-o", str(out)]
    r = CliRunner().invoke(export, args)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("merged 36 LoRA layers into")
    assert (out / "model.safetensors").exists()
    r = CliRunner().invoke(export, args)
    assert r.exit_code == 1 and "pass --force to replace it" in r.stderr
    assert CliRunner().invoke(export, args + ["--force"]).exit_code == 0


def test_vedit_export_is_registered_in_main_cli():
    from vedit.cli import cli

    assert "export" in cli.commands and {"merge", "flan-t5", "llama"} <= set(cli.commands["export"].commands)
