"""Draft and verify on the real tiny exports (T5 joined and grouped, Llama with and without the
prompt-prefix cache), fp32: the same tokens as step-by-step constrained greedy decoding, fewer
decoder calls once the drafter has learnt from earlier answers.

A seeded ``bias`` steers the tiny random students to varied answers (different per request, tool
and position), so drafts learnt on one request are partly right and partly wrong on the next."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vedit.decoding import Predictor

INTENTS = ["make it warmer", "golden hour glow", "cool blue night", "crisp black and white", "soft pastel",
           "dramatic contrast"]


def _bias(seed: int, strength: float):
    """Noise on the lowest ids of each free step, fixed by (seed, request, tool, position): the
    same function for every path compared."""
    def bias(request, tool, position, logits):
        rng = np.random.default_rng([seed, request % 3, len(tool), position])
        out = np.array(logits, dtype=np.float32)
        out += strength * rng.standard_normal(out.shape).astype(np.float32)
        return out
    return bias


@pytest.fixture(scope="module", params=["t5", "t5-grouped", "llama", "llama-no-prefix"])
def paths(request):
    family = request.param.split("-")[0]
    export = request.getfixturevalue(f"{family}_export")
    kw = {"join_rows": False} if request.param == "t5-grouped" else {}
    if request.param == "llama-no-prefix":
        kw = {"prefix_cache": False}
    step = Predictor.load(export, threads=2, jump_forward=False, **kw)
    jf = Predictor.load(export, threads=2, draft=False, **kw)
    return step, jf, export, kw


@given(seed=st.integers(0, 2**16), strength=st.sampled_from([0.0, 1.0, 4.0]), batch=st.integers(1, 4))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_drafted_answers_equal_step_by_step(paths, seed, strength, batch):
    step, jf, export, kw = paths
    drafted = Predictor.load(export, threads=2, draft=True, batch_size=batch, **kw)
    bias = _bias(seed, strength)
    want = step.predict(INTENTS, bias=bias)
    calls = {}
    for name, p in (("jf", jf), ("drafted", drafted)):
        runs = [p.predict(INTENTS, bias=bias) for _ in range(2)]  # the second run drafts from the first
        for got in runs:
            assert [g.raw for g in got] == [w.raw for w in want]
            assert [g.stats.free_tokens for g in got] == [w.stats.free_tokens for w in want]
        calls[name] = sum(g.stats.decoder_calls for g in runs[1])
    assert calls["drafted"] <= calls["jf"]
    assert drafted.drafter.proposed > 0


def test_drafts_cut_the_calls_per_free_token(t5_export):
    """The same scripted answers asked again: the drafts are right, so calls fall well below one per
    free token (the tool row with most free tokens bounds jump-forward)."""
    drafted = Predictor.load(t5_export, threads=2, draft=True)
    jf = Predictor.load(t5_export, threads=2, draft=False)
    bias = _bias(5, 4.0)
    drafted.predict(INTENTS, bias=bias)
    got = drafted.predict(INTENTS, bias=bias)
    ref = jf.predict(INTENTS, bias=bias)
    assert [g.raw for g in got] == [r.raw for r in ref]
    calls = sum(g.stats.decoder_calls for g in got)
    assert calls * 2 <= sum(r.stats.decoder_calls for r in ref)


def test_an_export_with_one_position_per_row_cannot_draft(t5_export, tmp_path):
    """An export made before drafts (logits declared (batch, 1, vocab)): one clear error."""
    from support import one_position_export

    from vedit.errors import ModelDirError

    old = one_position_export(t5_export, tmp_path / "old")
    assert Predictor.load(old, threads=1).drafter is None  # by default it serves without drafts
    with pytest.raises(ModelDirError, match="export it again"):
        Predictor.load(old, threads=1, draft=True)


def test_drafts_are_on_by_default_where_they_can_be(t5_export):
    """Default: drafts wherever the export can verify them and jump-forward is on; off when asked."""
    assert Predictor.load(t5_export, threads=1).drafter is not None
    assert Predictor.load(t5_export, threads=1, jump_forward=False).drafter is None
    assert Predictor.load(t5_export, threads=1, draft=False).drafter is None


def test_the_export_seeds_the_drafts_from_its_calibration_answers(export_dir):
    """The exporter answered its calibration intents and kept the counts: a fresh predictor drafts
    from its first request on, and the seeded table is what answering those intents again counts."""
    import json

    from vedit.export.drafts import CALIBRATION_INTENTS

    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["drafts"]["file"] == "drafts.json" and manifest["drafts"]["intents"] == len(CALIBRATION_INTENTS)
    seeded = Predictor.load(export_dir, threads=2, draft=True)
    assert len(seeded.drafter.table) == manifest["drafts"]["states"] > 0
    again = Predictor.load(export_dir, threads=2, draft=True)
    again.drafter.table.clear(), again.drafter.counts.clear()
    again.predict(list(CALIBRATION_INTENTS))
    assert again.drafter.counts == seeded.drafter.counts
    seeded.predict(["golden hour"])
    assert seeded.drafter.proposed > 0


def test_a_damaged_or_stale_drafts_table(t5_export, tmp_path):
    """drafts.json is hashed in the manifest like every file of the export; one written with a
    matching manifest (a buggy exporter) is still checked against the grammar."""
    import hashlib
    import json
    import shutil

    from vedit.errors import ExportIntegrityError, ModelDirError

    copy = tmp_path / "export"
    shutil.copytree(t5_export, copy)
    path = copy / "drafts.json"
    data = json.loads(path.read_text())
    tool = next(iter(data["tools"]))
    data["tools"][tool]["999999"] = {"0": 1}  # a state the grammar does not have
    path.write_text(json.dumps(data))
    with pytest.raises(ExportIntegrityError, match="drafts.json"):
        Predictor.load(copy, threads=1)

    def rewrite(text: str) -> None:  # the file and a manifest that records it
        path.write_text(text)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["sha256"]["drafts.json"] = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest["sizes"]["drafts.json"] = path.stat().st_size
        (copy / "manifest.json").write_text(json.dumps(manifest))

    rewrite(json.dumps(data))
    with pytest.raises(ModelDirError, match="drafts.json: not a drafts table of this export"):
        Predictor.load(copy, threads=1, draft=True)
    with pytest.raises(ModelDirError, match="not a drafts table"):  # the default drafts where it can
        Predictor.load(copy, threads=1)
    Predictor.load(copy, threads=1, draft=False)  # without drafts the file is never read
    data["grammar_sha256"] = "0" * 64  # made for another compiled grammar: unseeded, not an error
    rewrite(json.dumps(data))
    assert not Predictor.load(copy, threads=1, draft=True).drafter.table
    rewrite("[1, 2]")
    with pytest.raises(ModelDirError, match="not a drafts table"):
        Predictor.load(copy, threads=1, draft=True)


def test_a_shared_drafter_counts_every_decision_of_every_thread():
    """The workers of a LocalClient share one drafter: decisions learnt by several threads at once
    are all counted (a thread switch inside an unlocked read-modify-write lost about a third of
    them here, and left a state's count above its total, a confidence over 1)."""
    import sys
    import threading
    from types import SimpleNamespace

    from vedit.decoding.drafting import Drafter

    drafter = Drafter()
    m = SimpleNamespace(automaton=SimpleNamespace(tool="adjust"), state=3)
    threads, each = 4, 20_000

    def work() -> None:
        for i in range(each):
            drafter.learn(m, i % 2)
        drafter.measured(2, 1)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    key = ("adjust", 3)
    assert drafter.totals[key] == threads * each
    assert drafter.counts[key] == {0: threads * each // 2, 1: threads * each // 2}
    assert (drafter.proposed, drafter.accepted) == (2 * threads, threads)
