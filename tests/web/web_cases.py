"""What the browser tests share (a module of its own: several test folders have a conftest.py, so
``from conftest import ...`` would find another one): the intents, the Python runtime's answers
and how the JavaScript ones are compared with them."""


from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from vedit.bench.guarantees import _PIECES, hostile_intents
from vedit.intents import MAX_INTENT_BYTES, SAMPLE_INTENTS, intent_problem

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"

#: The intents both runtimes answer: the paper's looks, every hostile piece the guarantees fuzz
#: with, seeded combinations of them, the intent rule's refusals and its edges, and intents long
#: enough to be cut at the prompt limit (the truncation rule).
INTENTS = [
    *SAMPLE_INTENTS, *_PIECES, *hostile_intents(20, seed=7),
    "", " \t\n", "\x1c\x1d", "\ufeff", "x" * (MAX_INTENT_BYTES + 1), "é" * (MAX_INTENT_BYTES // 2 + 1),
    "y" * MAX_INTENT_BYTES, "🙂" * (MAX_INTENT_BYTES // 4), "golden hour " * 80, "Москва " * 70,
    "{intent} {params} $& $1 \\u0000", "\ud83d golden", "a\u00a0b\u2028c",
]


def node() -> str:
    path = shutil.which("node")
    if not path:
        pytest.fail("node is not installed; the web runtime needs Node 20 (apt-get install nodejs npm)")
    return path


class Reference:
    """The Python runtime's answers (what `vedit predict --json --stats` prints, or the intent
    rule's refusal), with each row's tokens and the logits at its free steps, to tell a real
    difference from a near tie when int8 kernels round differently."""

    def __init__(self, export_dir: Path):
        from vedit.decoding import Predictor

        self.p = Predictor.load(export_dir, threads=1, draft=False)  # the browser runtime does not draft
        self.tools = self.p.registry.tool_names

    def answer(self, intent: str) -> tuple[dict, dict[str, list[int]], dict]:
        problem = intent_problem(intent)
        if problem:
            return {"intent": intent, "error": problem}, {}, {}
        logits, traces = {}, {}

        def record(request, tool, position, row_logits):
            logits[(tool, position)] = row_logits.copy()
            return row_logits

        prediction = self.p._prediction

        def keep_traces(built, row_traces):  # the loop's traces, before they become a Prediction
            traces.update({t: tr.tokens for t, tr in zip(self.tools, row_traces)})
            return prediction(built, row_traces)

        self.p._prediction = keep_traces
        try:
            (a,) = self.p.predict([intent], bias=record)
        finally:
            del self.p._prediction
        out = a.to_json()
        out["stats"] = a.stats.as_dict()
        return out, traces, logits


#: Intents with a byte order mark, zero-width and other format characters where text codecs and
#: trimming differ between Python and JavaScript (a TextDecoder drops a leading U+FEFF; Python keeps it).
FORMAT_CHARS = ["\ufeff", "\ufeffgolden hour", "golden\ufeff hour", "\ufeff\ufeff", "\ufffe", "\u200b\u200d",
                "\x00golden", "\u2066warm\u2069", "\ufeff" + "é" * 300]


def _node(site: Path, intents: list[str], *flags: str) -> list:
    r = subprocess.run([node(), str(WEB / "src" / "node.mjs"), str(site), *flags],
                       input=json.dumps(intents), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.split("\n") if line]  # not splitlines(): U+2028 is in answers


def node_answers(site: Path, intents: list) -> list[dict]:
    """The JavaScript runtime's answers in Node (onnxruntime-web's WASM backend). An item may be
    ``{"intent": ..., "steer": [[tool, position, token, add], ...]}`` (see :func:`steered_answer`)."""
    return _node(site, intents, "--stats", "--trace")


def node_prompts(site: Path, intents: list[str]) -> list[list[list[int]]]:
    """The JavaScript runtime's prompt ids (per intent, one list per tool), truncation rule included."""
    return _node(site, intents, "--prompts")


#: int8 only: a row may leave the Python path where its two candidates are this close in the
#: Python runtime's logits (a fraction of the logits' range: about one int8 quantization step of
#: the activations, 1/127). onnxruntime's native and WASM int8 kernels round their float parts
#: differently; fp32 must match exactly.
NEAR_TIE = 0.01


def compare(ref: Reference, intents: list[str], got: list[dict], *, precision: str) -> dict:
    """Counts of identical answers; fails on any difference that is not an int8 near tie."""
    assert len(got) == len(intents)
    counts = {"answers": len(intents), "identical": 0, "refused": 0, "near_ties": 0}
    for intent, js in zip(intents, got):
        want, tokens, logits = ref.answer(intent)
        trace = js.pop("trace", {})
        counts["refused"] += "error" in want
        if js == want:
            counts["identical"] += 1
            continue
        assert precision == "int8", f"{intent!r}: Python {json.dumps(want)[:400]}\nJS {json.dumps(js)[:400]}"
        assert js["intent"] == want["intent"] and "error" not in want
        for tool in ref.tools:
            if js[tool] == want[tool]:
                continue
            mine, theirs = tokens[tool], trace[tool]
            k = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
            assert k is not None, f"{intent!r} {tool}: the same tokens, yet JS answers {js[tool]}, Python {want[tool]}"
            row = logits.get((tool, k))
            assert row is not None, f"{intent!r} {tool}: JS left the Python path at a forced step {k}"
            gap = float(row[mine[k]] - row[theirs[k]])
            assert 0 <= gap <= NEAR_TIE * float(row.max() - row.min()), \
                f"{intent!r} {tool}: JS chose {theirs[k]} over {mine[k]} at step {k}, {gap:.4f} apart in Python's logits"
        counts["near_ties"] += 1
    return counts


def steered_answer(ref: Reference, intent: str, steer: list) -> dict:
    """The Python runtime's answer (with stats) when ``add`` is added to the logit of ``token`` in
    ``tool``'s row at its free step ``position``, for each ``[tool, position, token, add]`` of
    ``steer``: the bias node.mjs applies to an item with that ``steer``."""
    import numpy as np

    def bias(request, tool, position, logits):
        logits = np.array(logits, dtype=np.float32)
        for t, p, token, add in steer:
            if t == tool and p == position:
                logits[token] += np.float32(add)
        return logits

    (a,) = ref.p.predict([intent], bias=bias)
    out = a.to_json()
    out["stats"] = a.stats.as_dict()
    return out
