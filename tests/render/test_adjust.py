"""Each adjust parameter at -100 / +100 against a pixel computed by hand from docs/render.md.

The sRGB transfer function of the reference values is colour-science's (an implementation
independent of vedit.render.light); the operation itself is the hand arithmetic in each case.
"""

from __future__ import annotations

import colour
import numpy as np
import pytest

from vedit.registry import default_registry
from vedit.render.adjust import KNOWN, apply_adjust


def dec(v):
    return colour.cctf_decoding(np.asarray(v, dtype=np.float64), function="sRGB")


def enc(v):
    return colour.cctf_encoding(np.clip(np.asarray(v, dtype=np.float64), 0, 1), function="sRGB")


def flat(rgb, size=4):
    return np.broadcast_to(np.asarray(rgb, dtype=np.float32), (size, size, 3)).copy()


def one(param, value, rgb):
    return apply_adjust(flat(rgb), {param: value})[1, 1]


def impulse(centre=0.45, background=0.1, size=9):
    img = np.full((size, size, 3), background, dtype=np.float32)
    img[size // 2, size // 2] = centre
    return img


G = 0.5  # mid-grey (encoded); linear 0.214
CASES = [
    # (param, value, input rgb, expected rgb), expected by hand
    ("exposure", 100, (G, G, G), enc([dec(G) * 4] * 3)),
    ("exposure", -100, (G, G, G), enc([dec(G) / 4] * 3)),
    ("temperature", 100, (G, G, G), enc([dec(G) * 2 ** 0.25, dec(G), dec(G) * 2 ** -0.25])),
    ("temperature", -100, (G, G, G), enc([dec(G) * 2 ** -0.25, dec(G), dec(G) * 2 ** 0.25])),
    ("tint", 100, (G, G, G), enc([dec(G), dec(G) * 2 ** -0.25, dec(G)])),
    ("tint", -100, (G, G, G), enc([dec(G), dec(G) * 2 ** 0.25, dec(G)])),
    ("linearOffset", 100, (G, G, G), enc([dec(G) + 0.1] * 3)),
    ("linearOffset", -100, (G, G, G), enc([dec(G) - 0.1] * 3)),
    # uniform photo: the blurred glow is the light above 0.5 itself
    ("bloom", 100, (0.8, 0.8, 0.8), enc([dec(0.8) + (dec(0.8) - 0.5)] * 3)),
    ("bloom", 100, (0.3, 0.3, 0.3), (0.3, 0.3, 0.3)),
    ("brightness", 100, (0.25, 0.25, 0.25), (0.5, 0.5, 0.5)),
    ("brightness", -100, (0.25, 0.25, 0.25), (0.0625, 0.0625, 0.0625)),
    ("contrast", 100, (0.7, 0.7, 0.7), (0.9, 0.9, 0.9)),
    ("contrast", -100, (0.7, 0.7, 0.7), (0.6, 0.6, 0.6)),
    ("highlights", 100, (0.75, 0.75, 0.75), (0.875, 0.875, 0.875)),
    ("highlights", -100, (0.75, 0.75, 0.75), (0.625, 0.625, 0.625)),
    ("highlights", 100, (0.25, 0.25, 0.25), (0.25, 0.25, 0.25)),
    ("shadows", 100, (0.25, 0.25, 0.25), (0.375, 0.375, 0.375)),
    ("shadows", -100, (0.25, 0.25, 0.25), (0.125, 0.125, 0.125)),
    ("shadows", 100, (0.75, 0.75, 0.75), (0.75, 0.75, 0.75)),
    # luma of (0.6, 0.4, 0.4) = 0.2126*0.6 + 0.7152*0.4 + 0.0722*0.4 = 0.44252
    ("saturation", -100, (0.6, 0.4, 0.4), (0.44252, 0.44252, 0.44252)),
    ("saturation", 100, (0.6, 0.4, 0.4), (0.75748, 0.35748, 0.35748)),
    # s = 0.6 - 0.4 = 0.2: factor 1 + 0.8t
    ("vibrance", 100, (0.6, 0.4, 0.4), (0.44252 + 1.8 * 0.15748, 0.44252 - 1.8 * 0.04252, 0.44252 - 1.8 * 0.04252)),
    ("vibrance", -100, (0.6, 0.4, 0.4), (0.44252 + 0.2 * 0.15748, 0.44252 - 0.2 * 0.04252, 0.44252 - 0.2 * 0.04252)),
    ("hue", 120, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    ("hue", 240, (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("hue", 360, (0.6, 0.4, 0.2), (0.6, 0.4, 0.2)),
]


@pytest.mark.parametrize("param,value,rgb,expected", CASES, ids=[f"{c[0]}{c[1]:+d}-{i}" for i, c in enumerate(CASES)])
def test_parameter_against_hand_value(param, value, rgb, expected):
    np.testing.assert_allclose(one(param, value, rgb), np.asarray(expected, dtype=np.float64), atol=2e-4)


def test_sharpen_is_an_unsharp_mask_on_the_3x3_mean():
    out = apply_adjust(impulse(), {"sharpen": 100})
    mean_centre = (0.45 + 8 * 0.1) / 9  # the 3x3 box around the centre
    assert out[4, 4, 0] == pytest.approx(0.45 + (0.45 - mean_centre), abs=1e-5)  # 0.7611
    assert out[4, 5, 0] == pytest.approx(max(0.0, 0.1 + (0.1 - mean_centre)), abs=1e-5)  # 0.0611
    assert out[0, 0, 0] == pytest.approx(0.1, abs=1e-6)  # far from the detail: unchanged
    soft = apply_adjust(impulse(), {"sharpen": 50})
    assert soft[4, 4, 0] == pytest.approx(0.45 + 0.5 * (0.45 - mean_centre), abs=1e-5)


def test_structure_adds_local_contrast_on_a_5x5_box():
    out = apply_adjust(impulse(), {"structure": 100})
    mean = (0.45 + 24 * 0.1) / 25  # a 9x9 photo: the box is its minimum, 5 pixels
    assert out[4, 4] == pytest.approx([0.45 + 0.5 * (0.45 - mean)] * 3, abs=1e-5)  # 0.618
    assert out[0, 0] == pytest.approx([0.1] * 3, abs=1e-6)


def test_every_registry_parameter_has_an_operation_and_a_hand_case():
    params = {p.name for p in default_registry().tool("adjust").slot_params}
    assert params <= KNOWN
    covered = {c[0] for c in CASES} | {"sharpen", "structure"}
    assert params <= covered, f"no hand-computed test for {params - covered}"


def test_zero_is_the_identity_bit_for_bit():
    rng = np.random.default_rng(0)
    img = rng.random((16, 16, 3), dtype=np.float32)
    zeros = {p.name: 0 for p in default_registry().tool("adjust").slot_params}
    assert np.array_equal(apply_adjust(img, zeros), img)
