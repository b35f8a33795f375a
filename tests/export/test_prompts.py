"""Prompts as data through the command line: the student's chat template by default, a Jinja2
template on request; the export prints and records the model input, the runtime feeds exactly
that input, and --check-examples reports agreement recomputed here from `vedit predict`."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from vedit.cli import cli

pytestmark = pytest.mark.slow

CHAT = "{{ bos_token }}[INST] <<{{ tools[0].function.name }}>> {{ messages[0]['content'] }} [/INST]"


@pytest.fixture(scope="module")
def chat_export(tmp_path_factory, tiny_llama_dir):
    d = tmp_path_factory.mktemp("chat") / "student"
    shutil.copytree(tiny_llama_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = d.parent / "export"
    result = CliRunner().invoke(cli, ["export", "llama", "--model", str(d), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return d, out, result.output


def test_chat_template_is_the_default_and_is_printed(chat_export, registry):
    student, out, output = chat_export
    want = f"[INST] <<adjust>> {registry.prompt('adjust', 'golden hour', 't5')} [/INST]"
    assert f"prompt: chat ({student / 'tokenizer_config.json'}); model input for 'golden hour', tool adjust:" in output
    assert "    " + want in output.splitlines()
    m = json.loads((out / "manifest.json").read_text())
    assert m["prompt"]["kind"] == "chat" and m["prompt"]["sample_input"]["adjust"] == want
    # the export log states the fused graph's real opset, not optimum's
    assert "fused graph (opset 23)" in output and m["opset"] == 23


def test_runtime_feeds_the_recorded_input(chat_export, registry):
    """The runtime's prompt ids are the tokenizer's encoding of the recorded text (with its BOS)."""
    from tokenizers import Tokenizer

    from vedit.decoding import Predictor

    _, out, _ = chat_export
    m = json.loads((out / "manifest.json").read_text())
    p = Predictor.load(out)
    built = p.prompts.build("golden hour").ids
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    for ids, tool in zip(built, registry.tool_names):
        assert ids == tok.encode(m["prompt"]["sample_input"][tool], add_special_tokens=True).ids


def test_prompt_template_and_check_examples(tmp_path, tiny_t5_dir, registry):
    template = tmp_path / "prompt.jinja"
    template.write_text("{{ tool.name }}: {{ intent }}")
    examples = tmp_path / "examples.jsonl"
    rows = [{"intent": "golden hour", "adjust": {}, "filter": {"name": "none", "intensity": 0}},
            {"intent": "cold tone", "selective_adjust": {}}]
    examples.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", "flan-t5", "--model", str(tiny_t5_dir), "--prompt-template",
                                      str(template), "--check-examples", str(examples), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "model input for 'golden hour', tool adjust:\n    adjust: golden hour\n" in result.output
    m = json.loads((out / "manifest.json").read_text())
    # independent: what `vedit predict` answers, compared with the expected answers here
    pred = CliRunner().invoke(cli, ["predict", "--model", str(out), "--json", "golden hour", "cold tone"])
    answers = {x["intent"]: x for x in map(json.loads, pred.output.splitlines())}
    same = [answers[r["intent"]][t] == v for r in rows for t, v in r.items() if t != "intent"]
    report = m["check_examples"]
    assert report["n"] == 3 and report["agreement"] == pytest.approx(sum(same) / 3)
    assert report["tools"]["filter"]["agreement"] == float(answers["golden hour"]["filter"] == rows[0]["filter"])
    assert f"examples {examples}: {report['agreement']:.0%} of 3 answers as expected" in result.output


def test_bad_examples_are_refused_before_export(tmp_path, tiny_t5_dir):
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"intent": "x", "adjust": {"exposure": 500}}\n{"intent": "y", "blur": 3}\nnot json\n')
    result = CliRunner().invoke(cli, ["export", "flan-t5", "--model", str(tiny_t5_dir), "--check-examples",
                                      str(examples), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "3 bad row(s): line 1: adjust: exposure: 500 is greater than the maximum of 100" in result.output
    assert "line 2: unknown tool 'blur'" in result.output and "line 3: not JSON" in result.output
    assert not (tmp_path / "out").exists()
