"""Scripted latency runs on the tiny students: every path answers the scripts, the report says so."""

from __future__ import annotations

import json

import pytest

from vedit.bench.latency import interleaved, measure_model
from vedit.peers import PeerPaths
from vedit.bench.report import write
from vedit.workload.scripted import load_scripts, script_cost
from vedit.data.rows import write_jsonl
from vedit.data.synth import generate
from vedit.decoding import load_grammar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency_scripted") / "test.jsonl"
    write_jsonl(path, [r.to_json() for r in generate(seed=7, n_intents=60, n_test=4).test])
    return path


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_scripted_run_every_path_answers_the_scripts(family, truth, tmp_path, request):
    student = request.getfixturevalue(f"tiny_{family}_dir")
    export = request.getfixturevalue(f"{family}_fp32").out_dir
    scripts = load_scripts(export, 3, truth=truth)
    asked = []

    def peers(fam, *, student_dir, exports, scripts, threads):  # no engine: records what peers were given
        asked.append((fam, student_dir))
        found = PeerPaths()
        found.skipped["nothing"] = "no peer in this test"
        return found

    run = measure_model("tiny scripted", student_dir=student, exports={"fp32": export}, scripts=scripts,
                        threads=1, warmup=1, peers=peers, peer_student_dir=tmp_path / "merged")
    assert asked == [(family, tmp_path / "merged")]
    assert "peer nothing skipped: no peer in this test" in run.notes
    by = {s.path: s for s in run.stats}
    grouped = ["onnx-fp32-grouped"] if family == "t5" else []  # the previous T5 scheduler, kept to compare
    assert list(by) == ["pytorch", "pytorch+grammar", "onnx-fp32-step", *grouped, "onnx-fp32", "onnx-fp32-draft"]
    if grouped:  # joining every row in every call never takes more calls than grouping rows
        assert by["onnx-fp32"].decoder_calls_per_request <= by["onnx-fp32-grouped"].decoder_calls_per_request
    # steered, even plain generate returns the scripts' texts; every path was checked
    assert run.texts.paths == list(by) and run.texts.ok and run.texts.reference == "the scripts"
    grammar = load_grammar(export)
    costs = [script_cost(grammar, s) for s in scripts]
    free = sum(c.free for c in costs) / len(costs)
    forced = sum(c.forced for c in costs) / len(costs)
    assert run.scripted["free_tokens_per_request"] == pytest.approx(free)
    for name in ("onnx-fp32", "onnx-fp32-step", *grouped, "onnx-fp32-draft"):
        assert by[name].free_tokens_per_request == pytest.approx(free)
        assert by[name].forced_tokens_per_request == pytest.approx(forced)
    # drafts learnt from the answers before (the warm-up's included) save calls, never add any
    assert by["onnx-fp32-draft"].decoder_calls_per_request < by["onnx-fp32"].decoder_calls_per_request
    # plain generate takes one step per token of the longest row (EOS included)
    longest = [max(len(t) for t in s.tokens.values()) for s in scripts]
    assert by["pytorch"].decoder_calls_per_request == pytest.approx(sum(longest) / len(longest))
    assert set(run.info) == set(by) and "steered by the script" in run.info["onnx-fp32"]
    files = write([run], tmp_path)
    md = files["md"].read_text()
    assert "same texts on every path: yes" in md and "free / forced tokens/req" in md
    data = json.loads(files["json"].read_text())[0]
    assert data["texts_check"]["ok"] and data["scripted"]["requests"] == 3


def test_a_different_answer_is_caught(t5_fp32, truth):
    """A path that answers its own way (unsteered) fails the check, intent by intent."""
    from vedit.bench.latency import onnx_paths

    scripts = load_scripts(t5_fp32.out_dir, 3, truth=truth)
    by_intent = {s.intent: s for s in scripts}
    steered = onnx_paths({"fp32": t5_fp32.out_dir}, threads=1, step_for=(), scripts=by_intent)["onnx-fp32"]
    own = onnx_paths({"free": t5_fp32.out_dir}, threads=1, step_for=())["onnx-free"]
    _, check = interleaved({"onnx-fp32": steered, "onnx-free": own}, list(by_intent), warmup=0,
                           expected={i: s.text_tuple() for i, s in by_intent.items()})
    assert check.differing["onnx-fp32"] == 0 and check.differing["onnx-free"] == 3 and not check.ok
    assert check.verdict("onnx-free") == "NO (3/3 differ)"


def test_a_failing_peer_is_dropped_with_a_note(t5_fp32, truth):
    from vedit.bench.latency import onnx_paths
    from vedit.errors import PeerError

    intents = [s.intent for s in load_scripts(t5_fp32.out_dir, 3, truth=truth)]
    paths = onnx_paths({"fp32": t5_fp32.out_dir}, threads=1, step_for=(), drafts=False)
    calls = []

    def peer(intent):  # stands in for a peer worker process that dies on its second request
        calls.append(intent)
        if len(calls) == 2:
            raise PeerError("worker exited with code -9")
        return paths["onnx-fp32"](intent)

    notes: list[str] = []
    stats, _ = interleaved({**paths, "peer": peer}, intents, warmup=0, fragile=["peer"], notes=notes)
    assert [s.path for s in stats] == ["onnx-fp32"] and stats[0].n == 3
    assert notes and "peer failed and was dropped" in notes[0] and "code -9" in notes[0]
    with pytest.raises(PeerError):  # a path of vedit's own that fails ends the run
        calls.clear()
        interleaved({"peer": peer}, intents, warmup=0)
