"""Students whose folder carries only a SentencePiece model, as many checkpoints ship.

A T5 folder with only ``spiece.model`` and a Llama folder with only ``tokenizer.model`` used to
fail with "Detected incompatible Protobuf Gencode/Runtime versions" (transformers' converter
imports sentencepiece's protobuf gencode, newer than the pinned runtime). They now export through
the real exporter with a ``tokenizer.json`` built from the model file, keep jump-forward (``runs``
grammar: these tokenizers merge digits), and answer the scripted texts identically with and
without jump-forward on the exported ONNX student.
"""

from __future__ import annotations

import json

import pytest

from support import quick_export
from vedit.bench.tokenizer_families import measure, student_dir
from vedit.errors import ModelDirError
from vedit.export.checks import load_tokenizer


@pytest.fixture(scope="module")
def truth(tmp_path_factory, registry):
    from vedit.data.synth import generate, write_dataset

    return write_dataset(generate(seed=3, n_intents=120, n_test=4, registry=registry),
                         tmp_path_factory.mktemp("truth"))["test"]


@pytest.mark.parametrize(("tokenizer", "student", "file"), [("t5-unigram", "t5", "spiece.model"),
                                                            ("llama2-bpe", "llama", "tokenizer.model")])
def test_sentencepiece_only_folder_exports_and_keeps_jump_forward(tmp_path, truth, tokenizer, student, file):
    import sentencepiece as spm

    src = student_dir(tokenizer, student, tmp_path / "student", seed=4)
    assert not (src / "tokenizer.json").exists() and (src / file).is_file()
    tok = load_tokenizer(src)
    sp = spm.SentencePieceProcessor(model_file=str(src / file))
    text = 'Global colour adjustment for the request: golden hour 2024 {"a":-12}'
    special = [tok.eos_token_id] if student == "t5" else []
    lead = [tok.bos_token_id] if student == "llama" else []
    assert tok(text)["input_ids"] == lead + sp.encode(text) + special  # T5 appends </s>, Llama prepends <s>

    out = tmp_path / "onnx"
    quick_export(src, out)
    assert (out / "tokenizer.json").is_file()
    row = measure(out, truth, 3)
    assert row.mode == "runs"
    assert row.identical and row.scripted
    assert row.calls < 0.6 * row.step_calls


def test_unreadable_sentencepiece_file_is_one_line_with_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    (tmp_path / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(ModelDirError) as err:
        load_tokenizer(tmp_path)
    msg = str(err.value)
    assert "spiece.model" in msg and "tokenizer.json" in msg and "\n" not in msg
