"""The ``filter`` tool: a preset's 3D LUT (a shipped ``.cube`` file), blended at ``intensity``.

The ``.cube`` file is read by colour-science; the lookup is trilinear interpolation in the lattice,
done by scipy's ``map_coordinates`` (compiled: 20-40x faster than colour-science's numpy
``LUT3D.apply``, which the tests use as the reference it must match). The blend between the photo
and its looked-up version runs in linear light, so 50% is half the light of each, not a mix of
encoded values (which would darken the midtones of the transition).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vedit.errors import RenderError
from vedit.render.light import to_encoded, to_linear
from vedit.render.looks import LUT_DIR


def lut_path(preset: str, lut_dir: Path = LUT_DIR) -> Path:
    return lut_dir / f"{preset}.cube"


@lru_cache(maxsize=64)
def load_lut(path: Path):
    """A ``.cube`` file as a colour-science LUT3D (cached: presets repeat across photos)."""
    import colour

    if not path.is_file():
        raise RenderError(f"filter: no LUT file {path}; regenerate them with: python -m vedit.render.looks")
    return colour.read_LUT(str(path))


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trilinear lookup of encoded pixels ``x`` in a ``N x N x N x 3`` table indexed [r, g, b]."""
    from scipy.ndimage import map_coordinates

    size = table.shape[0]
    coords = np.moveaxis(np.clip(x, 0.0, 1.0) * np.float32(size - 1), -1, 0)  # 3 x H x W: r, g, b
    return np.stack([map_coordinates(table[..., c], coords, order=1, mode="nearest") for c in range(3)],
                    axis=-1).astype(np.float32)


@lru_cache(maxsize=64)
def _table(path: Path) -> np.ndarray:
    return np.ascontiguousarray(load_lut(path).table, dtype=np.float32)


def apply_filter(x: np.ndarray, preset: str, intensity: int, lut_dir: Path = LUT_DIR) -> np.ndarray:
    """Apply ``preset`` to encoded pixels ``x`` at ``intensity`` percent (``none`` or 0: unchanged)."""
    if preset == "none" or intensity <= 0:
        return x
    looked = np.clip(lookup(_table(lut_path(preset, lut_dir)), x), 0.0, 1.0)
    if intensity >= 100:
        return looked
    a = np.float32(intensity / 100.0)
    return to_encoded((1 - a) * to_linear(x) + a * to_linear(looked))


__all__ = ["apply_filter", "load_lut", "lookup", "lut_path"]
