"""The contact sheet: the sample photos before and after each answer, laid out as documented."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vedit.decoding import Prediction
from vedit.registry import ToolCall, call_from_value, default_registry
from vedit.render.samples import SAMPLES, sample_photos
from vedit.render.sheet import LABEL_W, PAD, TITLE_H, contact_sheet, printable, summary


def _prediction(intent, preset, intensity=100):
    reg = default_registry()
    calls = {t.name: ToolCall.unused(t) for t in reg.tools}
    calls["filter"] = call_from_value(reg.tool("filter"), {"name": preset, "intensity": intensity})
    return Prediction(intent=intent, calls=calls, raw={})


def test_contact_sheet_shows_each_photo_before_and_after_each_answer(tmp_path):
    preds = [_prediction("negative", "negative"), _prediction("nothing", "none", 0)]
    out = tmp_path / "sheet.png"
    sheet = contact_sheet(preds, out, cell_height=64)
    img = np.asarray(Image.open(out), dtype=np.float64) / 255
    photos = sample_photos(max_side=None)
    assert len(photos) == len(SAMPLES) == 3
    widths = [round(p.size[0] * 64 / p.size[1]) for p in photos]
    cell_w = max(widths)
    assert sheet.image.size == (LABEL_W + 3 * cell_w + 4 * PAD, TITLE_H + 3 * (64 + PAD) + PAD)
    y = TITLE_H + 32  # the middle row of the first photo
    before = img[y, LABEL_W + PAD + 10]
    negated = img[y, LABEL_W + 2 * PAD + cell_w + 10]
    unchanged = img[y, LABEL_W + 3 * PAD + 2 * cell_w + 10]
    np.testing.assert_allclose(negated, 1 - before, atol=2 / 255)
    np.testing.assert_allclose(unchanged, before, atol=1 / 255)
    assert sheet.skipped == []


def test_summary_names_the_used_calls():
    assert summary(_prediction("x", "vivid", 70).calls) == "vivid 70"
    assert summary(_prediction("x", "none", 0).calls) == "no edit"


def test_titles_the_font_cannot_draw_are_spelled_out():
    assert printable("😈") == "U+1F608"
    assert printable("golden hour, Morocco") == "golden hour, Morocco"
