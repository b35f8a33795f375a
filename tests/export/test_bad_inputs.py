"""Every bad input: one clear `error:` line, exit code 1, nothing left behind (CLI and library)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.export.conftest import INTENTS, leftovers
from vedit.errors import ExportError, ValidationError
from vedit.export.cli import export


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _missing(tmp, t5):
    return tmp / "nope"


def _bert(tmp, t5):
    d = _copy(t5, tmp / "bert")
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64}))
    return d


def _truncated(tmp, t5):
    d = _copy(t5, tmp / "trunc")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return d


def _tokenizer_mismatch(tmp, t5):
    from vedit.students.models import new_t5

    d = tmp / "small_vocab"
    new_t5(100, "tiny").save_pretrained(d)  # 100 embedding rows; the tokenizer has more tokens
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"):
        shutil.copy(t5 / f, d / f)
    return d


def _pickled(tmp, t5):
    from transformers import T5ForConditionalGeneration

    d = tmp / "pickled"
    T5ForConditionalGeneration.from_pretrained(t5).save_pretrained(d, safe_serialization=False)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(t5 / f, d / f)
    return d


BAD_MODELS = {
    "missing dir": (_missing, r"^error: model directory not found: .*nope$"),
    "unsupported architecture": (_bert, r"unsupported architecture 'bert' \(config.json model_type\); supported: llama, t5$"),
    "truncated weights": (_truncated, r"model.safetensors: corrupt or truncated weights \(.*\); re-save"),
    "tokenizer mismatch": (_tokenizer_mismatch, r"the tokenizer does not match the model: \d+ tokens but the embedding has 100 rows"),
    "pickled weights": (_pickled, r"only pickled weights \(pytorch_model.bin\).*pass --allow-pickle"),
}


def _error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_dir_cli(case, tmp_path, tiny_t5_dir):
    make, pattern = BAD_MODELS[case]
    model = make(tmp_path, tiny_t5_dir)
    out = tmp_path / "out"
    result = CliRunner().invoke(export, ["flan-t5", "--to", "onnx", "--model", str(model), "-o", str(out)])
    import re

    assert re.search(pattern, _error_line(result)), result.stderr
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.slow
def test_pickled_weights_with_allow_flag(tmp_path, tiny_t5_dir):
    from vedit.export import export_model

    res = export_model(_pickled(tmp_path, tiny_t5_dir), tmp_path / "out", allow_pickle=True, intents=INTENTS[:1],
                       max_new_tokens=8)
    assert res.manifest["validation"]["passed"] and "pytorch_model.bin" in res.manifest["source"]["sha256"]


def test_unknown_format_and_precision(tmp_path, tiny_t5_dir):
    r = CliRunner().invoke(export, ["flan-t5", "--to", "tflite", "--model", str(tiny_t5_dir), "-o", str(tmp_path / "o")])
    assert _error_line(r) == "error: unknown export format 'tflite'; available formats: onnx"
    r = CliRunner().invoke(export, ["flan-t5", "--precision", "int3", "--model", str(tiny_t5_dir), "-o", str(tmp_path / "o")])
    assert _error_line(r) == "error: unknown precision 'int3'; available: fp32, fp16, int8, int4"
    assert not (tmp_path / "o").exists()


def test_wrong_family_command(tmp_path, tiny_llama_dir):
    r = CliRunner().invoke(export, ["flan-t5", "--model", str(tiny_llama_dir), "-o", str(tmp_path / "o")])
    assert "is a llama model, not t5; use `vedit-export llama`" in _error_line(r)


def test_existing_output_refused_then_forced(tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    r = CliRunner().invoke(export, ["llama", "--model", str(tiny_llama_dir), "-o", str(out)])
    assert _error_line(r) == f"error: output directory already exists: {out}; pass --force to replace it"
    assert (out / "keep.txt").read_text() == "old"


@pytest.mark.slow
def test_force_replaces_existing_output(tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    r = CliRunner().invoke(export, ["llama", "--model", str(tiny_llama_dir), "-o", str(out), "--force"])
    assert r.exit_code == 0, r.stderr
    assert not (out / "keep.txt").exists() and (out / "manifest.json").exists()
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_no_space_left(tmp_path, tiny_llama_dir, monkeypatch):
    """A real ENOSPC from the OS (/dev/full) while writing the manifest: one line, nothing left."""
    import vedit.export.pipeline as pipeline

    def full_disk(path, data):
        with open("/dev/full", "w") as f:
            f.write(json.dumps(data))
            f.flush()

    monkeypatch.setattr(pipeline, "write_json", full_disk)
    out = tmp_path / "out"
    r = CliRunner().invoke(export, ["llama", "--model", str(tiny_llama_dir), "-o", str(out)])
    assert _error_line(r).startswith(f"error: no space left on device while writing {out}")
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.slow
def test_validation_failure_names_outputs_and_leaves_nothing(tmp_path, tiny_t5_dir):
    from vedit.export import export_model
    from vedit.export.validate import Tolerance

    out = tmp_path / "out"
    with pytest.raises(ValidationError) as err:
        export_model(tiny_t5_dir, out, intents=INTENTS[:1], max_new_tokens=8,
                     tolerance=Tolerance(0.0, 0.0, logits_gated=True, greedy_gated=True))
    msg = str(err.value)
    assert "\n" not in msg
    assert "encoder_model.onnx:last_hidden_state max diff" in msg and "decoder_model.onnx:logits max diff" in msg
    assert err.value.report.outputs and not err.value.report.passed
    assert not out.exists() and not leftovers(tmp_path)


def test_missing_adapter_dir(tmp_path, tiny_llama_dir):
    r = CliRunner().invoke(export, ["llama", "--model", str(tiny_llama_dir), "--adapter", str(tmp_path / "nolora"),
                                    "-o", str(tmp_path / "o")])
    assert _error_line(r) == f"error: adapter directory not found: {tmp_path / 'nolora'}"


def test_library_errors_are_export_errors(tmp_path, tiny_t5_dir):
    from vedit.export import export_model

    with pytest.raises(ExportError, match="unknown export format"):
        export_model(tiny_t5_dir, tmp_path / "o", to="coreml")


def _braceless_tokenizer(d: Path) -> None:
    """Like stock FlanT5: no "{" or "}" and no byte fallback (they come out as <unk>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:,\"'.!?;()[]&ée")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in sorted(chars)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Metaspace()
    tok.save(str(d / "tokenizer.json"))
    (d / "spiece.model").unlink(missing_ok=True)
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                         "unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>"}))


def test_tokenizer_that_cannot_write_braces_is_refused_before_export(tmp_path, tiny_t5_dir, monkeypatch):
    """Every tool it cannot write is named, with the recipe, before the model is even loaded (no
    ONNX export, no validation: before the fix the refusal came from the grammar, after both)."""
    from vedit.errors import GrammarError
    from vedit.export import checks, export_model, pipeline

    d = _copy(tiny_t5_dir, tmp_path / "braceless")
    _braceless_tokenizer(d)

    def never(*a, **k):
        raise AssertionError("export work started before the tokenizer check")

    monkeypatch.setattr(checks, "load_model", never)
    monkeypatch.setattr(pipeline, "_export", never)
    with pytest.raises(GrammarError) as err:
        export_model(d, tmp_path / "out", intents=INTENTS)
    msg = str(err.value)
    for tool in ("adjust", "selective_adjust", "filter"):
        assert f"{tool} needs '{{' '}}'" in msg
    assert "add_tokens" in msg and "byte fallback" in msg and "docs/byo-student.md#" in msg
    assert not (tmp_path / "out").exists()
