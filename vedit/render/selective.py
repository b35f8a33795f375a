"""The ``selective_adjust`` tool: saturation and luminance per colour band.

Each colour the registry names has a hue centre (degrees, HSV hue). A pixel's weight for a band
falls smoothly (a raised cosine) from 1 at the band's centre to 0 at the neighbouring centres on
the hue circle, so the weights of the two nearest bands add up to 1 and neighbouring bands blend
without seams. The weights are scaled by ``min(1, S / 0.25)`` (HSV saturation), so greys, whose hue
means nothing, are left alone.

Per band, with ``w`` the weight and ``t = value / 100``:
- ``saturation``: the distance from grey (the pixel's luma) scales by ``1 + t * w``;
- ``luminance``: the pixel scales by ``1 + 0.5 * t * w`` (hue kept).
"""

from __future__ import annotations

import numpy as np

from vedit.errors import RenderError
from vedit.render.light import luma

#: Hue centre of each colour name (degrees, HSV), the bands the app's colour picker shows.
HUE_CENTRES: dict[str, float] = {
    "red": 0.0,
    "orange": 30.0,
    "yellow": 60.0,
    "green": 120.0,
    "cyan": 180.0,
    "blue": 240.0,
    "purple": 280.0,
    "magenta": 310.0,
}
#: HSV saturation at which a pixel counts fully as coloured.
FULL_COLOUR_S = 0.25


def band_weights(hue_deg: np.ndarray, colours: tuple[str, ...]) -> np.ndarray:
    """Weights ``(..., len(colours))`` for hues in degrees; unknown colour names raise RenderError."""
    unknown = [c for c in colours if c not in HUE_CENTRES]
    if unknown:
        raise RenderError(
            f"selective_adjust: no hue band for colour(s) {', '.join(unknown)}; "
            f"the renderer knows {', '.join(HUE_CENTRES)} (vedit/render/selective.py HUE_CENTRES)"
        )
    centres = np.array([HUE_CENTRES[c] for c in colours])
    order = np.argsort(centres)
    ordered = centres[order]
    h = np.asarray(hue_deg, dtype=np.float64)[..., None]
    out = np.zeros(h.shape[:-1] + (len(colours),))
    for k, i in enumerate(order):
        prev_c = ordered[k - 1] - (360.0 if k == 0 else 0.0)
        next_c = ordered[(k + 1) % len(ordered)] + (360.0 if k == len(ordered) - 1 else 0.0)
        c = ordered[k]
        d = (h[..., 0] - c + 180.0) % 360.0 - 180.0  # signed distance to the centre, -180..180
        width = np.where(d >= 0, next_c - c, c - prev_c)
        inside = np.abs(d) < width
        out[..., i] = np.where(inside, 0.5 * (1.0 + np.cos(np.pi * np.clip(np.abs(d) / width, 0, 1))), 0.0)
    return out


def apply_selective(x: np.ndarray, colours: tuple[str, ...], values: dict[str, dict[str, int]]) -> np.ndarray:
    """Apply ``values`` (colour -> {"saturation": v, "luminance": v}) to encoded pixels ``x``."""
    sat = np.array([values.get(c, {}).get("saturation", 0) for c in colours], dtype=np.float64) / 100.0
    lum = np.array([values.get(c, {}).get("luminance", 0) for c in colours], dtype=np.float64) / 100.0
    if not sat.any() and not lum.any():
        return x
    from skimage.color import rgb2hsv

    hsv = rgb2hsv(np.clip(x, 0.0, 1.0))
    w = band_weights(hsv[..., 0] * 360.0, colours) * np.minimum(1.0, hsv[..., 1:2] / FULL_COLOUR_S)
    sat_gain = (1.0 + w @ sat)[..., None].astype(np.float32)
    lum_gain = (1.0 + 0.5 * (w @ lum))[..., None].astype(np.float32)
    y = luma(x)
    out = (y + (x - y) * sat_gain) * lum_gain
    return np.clip(out, 0.0, 1.0).astype(np.float32)


__all__ = ["FULL_COLOUR_S", "HUE_CENTRES", "apply_selective", "band_weights"]
