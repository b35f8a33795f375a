"""Offline metrics against hand-computed values (see tests/data/metrics_case/README.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedit.bench.cli import bench
from vedit.data.metrics import (
    Report,
    ToolScore,
    cosine,
    format_table,
    harmonic_mean,
    normalise,
    score,
    score_files,
)
from vedit.data.rows import TruthRow, prediction_row, write_jsonl
from vedit.registry import ToolCall

DATA = Path(__file__).parent / "metrics_case"
SQRT_HALF = 1 / math.sqrt(2)  # cos([1,0], [1,1])


# ------------------------------------------------------------------ helpers building calls by name


@pytest.fixture(scope="module")
def tools(registry):
    return {t.name: t for t in registry.tools}


@pytest.fixture(scope="module")
def mk(tools):
    """Builders: adjust(exposure=10), selective(red_saturation=10), filter("vivid", 50)."""
    A, S, F = tools["adjust"], tools["selective_adjust"], tools["filter"]

    class Mk:
        @staticmethod
        def adjust(**kw):
            return ToolCall.of(A, {p.name: kw.get(p.name, 0) for p in A.slot_params})

        @staticmethod
        def selective(**kw):
            value: dict = {}
            for c, p in S.slots:
                value.setdefault(c, {})[p] = kw.get(f"{c}_{p}", 0)
            return ToolCall.of(S, value)

        @staticmethod
        def filter(name, intensity=0):
            return ToolCall.unused(F) if name == "none" else ToolCall.of(F, {"name": name, "intensity": intensity})

        unused_adjust = ToolCall.unused(A)
        unused_selective = ToolCall.unused(S)

    return Mk


def row(intent, calls, adjust, selective, flt):
    return TruthRow(intent, calls, {"adjust": adjust, "selective_adjust": selective, "filter": flt})


@pytest.fixture(scope="module")
def case(mk):
    """The four-intent case of tests/data/metrics_case/README.md, in memory."""
    truth = [
        row("golden hour", 5, mk.adjust(exposure=10), mk.unused_selective, mk.filter("vivid", 50)),
        row("Morocco but cold", 3, mk.adjust(exposure=10), mk.selective(red_saturation=10), mk.filter("none")),
        row("x ray", 1, mk.adjust(contrast=30), mk.selective(red_saturation=20), mk.filter("winter", 40)),
        row("😈", 1, mk.unused_adjust, mk.unused_selective, mk.filter("action", 60)),
    ]
    predictions = {
        "golden hour": {
            "adjust": mk.adjust(exposure=20),  # parallel: cos 1
            "selective_adjust": 'Parameters: {"red": oops',  # unparseable: not used
            "filter": mk.filter("vivid", 10),  # same preset: 1
        },
        "Morocco but cold": {
            "adjust": mk.adjust(exposure=10, contrast=10),  # cos 1/sqrt(2)
            "selective_adjust": mk.selective(green_saturation=10),  # orthogonal: cos 0
            "filter": mk.filter("north", 30),  # FP
        },
        "x ray": {
            "adjust": mk.adjust().as_value(),  # a dict of 14 zeros: not used (FN)
            "selective_adjust": " " + mk.selective(red_saturation=40).dumps(),  # raw text, cos 1
            "filter": '{"name":"winter","intensity":70}',  # raw text, same preset
        },
        # "😈" has no prediction: uses nothing (filter FN)
        "not in the truth": {"adjust": mk.adjust(exposure=50), "selective_adjust": None, "filter": None},
    }
    return truth, predictions


# Hand-computed expectations (README.md): (precision, recall, selection, quality, final)
F_ADJ_ALL = 2 * 0.8 * ((1 + SQRT_HALF) / 2) / (0.8 + (1 + SQRT_HALF) / 2)
F_ADJ_R3 = 2 * ((1 + SQRT_HALF) / 2) / (1 + (1 + SQRT_HALF) / 2)
EXPECTED = {
    "All": {
        "adjust": (1.0, 2 / 3, 0.8, (1 + SQRT_HALF) / 2, F_ADJ_ALL),
        "selective_adjust": (1.0, 1.0, 1.0, 0.5, 2 / 3),
        "filter": (2 / 3, 2 / 3, 2 / 3, 1.0, 0.8),
        "overall": (F_ADJ_ALL + 2 / 3 + 0.8) / 3,
        "n": 4,
    },
    "r_3": {
        "adjust": (1.0, 1.0, 1.0, (1 + SQRT_HALF) / 2, F_ADJ_R3),
        "selective_adjust": (1.0, 1.0, 1.0, 0.0, 0.0),  # harmonic mean of 1 and 0
        "filter": (0.5, 1.0, 2 / 3, 1.0, 0.8),
        "overall": (F_ADJ_R3 + 0 + 0.8) / 3,
        "n": 2,
    },
    "r_5": {
        "adjust": (1.0, 1.0, 1.0, 1.0, 1.0),
        "selective_adjust": (0.0, 0.0, 0.0, 0.0, 0.0),  # every denominator empty
        "filter": (1.0, 1.0, 1.0, 1.0, 1.0),
        "overall": 2 / 3,
        "n": 1,
    },
}


def assert_matches(report_json: dict, expected: dict = EXPECTED) -> None:
    assert list(report_json) == list(expected)
    for subset, exp in expected.items():
        got = report_json[subset]
        assert list(got) == ["adjust", "selective_adjust", "filter", "overall", "n"]
        for tool in ("adjust", "selective_adjust", "filter"):
            assert list(got[tool]) == ["precision", "recall", "selection", "quality", "final"]
            assert tuple(got[tool].values()) == pytest.approx(exp[tool], abs=1e-12), (subset, tool)
        assert got["overall"] == pytest.approx(exp["overall"], abs=1e-12)
        assert got["n"] == exp["n"]


# ------------------------------------------------------------------ primitives


def test_cosine_and_harmonic_mean_by_hand():
    assert cosine([1, 0], [1, 1]) == pytest.approx(SQRT_HALF)
    assert cosine([3, 4], [6, 8]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 5]) == 0.0
    assert cosine([0, 0], [1, 1]) == 0.0  # empty norm -> 0
    assert harmonic_mean(1.0, 0.5) == pytest.approx(2 / 3)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_normalise_accepts_every_prediction_form(tools, mk):
    A, F = tools["adjust"], tools["filter"]
    call = mk.adjust(exposure=10)
    assert normalise(A, call) is call
    assert normalise(A, call.as_value()) == call
    assert normalise(A, "Parameters: " + call.dumps()) == call
    assert normalise(A, None) is None
    assert normalise(A, "{}") == ToolCall.unused(A)
    # unparseable, out of range, unknown preset: not a call
    assert normalise(A, '{"exposure": 10') is None
    assert normalise(A, {**call.as_value(), "contrast": 150}) is None
    assert normalise(F, {"name": "sepia_deluxe", "intensity": 10}) is None
    with pytest.raises(ValueError, match="filter"):
        normalise(A, mk.filter("vivid", 3))


# ------------------------------------------------------------------ score() on the hand-made case


def test_score_hand_made_case(case):
    truth, predictions = case
    report = score(truth, predictions)
    assert_matches(report.to_json())
    # overall is the mean of the three finals
    for sub in report.subsets.values():
        assert sub.overall == pytest.approx(sum(t.final for t in sub.tools.values()) / 3)


def test_all_zero_adjust_is_not_used(mk):
    truth = [row("a", 1, mk.adjust(exposure=10), mk.unused_selective, mk.filter("none"))]
    zeros = {"a": {"adjust": mk.adjust(), "selective_adjust": "{}", "filter": mk.filter("none")}}
    s = score(truth, zeros).subsets["All"].tools["adjust"]
    # TP 0, FN 1: precision 0/0 -> 0, recall 0/1 = 0, no quality rows -> 0
    assert s == ToolScore(0.0, 0.0, 0.0, 0.0, 0.0)


def test_unparseable_prediction_is_a_false_negative_not_a_crash(mk):
    truth = [
        row("a", 1, mk.adjust(exposure=10), mk.unused_selective, mk.filter("vivid", 50)),
        row("b", 1, mk.adjust(exposure=10), mk.unused_selective, mk.filter("vivid", 50)),
    ]
    preds = {
        "a": {"adjust": "exposure up a bit", "selective_adjust": "{}", "filter": "vivid"},
        "b": {"adjust": mk.adjust(exposure=5), "selective_adjust": "{}", "filter": mk.filter("winter", 9)},
    }
    tools = score(truth, preds).subsets["All"].tools
    # adjust: TP 1 (b, cos 1), FN 1 (a): P 1, R 1/2, F1 2/3, quality 1, final 2*(2/3)/(5/3) = 0.8
    assert tuple(vars(tools["adjust"]).values()) == pytest.approx((1, 0.5, 2 / 3, 1, 0.8))
    # filter: TP 1 (b, wrong preset -> quality 0), FN 1: F1 2/3, quality 0, final 0
    assert tuple(vars(tools["filter"]).values()) == pytest.approx((1, 0.5, 2 / 3, 0, 0))


def test_subsets_filter_rows_by_calls(mk):
    truth = [
        row(f"i{c}", c, mk.adjust(exposure=1), mk.unused_selective, mk.filter("none")) for c in (1, 2, 3, 4, 5, 9)
    ]
    report = score(truth, {})
    assert {k: s.n for k, s in report.subsets.items()} == {"All": 6, "r_3": 4, "r_5": 2}


def test_perfect_predictions_score_one(case):
    truth, _ = case
    perfect = {r.intent: dict(r.calls_by_tool) for r in truth}
    all_ = score(truth, perfect).subsets["All"]
    assert all_.tools["adjust"].final == 1.0
    assert all_.tools["filter"].final == 1.0
    assert all_.overall == pytest.approx(1.0)


def test_duplicate_truth_intents_are_refused(mk):
    r = row("a", 1, mk.adjust(exposure=1), mk.unused_selective, mk.filter("none"))
    from vedit.errors import DatasetError

    with pytest.raises(DatasetError, match="duplicate intent"):
        score([r, r], {})


def test_report_json_round_trip_and_table(case):
    report = score(*case)
    again = Report.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report
    table = format_table(report)
    lines = table.splitlines()
    assert [ln.split()[0] for ln in lines[2:]] == ["All", "r_3", "r_5"]
    assert "(0.80, 0.85, 0.83)" in lines[2]  # adjust on All, 2 decimals
    assert lines[2].endswith("0.76")


# ------------------------------------------------------------------ files and CLI


def test_shipped_example_matches_readme():
    assert_matches(score_files(DATA / "truth.jsonl", DATA / "predictions.jsonl").to_json())


def test_cli_json_on_tmp_files(tmp_path, case):
    truth, predictions = case
    t = write_jsonl(tmp_path / "truth.jsonl", truth)
    p = write_jsonl(tmp_path / "pred.jsonl", [prediction_row(i, o) for i, o in predictions.items()])
    result = CliRunner().invoke(bench, ["metrics", "--truth", str(t), "--predictions", str(p), "--json"])
    assert result.exit_code == 0, result.output
    assert_matches(json.loads(result.output))


def test_cli_table(tmp_path):
    result = CliRunner().invoke(
        bench, ["metrics", "--truth", str(DATA / "truth.jsonl"), "--predictions", str(DATA / "predictions.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].startswith("All")


def test_cli_bad_file_is_one_line_error(tmp_path):
    bad = tmp_path / "truth.jsonl"
    bad.write_text('{"intent": "a"}\n', encoding="utf-8")
    result = CliRunner().invoke(
        bench, ["metrics", "--truth", str(bad), "--predictions", str(DATA / "predictions.jsonl")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "line 1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_agreement_per_parameter_for_any_tools():
    """Hand-computed: numbers within 1% of their range, enums/booleans/strings exactly, absent == absent."""
    from pathlib import Path

    from vedit.data.metrics import agreement
    from vedit.registry import load_registry

    speed = load_registry(Path(__file__).resolve().parents[2] / "examples" / "tools" / "video.json").tool("speed")
    want = ToolCall.of(speed, {"rate": 1.5, "reverse": True, "easing": "linear"})
    answers = [
        {"rate": 1.53, "reverse": True, "easing": "linear"},  # 0.03 <= 1% of 3.75: agrees
        {"rate": 1.6, "reverse": False},  # rate off, reverse off, easing absent vs given
        'not json',  # invalid: agrees on nothing
    ]
    a = agreement(speed, [(x if isinstance(x, str) else ToolCall.of(speed, x), want) for x in answers])
    assert a.n == 3 and a.valid == pytest.approx(2 / 3) and a.agreement == 0
    assert a.parameters == pytest.approx({"rate": 1 / 3, "reverse": 1 / 3, "easing": 1 / 3})
