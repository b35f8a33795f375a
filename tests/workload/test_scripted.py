"""Scripted answers: every path (ONNX loop, PyTorch plain and constrained) decodes exactly the script.

The models are random-weight tiny students: left alone they answer short or invalid texts, so
producing the truth answers exactly shows that the steering, not the weights, decides.
"""

from __future__ import annotations

import numpy as np
import pytest

from vedit.workload.scripted import SCRIPT_BIAS, load_scripts, script_bias, script_cost, steer
from vedit.data.rows import write_jsonl
from vedit.data.synth import generate
from vedit.decoding import Predictor, load_grammar
from vedit.decoding.vocab import load_tokenizer
from vedit.errors import DatasetError
from vedit.registry import parse_call

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    rows = generate(seed=5, n_intents=60, n_test=5).test
    path = tmp_path_factory.mktemp("scripted") / "test.jsonl"
    write_jsonl(path, [r.to_json() for r in rows])
    return path, rows


@pytest.fixture(scope="module", params=["t5", "llama"])
def family(request, tiny_t5_dir, tiny_llama_dir, t5_fp32, llama_fp32):
    return {"t5": (tiny_t5_dir, t5_fp32.out_dir), "llama": (tiny_llama_dir, llama_fp32.out_dir)}[request.param]


def test_script_bias_adds_to_the_scripted_token_only():
    logits = np.arange(6, dtype=np.float32)
    out = script_bias(logits, [4, 2], 1)
    assert out[2] == 2 + SCRIPT_BIAS and np.array_equal(np.delete(out, 2), np.delete(logits, 2))
    assert logits[2] == 2  # the model's logits are left alone
    assert script_bias(logits, [4, 2], 2) is logits  # past the script's end: no-op


def test_scripts_are_the_truth_answers_in_the_grammars_tokens(family, truth):
    _, export = family
    path, rows = truth
    scripts = load_scripts(export, 4, truth=path)
    grammar = load_grammar(export)
    tok = load_tokenizer(export).tokenizer
    assert [s.intent for s in scripts] == [r.intent for r in rows[:4]]
    for s, row in zip(scripts, rows):
        for tool, call in row.calls_by_tool.items():
            ids = s.tokens[tool]
            assert ids[-1] == grammar.eos_token_id
            # the students' grammar accepts the tokenizer's own ids: the script is what a student writes
            assert ids == (*tok.encode(call.dumps(), add_special_tokens=False).ids, grammar.eos_token_id)
            assert parse_call(call.tool, s.texts[tool]) == call  # the text is the truth answer
            assert s.texts[tool].strip() == call.dumps()
        cost = script_cost(grammar, s)  # walks the grammar: raises if any token is refused
        assert cost.free > 0 and cost.free + cost.forced == sum(len(t) for t in s.tokens.values())


def test_missing_truth_file_is_one_clear_error(t5_fp32, tmp_path):
    with pytest.raises(DatasetError, match="no truth file"):
        load_scripts(t5_fp32.out_dir, 3, truth=tmp_path / "absent.jsonl")


@pytest.mark.parametrize("jump_forward", [True, False])
def test_onnx_loop_decodes_the_script(family, truth, jump_forward):
    _, export = family
    scripts = load_scripts(export, 5, truth=truth[0])
    p = Predictor.load(export, threads=1, jump_forward=jump_forward, batch_size=2)  # 3 batches: row offsets
    unsteered = p.predict([s.intent for s in scripts])
    steered = p.predict([s.intent for s in scripts], bias=steer(scripts))
    assert [pr.raw for pr in steered] == [s.texts for s in scripts]
    # a random model does not answer the truth on its own: the bias decided
    assert [pr.raw for pr in unsteered] != [s.texts for s in scripts]
    grammar = load_grammar(export)
    for pr, s in zip(steered, scripts):
        cost = script_cost(grammar, s)
        assert (pr.stats.free_tokens, pr.stats.forced_tokens) == (cost.free, cost.forced)


@pytest.mark.parametrize("constrained", [False, True])
def test_pytorch_generate_decodes_the_script(family, truth, constrained):
    from vedit.reference import ReferencePredictor

    student, export = family
    scripts = load_scripts(export, 5, truth=truth[0])
    grammar = load_grammar(export)
    ref = ReferencePredictor.load(student, threads=1)
    results = ref.predict([s.intent for s in scripts], batch_size=2, script=scripts,
                          grammar=grammar if constrained else None)
    for r, s in zip(results, scripts):
        assert {t: tuple(ids) for t, ids in r.tokens.items()} == s.tokens
        assert {t: grammar.text(ids) for t, ids in r.tokens.items()} == s.texts
    # the mapping form works too, and a script per intent is required
    again = ref.predict([scripts[0].intent], script=[scripts[0].tokens], grammar=grammar)
    assert again[0].raw == scripts[0].texts
    with pytest.raises(Exception, match="one script per intent"):
        ref.predict([s.intent for s in scripts], script=scripts[:2])

