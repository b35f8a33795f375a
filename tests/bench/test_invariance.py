"""``vedit bench invariance``: per mode, the answers identical to step-by-step alone, counted right.

The reference counts come from an independent, direct comparison in the test (plain ``Predictor``
calls, batches cut by hand); a perturbed predictor checks that a differing answer is found, named
with its tool, and counted in the modes it occurred in only.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from support import quick_export
from vedit.bench.cli import bench
from vedit.bench.invariance import InvarianceReport, ModeResult, check, first_field, mixed_batches
from vedit.decoding import Predictor

INTENTS = ["golden hour", "Morocco", "cold tone", "welding mask", "😈", "neon night in Tokyo",
           "Black & White, dark atmosphere", "warm film look, faded", "X ray", "sunset in Paris"]
#: mixed_batch=4, rotations=2: shifts 4*1//3 = 1 and 4*2//3 = 2, cut by hand
HAND_BATCHES = [[[1, 2, 3, 4], [5, 6, 7, 8], [9, 0]], [[2, 3, 4, 5], [6, 7, 8, 9], [0, 1]]]


def test_mixed_batches_meet_other_partners():
    assert mixed_batches(10, 4, 2) == HAND_BATCHES
    for rot in mixed_batches(60, 8, 3):
        assert sorted(k for b in rot for k in b) == list(range(60)) and max(len(b) for b in rot) == 8
    partners = [{k: frozenset(b) - {k} for rot in [r] for b in rot for k in b} for r in mixed_batches(60, 8, 3)]
    one_batch = {k: frozenset(range(60)) - {k} for k in range(60)}
    assert all(p[k] != q[k] for p in partners for q in partners + [one_batch] if p is not q for k in range(60))


def _direct(export, intents):
    """Raw answers per mode, asked with plain Predictor calls (independent of vedit.bench.invariance)."""
    step = Predictor.load(export, threads=1, jump_forward=False)
    jf = Predictor.load(export, threads=1, batch_size=len(intents))
    dr = Predictor.load(export, threads=1, draft=True, batch_size=len(intents))
    ref = [step.predict([i])[0].raw for i in intents]

    def batched(p, batches):
        got = {}
        for b in batches:
            got.update({k: x.raw for k, x in zip(b, p.predict([intents[k] for k in b]))})
        return [got[k] for k in range(len(intents))]

    n = len(intents)
    modes = {"jump-forward, alone": [[jf.predict([i])[0].raw for i in intents]],
             "drafts, alone": [[dr.predict([i])[0].raw for i in intents]],
             f"jump-forward, one batch of {n}": [[p.raw for p in jf.predict(intents)]],
             f"drafts, one batch of {n}": [[p.raw for p in dr.predict(intents)]],
             "jump-forward, mixed batches of 4 x2": [batched(jf, b) for b in HAND_BATCHES],
             "drafts, mixed batches of 4 x2": [batched(dr, b) for b in HAND_BATCHES]}
    out = {}
    for mode, passes in modes.items():
        out[mode] = {intents[k]: sorted({t for got in passes for t in ref[k] if got[k][t] != ref[k][t]})
                     for k in range(len(intents))}
        out[mode] = {i: tools for i, tools in out[mode].items() if tools}
    return out


@pytest.fixture(scope="module", params=["t5-fp32", "llama-fp32", "t5-int4"])
def export(request, export_root, tiny_t5_dir):
    if request.param == "t5-int4":
        return quick_export(tiny_t5_dir, export_root / "t5-int4-invariance", family="t5", precision="int4").out_dir
    return request.getfixturevalue(request.param.replace("-", "_")).out_dir


def test_counts_equal_a_direct_comparison(export):
    report = check(export, INTENTS, threads=1, mixed_batch=4, rotations=2)
    direct = _direct(export, INTENTS)
    assert [m.mode for m in report.modes] == list(direct)
    for m, (mode, differing) in zip(report.modes, direct.items()):
        assert m.total == len(INTENTS)
        assert {i: sorted(t) for i, t in m.differing.items()} == differing, mode
        assert m.identical == len(INTENTS) - len(differing)
    assert report.broken == (report.precision == "fp32" and bool(direct["jump-forward, alone"]))


def test_a_differing_answer_is_named_in_its_modes_only(t5_fp32, monkeypatch):
    """Batched draft answers perturbed for one intent: only the draft batch modes report it, with its tool."""
    real = Predictor.predict

    def predict(self, intents, **kw):
        out = real(self, intents, **kw)
        if self.drafter is not None and len(intents) > 1:
            out = [p if p.intent != "Morocco" else type(p)(p.intent, p.calls, {**p.raw, "filter": "x"}, p.stats)
                   for p in out]
        return out

    monkeypatch.setattr(Predictor, "predict", predict)
    report = check(t5_fp32.out_dir, INTENTS, threads=1, mixed_batch=4, rotations=2)
    seen = {m.mode: m for m in report.modes}
    assert seen["drafts, one batch of 10"].differing.get("Morocco") == ["filter"]
    assert seen["drafts, mixed batches of 4 x2"].differing.get("Morocco") == ["filter"]
    for mode in ("jump-forward, alone", "drafts, alone", "jump-forward, one batch of 10"):
        assert "Morocco" not in seen[mode].differing
    assert not report.broken  # jump-forward alone is untouched
    assert seen["drafts, one batch of 10"].fields["Morocco"] == ["filter"]  # "x" parts at the first character


def test_first_field_names_the_value_a_tie_moved():
    ref = '{"exposure":0,"saturation":5,"vibrance":5}'
    assert first_field("adjust", ref, '{"exposure":0,"saturation":10,"vibrance":5}') == "adjust.saturation"
    assert first_field("adjust", ref, '{"exposure":-5,"saturation":5,"vibrance":5}') == "adjust.exposure"
    assert first_field("filter", ' {"name":"fortune"}', "x") == "filter"
    assert first_field("adjust", ref, ref[:-1]) == "adjust.vibrance"  # cut short: the last member
    report = InvarianceReport("x", "t5", "int8", [ModeResult("drafts, alone", 3, {"a": ["adjust"]},
                                                             {"a": ["adjust.saturation"]})])
    assert report.lines()[2].endswith("'a' (adjust.saturation)") and " 2/3 " in report.lines()[2]


def test_only_fp32_jump_forward_alone_is_a_broken_guarantee():
    diff = {"golden hour": ["adjust"]}
    modes = [ModeResult("jump-forward, alone", 2, diff), ModeResult("drafts, one batch of 2", 2, diff)]
    assert InvarianceReport("x", "t5", "fp32", modes).broken
    assert not InvarianceReport("x", "t5", "int8", modes).broken
    assert not InvarianceReport("x", "t5", "fp32", [ModeResult("jump-forward, alone", 2), modes[1]]).broken
    lines = InvarianceReport("x", "t5", "int8", modes).lines()
    assert len(lines) == 2 + len(modes) and "1/2" in lines[2] and "'golden hour' (adjust)" in lines[2]


def test_cli_prints_one_line_per_mode(t5_fp32, tmp_path):
    data = tmp_path / "intents.jsonl"
    data.write_text("\n".join(json.dumps({"intent": i}) for i in INTENTS[:4] + ["golden hour"]) + "\n")
    res = CliRunner().invoke(bench, ["invariance", str(t5_fp32.out_dir), "--data", str(data), "-n", "3",
                                     "--threads", "1"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert "t5 fp32, 3 intents" in lines[0] and lines[1].split()[:2] == ["mode", "identical"]
    modes = lines[2:]
    assert len(modes) == 6 and all(re.search(r" [0-3]/3 ", m) for m in modes)
    assert modes[0].split()[:2] == ["jump-forward,", "alone"]


def test_intents_are_read_from_any_jsonl_with_an_intent(tmp_path):
    from vedit.data.rows import read_intents
    from vedit.errors import DatasetError

    good = tmp_path / "good.jsonl"
    good.write_text('{"intent": "a", "calls": 3}\n\n{"intent": "b"}\n{"intent": "a"}\n{"intent": "c"}\n[1]\n')
    assert read_intents(good, 3) == ["a", "b", "c"]  # distinct, in order; the bad row after the third unread
    with pytest.raises(DatasetError, match=r"line 6: expected a JSON object"):
        read_intents(good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"intent": 1}\nnot json\n')
    with pytest.raises(DatasetError, match=r"2 bad row.*line 1: 'intent' must be a string; line 2: not valid JSON"):
        read_intents(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="empty file"):
        read_intents(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="cannot read the file"):
        read_intents(tmp_path / "missing.jsonl")


def test_cli_refuses_a_missing_export_in_one_line(tmp_path):
    res = CliRunner().invoke(bench, ["invariance", str(tmp_path / "nope")])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and res.output.startswith("error: ") and "no such export" in res.output


def test_cli_without_a_test_set_says_what_to_give(t5_fp32, tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    res = CliRunner().invoke(bench, ["invariance", str(t5_fp32.out_dir)])
    assert res.exit_code == 1 and res.output.startswith("error: ") and "--data" in res.output


def test_cli_fails_when_fp32_jump_forward_differs_from_step(t5_fp32, tmp_path, monkeypatch):
    """Jump-forward alone perturbed for one intent: at fp32 the table still prints, then one error line, exit 1."""
    real = Predictor.predict

    def predict(self, intents, **kw):
        out = real(self, intents, **kw)
        if self.jump_forward and self.drafter is None and len(intents) == 1 and intents[0] == "cold tone":
            out = [type(p)(p.intent, p.calls, {**p.raw, "adjust": p.raw["adjust"] + " "}, p.stats) for p in out]
        return out

    monkeypatch.setattr(Predictor, "predict", predict)
    data = tmp_path / "intents.jsonl"
    data.write_text("\n".join(json.dumps({"intent": i}) for i in INTENTS[:3]) + "\n")
    res = CliRunner().invoke(bench, ["invariance", str(t5_fp32.out_dir), "--data", str(data), "--threads", "1"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert re.search(r"jump-forward, alone +2/3 +'cold tone' \(adjust(\.\w+)?\)$", lines[2]), lines[2]
    assert lines[-1] == f"error: jump-forward differs from step-by-step at fp32 in {t5_fp32.out_dir.name}"
