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
    assert r.exit_code == 1, r.output  # the empty line is reported, not skipped
    assert "error: line 2: empty intent" in r.output
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


def test_stdin_answers_stream_line_by_line(t5_export):
    """Each line is answered before the next one is written (a pipe that stays open)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "from vedit.cli import main; main()", "predict", "--model",
                             str(t5_export), "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for intent in ("golden hour", "cold tone"):
            proc.stdin.write(intent + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["intent"] == intent  # blocks until answered
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_bad_stdin_line_gets_its_own_error(t5_export):
    r = CliRunner().invoke(cli, ["predict", "--model", str(t5_export), "--json"],
                           input="golden hour\n" + "x" * 2000 + "\nneon\n")
    assert r.exit_code == 1
    assert [json.loads(x)["intent"] for x in r.output.splitlines() if x.startswith("{")] == ["golden hour", "neon"]
    assert "error: line 2: 2000 bytes, over the limit of 1024 bytes per intent" in r.output


def test_one_bad_argument_gets_its_own_error_the_others_are_answered(t5_export):
    r = CliRunner().invoke(cli, ["predict", "--model", str(t5_export), "--json", "golden hour", "x" * 2000, " ", "neon"])
    assert r.exit_code == 1
    assert [json.loads(x)["intent"] for x in r.output.splitlines() if x.startswith("{")] == ["golden hour", "neon"]
    assert "error: intent 2: 2000 bytes, over the limit of 1024 bytes per intent" in r.output
    assert "error: intent 3: empty intent" in r.output


def test_draft_gives_the_same_answers_in_fewer_decoder_calls(t5_export):
    """``--draft`` (and the default, where the export can) against ``--no-draft``: stdin lines
    answered one by one, the second round after the drafter has seen the first; the same answers,
    and ``--stats`` counts fewer decoder calls."""
    intents = ["golden hour", "cold tone", "neon night", "soft pastel", "X ray", "Morocco"]
    lines = "\n".join(intents * 2) + "\n"
    out = {}
    for flag in (["--no-draft"], ["--draft"]):
        r = CliRunner().invoke(cli, ["predict", "--model", str(t5_export), "--json", "--stats", *flag], input=lines)
        assert r.exit_code == 0, r.output
        out[flag == ["--draft"]] = [json.loads(line) for line in r.output.splitlines()]
    strip = [[{k: v for k, v in x.items() if k != "stats"} for x in out[d]] for d in (False, True)]
    assert strip[0] == strip[1] and [x["intent"] for x in strip[1]] == intents * 2
    calls = {d: sum(x["stats"]["decoder_calls"] for x in out[d][len(intents):]) for d in out}
    assert calls[True] < calls[False]


@pytest.mark.parametrize("args, message", [
    (["--url", "grpc://127.0.0.1:9", "--draft"], "--draft/--no-draft and --stats do not apply"),
    (["--url", "grpc://127.0.0.1:9", "--no-draft"], "--draft/--no-draft and --stats do not apply"),
    (["--draft", "--no-jump-forward"], "drop --no-jump-forward"),
])
def test_draft_is_in_process_with_jump_forward_only(t5_export, args, message):
    model = [] if "--url" in args else ["--model", str(t5_export)]
    r = CliRunner().invoke(cli, ["predict", *model, *args, "golden hour"])
    assert r.exit_code == 2 and message in r.output
