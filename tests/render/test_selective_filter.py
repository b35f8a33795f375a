"""selective_adjust and filter against hand-computed pixels; the shipped LUTs against their recipes."""

from __future__ import annotations

import filecmp

import colour
import numpy as np
import pytest

from vedit.errors import RenderError
from vedit.registry import default_registry
from vedit.render.engine import colours
from vedit.render.engine import presets as engine_presets
from vedit.render.filter import apply_filter, load_lut, lookup
from vedit.render.looks import LUT_DIR, RECIPES, generate, missing_recipes
from vedit.render.selective import HUE_CENTRES, apply_selective, band_weights

COLOURS = colours(default_registry().tool("selective_adjust"))


def px(rgb):
    return np.asarray(rgb, dtype=np.float32).reshape(1, 1, 3)


def band(colour_name, **values):
    return {c: ({"saturation": 0, "luminance": 0} | values if c == colour_name else {}) for c in COLOURS}


# (0.6, 0.2, 0.2): hue 0 (red), HSV saturation 2/3 >= 0.25, so its red weight is exactly 1;
# luma = 0.2126*0.6 + 0.7152*0.2 + 0.0722*0.2 = 0.28504
@pytest.mark.parametrize("values,expected", [
    ({"saturation": -100}, (0.28504, 0.28504, 0.28504)),
    ({"saturation": 100}, (0.28504 + 2 * 0.31496, 0.28504 - 2 * 0.08504, 0.28504 - 2 * 0.08504)),
    ({"luminance": 100}, (0.9, 0.3, 0.3)),
    ({"luminance": -100}, (0.3, 0.1, 0.1)),
])
def test_red_band_at_the_extremes(values, expected):
    out = apply_selective(px((0.6, 0.2, 0.2)), COLOURS, band("red", **values))
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-4)


def test_other_bands_and_greys_are_untouched():
    red = px((0.6, 0.2, 0.2))
    assert np.allclose(apply_selective(red, COLOURS, band("blue", saturation=-100, luminance=100)), red)
    grey = px((0.5, 0.5, 0.5))
    assert np.allclose(apply_selective(grey, COLOURS, band("red", saturation=-100, luminance=100)), grey)


def test_a_hue_between_two_bands_gets_half_of_each():
    # (1, 0.25, 0): hue 15 deg, half way from red (0) to orange (30): red weight 0.5, so the
    # saturation gain of red -100 is 1 - 0.5; luma = 0.2126 + 0.7152*0.25 = 0.3914
    out = apply_selective(px((1.0, 0.25, 0.0)), COLOURS, band("red", saturation=-100))
    y = 0.3914
    np.testing.assert_allclose(out[0, 0], (y + 0.5 * (1 - y), y + 0.5 * (0.25 - y), y + 0.5 * (0 - y)), atol=1e-4)


def test_weights_are_smooth_and_add_up_to_one():
    hues = np.linspace(0, 360, 721)
    w = band_weights(hues, COLOURS)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-9)
    assert np.abs(np.diff(w, axis=0)).max() < 0.05  # no jumps between neighbouring half degrees
    for i, c in enumerate(COLOURS):
        assert band_weights(np.array([HUE_CENTRES[c]]), COLOURS)[0, i] == pytest.approx(1.0)


def test_a_colour_without_a_hue_band_is_named():
    with pytest.raises(RenderError, match="teal"):
        band_weights(np.array([10.0]), COLOURS + ("teal",))


def test_negative_lut_at_full_and_half_intensity():
    x = px((0.2, 0.4, 0.6))
    np.testing.assert_allclose(apply_filter(x, "negative", 100)[0, 0], (0.8, 0.6, 0.4), atol=2e-4)
    # 50%: half the light of each, in linear light (colour-science's sRGB functions as reference)
    half = apply_filter(x, "negative", 50)[0, 0]
    lin = 0.5 * colour.cctf_decoding(np.array([0.2, 0.4, 0.6]), function="sRGB") + 0.5 * colour.cctf_decoding(
        np.array([0.8, 0.6, 0.4]), function="sRGB")
    np.testing.assert_allclose(half, colour.cctf_encoding(lin, function="sRGB"), atol=3e-4)
    assert np.array_equal(apply_filter(x, "negative", 0), x)
    assert np.array_equal(apply_filter(x, "none", 100), x)


def test_duotone_maps_black_and_white_to_its_two_ends():
    out = apply_filter(np.array([[[0, 0, 0], [1, 1, 1]]], dtype=np.float32), "duotone_red", 100)
    np.testing.assert_allclose(out[0, 0], (0.08, 0.05, 0.12), atol=2e-4)
    np.testing.assert_allclose(out[0, 1], (0.95, 0.15, 0.15), atol=2e-4)


def test_every_registry_preset_has_a_recipe_and_a_cube_file():
    presets = engine_presets(default_registry().tool("filter"))
    assert missing_recipes(presets) == []
    for p in presets:
        if p != "none":
            lut = colour.read_LUT(str(LUT_DIR / f"{p}.cube"))
            assert lut.table.shape == (17, 17, 17, 3), p
    assert missing_recipes(("none", "vivid", "sepia")) == ["sepia"]


def test_regenerating_the_luts_gives_identical_files(tmp_path):
    written = generate(tmp_path)
    assert len(written) == len(RECIPES)
    for path in written:
        assert filecmp.cmp(path, LUT_DIR / path.name, shallow=False), f"{path.name} differs: run python -m vedit.render.looks"
    assert sorted(p.name for p in LUT_DIR.glob("*.cube")) == sorted(p.name for p in written)


@pytest.mark.parametrize("preset", ["teal_and_orange_3", "duotone_pink", "faded_Mist"])
def test_the_lookup_is_colour_sciences_trilinear_interpolation(preset):
    lut = load_lut(LUT_DIR / f"{preset}.cube")
    x = np.random.default_rng(7).random((20, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(lookup(lut.table.astype(np.float32), x), lut.apply(x), atol=1e-5)
