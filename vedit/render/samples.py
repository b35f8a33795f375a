"""Sample photos that ship inside scikit-image (nothing to download), with their licences.

Licences as stated in ``skimage.data``'s docstrings: the astronaut portrait is a NASA photograph
(public domain), the coffee cup (Rachel Michetti, courtesy of Pikolo Espresso Bar) and Chelsea the
cat (Stefan van der Walt) are CC0.
"""

from __future__ import annotations

from vedit.render.photo import PREVIEW_SIDE, Photo, from_array

#: name -> licence, in the order the contact sheet shows them.
SAMPLES = {
    "astronaut": "public domain (NASA)",
    "coffee": "CC0 (Rachel Michetti)",
    "chelsea": "CC0 (Stefan van der Walt)",
}


def sample_photos(names: tuple[str, ...] = tuple(SAMPLES), max_side: int | None = PREVIEW_SIDE) -> list[Photo]:
    import skimage.data

    return [from_array(getattr(skimage.data, n)(), name=n, max_side=max_side) for n in names]


__all__ = ["SAMPLES", "sample_photos"]
