"""The recipe of each ``filter`` preset, and the generator of its ``.cube`` LUT.

A preset's look is written as a recipe: ``adjust`` values (the same operations and scale as the
``adjust`` tool, point operations only), an optional split tone (colours added to the shadows
and the highlights) and an optional special mapping (duotone, negative, night vision). The
generator applies the recipe to the identity lattice of a 17-point 3D LUT and writes it as a
standard Resolve/Iridas ``.cube`` file with colour-science; the renderer reads those files, so
any ``.cube`` from a colourist can replace one. ``python -m vedit.render.looks`` regenerates
them (the test suite checks that regenerating gives identical files).

The preset names come from the registry; a preset without a recipe is reported by name
(:func:`missing_recipes`), never rendered as the identity in silence. ``none`` is the identity.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vedit.render.adjust import apply_adjust
from vedit.render.light import luma

#: Lattice points per axis (17 is the common small size; trilinear interpolation between them).
LUT_SIZE = 17
#: Decimals written per value: 1e-4 is well under one 8-bit step (1/255).
DECIMALS = 4
LUT_DIR = Path(__file__).with_name("luts")
#: Point operations only: a LUT maps each colour on its own, it cannot blur or sharpen.
SPATIAL = frozenset({"bloom", "sharpen", "structure"})

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Recipe:
    """``adjust``: adjust-tool values; ``split``: (shadow colour, highlight colour, amount 0-1);
    ``special``: ``duotone`` (dark -> ``colour`` by luma), ``negative``, ``night_vision``."""

    adjust: dict[str, int] = field(default_factory=dict)
    split: tuple[RGB, RGB, float] | None = None
    special: str | None = None
    colour: RGB | None = None


TEAL: RGB = (0.0, 0.5, 0.55)
ORANGE: RGB = (1.0, 0.55, 0.2)


def _teal_orange(n: int) -> Recipe:
    """teal_and_orange_1..6: the same split tone, stronger and more contrasted with each number."""
    return Recipe({"contrast": 5 * n, "saturation": 4 * n}, split=(TEAL, ORANGE, 0.05 * n))


RECIPES: dict[str, Recipe] = {
    "lovely_day": Recipe({"temperature": 25, "brightness": 10, "vibrance": 30}),
    "action": Recipe({"contrast": 40, "saturation": 20, "shadows": -15}),
    "vivid": Recipe({"saturation": 45, "vibrance": 30, "contrast": 15}),
    "north": Recipe({"temperature": -35, "saturation": -20, "contrast": 10}),
    "purple_rain": Recipe({"tint": 40, "temperature": -20, "contrast": 10}, split=((0.35, 0.1, 0.5), (0.8, 0.6, 1.0), 0.15)),
    "winter": Recipe({"temperature": -45, "saturation": -30, "brightness": 10}),
    "faded_Retro": Recipe({"linearOffset": 20, "contrast": -30, "temperature": 20, "saturation": -20}),
    "faded_HighNoon": Recipe({"linearOffset": 15, "contrast": -25, "brightness": 15, "saturation": -10}),
    "faded_Mist": Recipe({"linearOffset": 30, "contrast": -40, "saturation": -35}),
    "faded_Terra": Recipe({"linearOffset": 15, "contrast": -20, "temperature": 35, "saturation": -15}),
    "faded_Vista": Recipe({"linearOffset": 15, "contrast": -20, "temperature": -15, "tint": -10}),
    "faded_C1": Recipe({"linearOffset": 20, "contrast": -25}, split=(TEAL, (1.0, 0.9, 0.7), 0.08)),
    "faded_AL2": Recipe({"linearOffset": 25, "contrast": -30, "tint": 15, "saturation": -20}),
    **{f"teal_and_orange_{n}": _teal_orange(n) for n in range(1, 7)},
    "fortune": Recipe({"temperature": 30, "contrast": 20, "saturation": 10},
                      split=((0.3, 0.15, 0.05), (1.0, 0.85, 0.4), 0.12)),
    "spring": Recipe({"tint": -15, "vibrance": 35, "brightness": 10}),
    "enchanted": Recipe({"tint": 20, "contrast": -10, "brightness": 5}, split=((0.2, 0.1, 0.4), (1.0, 0.8, 0.9), 0.12)),
    "ultra": Recipe({"contrast": 50, "saturation": 50, "vibrance": 20}),
    "firecracker": Recipe({"temperature": 45, "contrast": 35, "saturation": 35}),
    "cyberpunk": Recipe({"tint": 35, "contrast": 30}, split=((0.0, 0.6, 0.8), (1.0, 0.2, 0.8), 0.2)),
    "darkness": Recipe({"exposure": -60, "contrast": 30, "saturation": -30}),
    "night_vision": Recipe(special="night_vision"),
    "negative": Recipe(special="negative"),
    "duotone_red": Recipe(special="duotone", colour=(0.95, 0.15, 0.15)),
    "duotone_pink": Recipe(special="duotone", colour=(1.0, 0.5, 0.75)),
    "duotone_green": Recipe(special="duotone", colour=(0.3, 0.9, 0.4)),
    "duotone_yellow": Recipe(special="duotone", colour=(1.0, 0.9, 0.2)),
    "duotone_orange": Recipe(special="duotone", colour=(1.0, 0.55, 0.1)),
}
#: The dark end of every duotone.
DUOTONE_DARK: RGB = (0.08, 0.05, 0.12)


def apply_recipe(x: np.ndarray, recipe: Recipe) -> np.ndarray:
    """The recipe on encoded pixels ``x`` (any shape ``... x 3``)."""
    bad = SPATIAL & set(recipe.adjust)
    if bad:
        raise ValueError(f"a LUT recipe cannot use spatial operations: {', '.join(sorted(bad))}")
    x = np.asarray(x, dtype=np.float32)
    if recipe.special == "negative":
        return 1.0 - x
    if recipe.special == "night_vision":
        y = np.clip(luma(x) * 1.4 + 0.05, 0.0, 1.0)
        return np.clip(y * np.array([0.25, 1.0, 0.3], dtype=np.float32), 0.0, 1.0)
    if recipe.special == "duotone":
        y = luma(x)
        dark, light = np.array(DUOTONE_DARK, np.float32), np.array(recipe.colour, np.float32)
        return np.clip(dark + (light - dark) * y, 0.0, 1.0)
    if recipe.special is not None:
        raise ValueError(f"unknown special mapping {recipe.special!r}")
    x = apply_adjust(x, recipe.adjust)
    if recipe.split is not None:
        shadow, highlight, amount = recipe.split
        y = luma(x)
        x = x + amount * ((1.0 - y) * (np.array(shadow, np.float32) - 0.5) + y * (np.array(highlight, np.float32) - 0.5))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def missing_recipes(presets: tuple[str, ...]) -> list[str]:
    """Presets (other than ``none``) with no recipe."""
    return [p for p in presets if p != "none" and p not in RECIPES]


def lut_table(recipe: Recipe, size: int = LUT_SIZE) -> np.ndarray:
    """The recipe sampled on the identity lattice: ``size x size x size x 3``, indexed [r, g, b]."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float64)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    lattice = np.stack([r, g, b], axis=-1).astype(np.float32)
    return apply_recipe(lattice.reshape(size, size * size, 3), recipe).reshape(size, size, size, 3)


def write_cube(name: str, path: Path, size: int = LUT_SIZE) -> Path:
    """Write preset ``name``'s LUT as a ``.cube`` file (colour-science's Iridas/Resolve writer)."""
    import colour

    lut = colour.LUT3D(table=lut_table(RECIPES[name], size).astype(np.float64), name=name,
                       comments=[f"vedit filter preset {name}: generated by vedit.render.looks from its recipe"])
    colour.write_LUT(lut, str(path), decimals=DECIMALS)
    return path


def generate(out_dir: Path = LUT_DIR) -> list[Path]:
    """Write every preset's ``.cube`` into ``out_dir`` (one file per recipe)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_cube(name, out_dir / f"{name}.cube") for name in sorted(RECIPES)]


if __name__ == "__main__":  # pragma: no cover - the regenerate command
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else LUT_DIR):
        print(p)
