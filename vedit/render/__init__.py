"""See an answer: draw the tool calls on a photo (``vedit preview``, contact sheets, the playground).

Needs the ``render`` extra (Pillow, scikit-image, colour-science); nothing in the base install
imports this package. The pieces, each its own module:

- :mod:`~vedit.render.engine`: :class:`Renderer` maps the registry's tools onto the operations;
- :mod:`~vedit.render.adjust`, :mod:`~vedit.render.selective`, :mod:`~vedit.render.filter`: the tools;
- :mod:`~vedit.render.looks`: the filter presets' recipes and their generated ``.cube`` LUTs;
- :mod:`~vedit.render.photo`: reading / writing photos (8/16 bits, EXIF orientation, ICC);
- :mod:`~vedit.render.sheet`: before/after grids and the contact sheet;
- :mod:`~vedit.render.playground`: the local web page.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Renderer": "vedit.render.engine",
    "Photo": "vedit.render.photo",
    "load_photo": "vedit.render.photo",
    "save_photo": "vedit.render.photo",
}


def __getattr__(name: str):
    """Import on first use: ``import vedit.render.cli`` must not load Pillow or scipy."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
