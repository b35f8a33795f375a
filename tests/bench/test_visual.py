"""Parity in what users see: CIEDE2000 of rendered answers, and the quantized gate on its p95."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vedit.bench.parity import GATES, ParityResult
from vedit.bench.visual import JND, VisualParity, compare_renders, delta_e
from vedit.registry import ToolCall, call_from_value, default_registry
from vedit.render.samples import sample_photos

REG = default_registry()


def _calls(preset="none", intensity=0, **adjust):
    calls = {t.name: ToolCall.unused(t) for t in REG.tools}
    calls["filter"] = call_from_value(REG.tool("filter"), {"name": preset, "intensity": intensity})
    if adjust:
        calls["adjust"] = call_from_value(REG.tool("adjust"), {p.name: adjust.get(p.name, 0)
                                                               for p in REG.tool("adjust").slot_params})
    return calls


@pytest.fixture(scope="module")
def photos():
    return sample_photos(max_side=48)


def test_delta_e_is_zero_for_identical_images_and_large_for_different_ones():
    rng = np.random.default_rng(0)
    img = rng.random((8, 8, 3))
    assert np.array_equal(delta_e(img, img), np.zeros((8, 8)))
    black, white = np.zeros((2, 2, 3)), np.ones((2, 2, 3))
    np.testing.assert_allclose(delta_e(black, white), 100.0, atol=1e-3)  # L* 0 vs 100, no chroma


def test_identical_answers_give_zero_and_draw_nothing(photos):
    ref = {"golden hour": _calls("vivid", 80, temperature=30), "cold tone": _calls(temperature=-40)}
    result = compare_renders(REG, ref, dict(ref), photos)
    assert result.per_pair == [0.0] * 6 and result.drawn == 0 and result.worst is None
    assert (result.mean, result.p95, result.max) == (0.0, 0.0, 0.0)


def test_a_visibly_different_answer_is_over_the_threshold_and_is_the_worst_pair(photos, tmp_path):
    ref = {"same": _calls(contrast=20), "night": _calls("negative", 100)}
    cand = {"same": _calls(contrast=20), "night": _calls()}
    result = compare_renders(REG, ref, cand, photos)
    assert result.drawn == 3 and result.per_pair[:3] == [0.0] * 3
    assert min(result.per_pair[3:]) > JND and result.p95 > JND and result.max == max(result.per_pair)
    assert result.worst.intent == "night" and result.worst.delta_e == result.max
    png = result.save_worst(tmp_path / "worst.png")
    assert Image.open(png).size[0] > 3 * 40
    # a near-tie (contrast 20 vs 21) is drawn but stays far below the just-noticeable difference
    close = compare_renders(REG, {"x": _calls(contrast=20)}, {"x": _calls(contrast=21)}, photos)
    assert close.drawn == 3 and 0 < close.max < JND


def _result(precision, p95):
    overall = SimpleNamespace(subsets={"All": SimpleNamespace(overall=0.5)})
    side = SimpleNamespace(report=overall, validity=1.0, name="side", to_json=lambda: {})
    visual = VisualParity([p95] * 4, ["a"], drawn=4)
    return ParityResult(precision, GATES[precision], side, side, side, 1.0, [], visual)


def test_the_quantized_gates_fail_when_the_p95_is_over_the_just_noticeable_difference():
    assert GATES["int8"].max_delta_e_p95 == GATES["fp16"].max_delta_e_p95 == JND == 2.3
    assert _result("int8", 1.0).passed
    failed = _result("int8", 5.0)
    assert not failed.passed and failed.failures == ["rendered edits CIEDE2000 p95 5.00 >= 2.3 (just noticeable)"]
    assert not _result("fp16", 2.3).passed
    assert _result("fp32", 5.0).passed  # fp32 reports its figure; the gate is agreement (must reproduce)
    assert failed.to_json()["visual"]["p95"] == 5.0
