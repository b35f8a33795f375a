"""``vedit predict`` through click's test runner (inside a VeditGroup, as ``vedit`` mounts it)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from vedit.clibase import VeditGroup
from vedit.predict_cli import predict

pytestmark = pytest.mark.slow


@click.group(cls=VeditGroup)
def cli() -> None:
    pass


cli.add_command(predict)


def test_json_lines_for_arguments(t5_export, registry):
    r = CliRunner().invoke(cli, ["predict", "--model", str(t5_export), "--json", "golden hour", "😈"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines()]
    assert [x["intent"] for x in lines] == ["golden hour", "😈"]
    assert all(list(x) == ["intent", *registry.tool_names] for x in lines)


def test_stdin_one_intent_per_line_and_readable_form(llama_export, registry):
    r = CliRunner().invoke(cli, ["predict", "--model", str(llama_export), "--stats"], input="cold tone\n\nneon\n")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("cold tone\n")
    assert "\nneon\n" in r.output
    for name in registry.tool_names:
        assert r.output.count(f"  {name} ") == 2
    assert r.output.count("decoder calls") == 2


def test_missing_default_model_says_how_to_export(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    r = CliRunner().invoke(cli, ["predict", "x"])
    assert r.exit_code == 1
    assert r.output.startswith("error: no model at") and "vedit export flan-t5 --to onnx" in r.output
