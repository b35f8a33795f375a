"""Encoded (sRGB) and linear light, and luma: the two spaces the renderer works in.

Pixels travel as float32 ``H x W x 3`` arrays of sRGB-encoded values in [0, 1] (what a photo
file stores). Operations that model light (exposure, white balance, an offset of the black level,
bloom, blending a look into the photo, resampling for a preview) run on linear values, because
light adds and scales there; tonal and colour "looks" (contrast, curves, saturation) run on the
encoded values, where equal steps look equal, as photo editors do.
"""

from __future__ import annotations

import numpy as np

#: Rec. 709 / sRGB luma weights (applied to encoded values: Y' of the encoded RGB).
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def to_linear(x: np.ndarray) -> np.ndarray:
    """The sRGB decoding function (IEC 61966-2-1): encoded [0, 1] -> linear light."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def to_encoded(y: np.ndarray) -> np.ndarray:
    """The sRGB encoding function: linear light (clipped to [0, 1]) -> encoded [0, 1]."""
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
    return np.where(y <= 0.0031308, y * 12.92, 1.055 * np.maximum(y, 0.0031308) ** (1 / 2.4) - 0.055).astype(
        np.float32
    )


def luma(x: np.ndarray) -> np.ndarray:
    """Y' of encoded RGB, shape ``H x W x 1`` so it broadcasts over the channels."""
    return (np.asarray(x, dtype=np.float32) @ LUMA)[..., None]


__all__ = ["LUMA", "luma", "to_encoded", "to_linear"]
