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
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import quick_export
from vedit.bench.tokenizer_families import measure, student_dir
from vedit.decoding.language import char_regex
from vedit.errors import ModelDirError
from vedit.export.checks import load_tokenizer


@pytest.fixture(scope="module")
def truth(tmp_path_factory, registry):
    from vedit.data.synth import generate, write_dataset

    return write_dataset(generate(seed=3, n_intents=120, n_test=4, registry=registry),
                         tmp_path_factory.mktemp("truth"))["test"]


CASES = [("t5-unigram", "t5", "spiece.model"), ("llama2-bpe", "llama", "tokenizer.model")]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def spm_export(request, tmp_path_factory):
    """(student folder with only the SentencePiece file, its export, the case)."""
    tokenizer, student, file = request.param
    work = tmp_path_factory.mktemp(tokenizer)
    src = student_dir(tokenizer, student, work / "student", seed=4)
    quick_export(src, work / "onnx")
    return src, work / "onnx", request.param


def test_sentencepiece_only_folder_loads_like_sentencepiece(spm_export):
    import sentencepiece as spm

    src, _, (_, student, file) = spm_export
    assert not (src / "tokenizer.json").exists() and (src / file).is_file()
    tok = load_tokenizer(src)
    sp = spm.SentencePieceProcessor(model_file=str(src / file))
    text = 'Global colour adjustment for the request: golden hour 2024 {"a":-12}'
    special = [tok.eos_token_id] if student == "t5" else []
    lead = [tok.bos_token_id] if student == "llama" else []
    assert tok(text)["input_ids"] == lead + sp.encode(text) + special  # T5 appends </s>, Llama prepends <s>


def test_sentencepiece_only_folder_exports_and_keeps_jump_forward(spm_export, truth):
    _, out, _ = spm_export
    assert (out / "tokenizer.json").is_file()
    row = measure(out, truth, 3)
    assert row.mode == "runs"
    assert row.identical and row.scripted
    assert row.calls < 0.6 * row.step_calls


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(intents=st.lists(st.text(max_size=40), min_size=1, max_size=3))
def test_unsteered_answers_are_identical_to_step_by_step(spm_export, registry, intents):
    """The random student's own choices (any free token the grammar admits), with and without jump-forward."""
    from vedit.decoding.predictor import Predictor

    _, out, _ = spm_export
    answers = {jf: Predictor.load(out, jump_forward=jf, threads=1).predict(intents) for jf in (True, False)}
    assert [p.raw for p in answers[True]] == [p.raw for p in answers[False]]
    for p in answers[True]:
        for tool in registry.tools:
            assert re.fullmatch(char_regex(tool), p.raw[tool.name]), p.raw[tool.name]
            json.loads(p.raw[tool.name])
    assert sum(p.stats.decoder_calls for p in answers[True]) < sum(p.stats.decoder_calls for p in answers[False])


def test_unreadable_sentencepiece_file_is_one_line_with_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    (tmp_path / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(ModelDirError) as err:
        load_tokenizer(tmp_path)
    msg = str(err.value)
    assert "spiece.model" in msg and "tokenizer.json" in msg and "\n" not in msg


def test_parity_bench_loads_the_sentencepiece_only_original(spm_export, truth):
    """``vedit bench parity``'s PyTorch side (vedit/reference.py) loaded the folder with AutoTokenizer
    and hit the protobuf clash; it now uses the exporter's loader, and matches the export exactly."""
    from click.testing import CliRunner

    from vedit.cli import cli
    from vedit.reference import ReferencePredictor

    src, out, _ = spm_export
    ref = ReferencePredictor.load(src)
    assert ref.tokenizer("golden hour 2024")["input_ids"] == load_tokenizer(src)("golden hour 2024")["input_ids"]
    result = CliRunner().invoke(cli, ["bench", "parity", "--reference", str(src), "--candidate", str(out),
                                      "--data", str(truth), "--limit", "2", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["passed"], report


def test_parity_against_a_server_compiles_the_grammar_from_a_sentencepiece_only_folder(spm_export):
    """With ``--url`` the PyTorch side's grammar is compiled from the student folder itself."""
    from vedit.bench.parity import grammar_dir_for
    from vedit.decoding.grammar import load_grammar

    src, out, (_, student, _) = spm_export
    with grammar_dir_for(src, student, out / "registry.json") as d:
        mine, exported = load_grammar(d), load_grammar(out)
    assert mine.modes == exported.modes and mine.token_bytes == exported.token_bytes
