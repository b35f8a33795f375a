"""`vedit web build`: what the site holds (the export's own grammar, prompts and limits, rendered by
the Python runtime's code), atomic writes, and one-line refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from vedit.cli import cli


def test_web_json_is_the_exports_grammar_and_prompts(sites, tiny_export):
    from vedit.decoding.grammar import load_grammar
    from vedit.registry import load_registry

    meta = json.loads((sites["t5-fp32"] / "model" / "web.json").read_text(encoding="utf-8"))
    g = load_grammar(tiny_export)
    assert meta["grammar"]["eos_token_id"] == g.eos_token_id and meta["grammar"]["mode"] == g.mode
    assert set(meta["grammar"]["automata"]) == set(g.automata)
    for name, a in g.automata.items():
        for field, values in a.arrays().items():
            assert np.array_equal(np.asarray(meta["grammar"]["automata"][name][field]), values.astype(np.int64)), field
    assert {int(k): bytes.fromhex(v) for k, v in meta["grammar"]["token_bytes"].items()} == g.token_bytes
    registry = load_registry(tiny_export / "registry.json")
    intent = 'golden {hour} "x" {intent}'
    for tool in meta["tools"]:
        before, after = tool["prompt"]
        assert before + intent + after == registry.prompt(tool["name"], intent, "t5")
    for name in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx", "tokenizer.json"):
        assert (sites["t5-fp32"] / "model" / name).read_bytes() == (tiny_export / name).read_bytes()
    sw = (sites["t5-fp32"] / "sw.js").read_text(encoding="utf-8")
    assert '"model/web.json"' in sw and '"ort-wasm-simd-threaded.wasm"' in sw and "__VEDIT" not in sw


def test_cli_builds_atomically_and_refuses_in_one_line(tmp_path, tiny_export, web_runtime, monkeypatch):
    monkeypatch.setenv("VEDIT_WEB_DIST", str(web_runtime))
    runner = CliRunner()
    out = tmp_path / "site"
    r = runner.invoke(cli, ["web", "build", str(tiny_export), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"python -m http.server -b 127.0.0.1 -d {out} 8000" in r.output
    assert (out / "index.html").is_file()

    r = runner.invoke(cli, ["web", "build", str(tiny_export), "-o", str(out)])
    assert r.exit_code == 1 and "pass --force" in r.output

    big = tmp_path / "big"
    shutil.copytree(tiny_export, big)
    (big / "decoder_model.onnx.data").write_bytes(b"\0")
    r = runner.invoke(cli, ["web", "build", str(big), "-o", str(tmp_path / "big-site")])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        f"error: {big}: the ONNX weights are in external data files (decoder_model.onnx.data), which the web "
        "runtime does not load; a model that needs them is too big for a browser anyway"]
    assert not (tmp_path / "big-site").exists()

    monkeypatch.setenv("VEDIT_WEB_DIST", str(tmp_path / "nowhere"))
    r = runner.invoke(cli, ["web", "build", str(tiny_export), "-o", str(tmp_path / "s2")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "the web runtime is not built" in r.output and "bash scripts/web.sh" in r.output
    assert not (tmp_path / "s2").exists() and not list(tmp_path.glob(".s2.*"))
