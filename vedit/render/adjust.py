"""The ``adjust`` tool: one pixel operation per parameter, in a fixed order.

Each operation takes the image and the parameter's value scaled to ``t = value / 100`` (``hue``
takes degrees) and is the identity at 0. What each does at -100 and +100 is in docs/render.md;
the formulas are the documentation, kept simple enough to check a pixel by hand.

Order: the *linear* operations model light and run on linear values (exposure, white balance,
black level offset, bloom); then the *encoded* ones (brightness, contrast, highlights, shadows,
saturation, vibrance, hue, structure, sharpen) run on sRGB-encoded values. A value of 0 skips its
operation, so an all-zero call returns the photo unchanged, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vedit.render.light import luma, to_encoded, to_linear

Op = Callable[[np.ndarray, float], np.ndarray]


def exposure(lin: np.ndarray, t: float) -> np.ndarray:
    """Scale linear light by ``2 ** (2t)``: +/-2 stops at +/-100."""
    return lin * np.float32(2.0 ** (2.0 * t))


def temperature(lin: np.ndarray, t: float) -> np.ndarray:
    """White balance: red gain ``2 ** (0.25t)``, blue gain ``2 ** (-0.25t)`` (+ is warmer)."""
    gains = np.array([2.0 ** (0.25 * t), 1.0, 2.0 ** (-0.25 * t)], dtype=np.float32)
    return lin * gains


def tint(lin: np.ndarray, t: float) -> np.ndarray:
    """White balance: green gain ``2 ** (-0.25t)`` (+ is magenta, - is green)."""
    return lin * np.array([1.0, 2.0 ** (-0.25 * t), 1.0], dtype=np.float32)


def linear_offset(lin: np.ndarray, t: float) -> np.ndarray:
    """Add ``0.1t`` to linear light: + lifts the blacks (a haze), - crushes them."""
    return np.maximum(lin + np.float32(0.1 * t), 0.0)


def bloom(lin: np.ndarray, t: float) -> np.ndarray:
    """Add ``t`` times the light above 0.5, blurred (Gaussian, sigma 2% of the short side): a glow."""
    from scipy.ndimage import gaussian_filter

    sigma = max(1.0, 0.02 * min(lin.shape[:2]))
    glow = gaussian_filter(np.maximum(lin - 0.5, 0.0), sigma=(sigma, sigma, 0), mode="nearest")
    return lin + np.float32(t) * glow


def brightness(x: np.ndarray, t: float) -> np.ndarray:
    """Midtone gamma ``x ** (2 ** -t)``: +100 is ``sqrt(x)``, -100 is ``x ** 2``; black and white stay."""
    return np.clip(x, 0.0, 1.0) ** np.float32(2.0 ** -t)


def contrast(x: np.ndarray, t: float) -> np.ndarray:
    """Slope ``2 ** t`` around mid-grey 0.5: doubled at +100, halved at -100."""
    return 0.5 + (x - 0.5) * np.float32(2.0 ** t)


def highlights(x: np.ndarray, t: float) -> np.ndarray:
    """Add ``0.25t`` weighted by ``clip(2Y' - 1, 0, 1)``: only pixels brighter than mid-grey move."""
    return x + np.float32(0.25 * t) * np.clip(2.0 * luma(x) - 1.0, 0.0, 1.0)


def shadows(x: np.ndarray, t: float) -> np.ndarray:
    """Add ``0.25t`` weighted by ``clip(1 - 2Y', 0, 1)``: only pixels darker than mid-grey move."""
    return x + np.float32(0.25 * t) * np.clip(1.0 - 2.0 * luma(x), 0.0, 1.0)


def saturation(x: np.ndarray, t: float) -> np.ndarray:
    """Scale the distance from grey (the pixel's luma) by ``1 + t``: grey at -100, doubled at +100."""
    y = luma(x)
    return y + (x - y) * np.float32(1.0 + t)


def vibrance(x: np.ndarray, t: float) -> np.ndarray:
    """Saturation by ``1 + t(1 - s)``, ``s = max - min`` of the pixel: muted colours move most."""
    y = luma(x)
    s = x.max(axis=-1, keepdims=True) - x.min(axis=-1, keepdims=True)
    return y + (x - y) * (1.0 + np.float32(t) * (1.0 - s))


def hue(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the HSV hue by ``degrees`` (0-360; 120 turns red into green)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(np.clip(x, 0.0, 1.0))
    hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
    return hsv2rgb(hsv).astype(np.float32)


def _box_detail(channel: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return channel - uniform_filter(channel, size=(size, size, 1), mode="nearest")


def sharpen(x: np.ndarray, t: float) -> np.ndarray:
    """Unsharp mask: add ``t`` times the difference from the 3x3 box mean (fine detail, per channel)."""
    return x + np.float32(t) * _box_detail(x, 3)


def structure_size(shape: tuple[int, ...]) -> int:
    """The box of :func:`structure`: odd, at least 5 pixels, about 1/16 of the short side."""
    return max(5, int(min(shape[:2]) // 16) | 1)


def structure(x: np.ndarray, t: float) -> np.ndarray:
    """Local contrast: add ``0.5t`` times the luma's difference from its box mean (coarse detail)."""
    y = luma(x)
    return x + np.float32(0.5 * t) * _box_detail(y, structure_size(x.shape))


@dataclass(frozen=True)
class Stage:
    """Operations that share a space: ``linear`` ones are wrapped in decode / encode."""

    linear: bool
    ops: dict[str, Op]


#: Every operation the renderer knows, by parameter name, in the order they run.
STAGES = (
    Stage(True, {"exposure": exposure, "temperature": temperature, "tint": tint, "linearOffset": linear_offset,
                 "bloom": bloom}),
    Stage(False, {"brightness": brightness, "contrast": contrast, "highlights": highlights, "shadows": shadows,
                  "saturation": saturation, "vibrance": vibrance, "hue": hue, "structure": structure,
                  "sharpen": sharpen}),
)
KNOWN = frozenset(name for stage in STAGES for name in stage.ops)
#: Parameters in degrees rather than -100..100 percent.
DEGREES = frozenset({"hue"})


def apply_adjust(x: np.ndarray, values: dict[str, int]) -> np.ndarray:
    """Apply the non-zero ``values`` (parameter name -> value) to encoded pixels ``x``.

    Names the renderer does not know are the caller's to report (:data:`KNOWN`); they are ignored here.
    """
    for stage in STAGES:
        active = [(op, values[name]) for name, op in stage.ops.items() if values.get(name, 0)]
        if not active:
            continue
        img = to_linear(x) if stage.linear else x
        for op, v in active:
            img = op(img, float(v) if op is hue else v / 100.0)
        x = to_encoded(img) if stage.linear else np.clip(img, 0.0, 1.0).astype(np.float32)
    return x


__all__ = ["DEGREES", "KNOWN", "STAGES", "apply_adjust", "structure_size"]
