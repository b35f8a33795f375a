"""Render tool calls on pixels: the registry's tools, mapped to the operations that draw them.

The registry decides which tools, parameters, colours and presets exist; this module knows how to
draw ``adjust`` (:mod:`vedit.render.adjust`), ``selective_adjust`` (:mod:`vedit.render.selective`)
and ``filter`` (:mod:`vedit.render.filter`). Whatever the registry names and the renderer cannot
draw (a new tool, a new parameter, a colour without a hue band, a preset without a LUT) is listed
by :meth:`Renderer.gaps` and logged as a warning naming it when a call uses it, never dropped in
silence. ``strict=True`` makes any gap an error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vedit.errors import RenderError
from vedit.registry import Registry, Tool, ToolCall, default_registry
from vedit.render.adjust import KNOWN, apply_adjust
from vedit.render.filter import apply_filter, lut_path
from vedit.render.looks import LUT_DIR
from vedit.render.selective import HUE_CENTRES, apply_selective

log = logging.getLogger(__name__)

#: The tools the renderer draws: name -> the answer layout it expects, in drawing order. ``flat``:
#: an object of numbers; ``per_colour``: an object of colour bands, each an object of numbers;
#: ``preset``: an object with an enum ``name`` (the LUT) and numbers. A tool of another name or layout
#: is named as not drawable, never skipped in silence.
DRAWN = {"adjust": "flat", "selective_adjust": "per_colour", "filter": "preset"}


def layout(tool: Tool) -> str | None:
    """The layout of the tool's answers (``flat``, ``per_colour``, ``preset``), read from its schema."""
    slots = tool.slots
    if ("name",) in tool.categories and all(len(p) == 1 for p in slots):
        return "preset"
    if tool.categories:
        return None
    if slots and all(len(p) == 1 for p in slots):
        return "flat"
    if slots and all(len(p) == 2 for p in slots):
        return "per_colour"
    return None


def params(tool: Tool) -> tuple[str, ...]:
    """The numeric parameters of a tool's answer (per colour band, for ``per_colour``)."""
    return tuple(dict.fromkeys(p[-1] for p in tool.slots))


def colours(tool: Tool) -> tuple[str, ...]:
    """The colour bands of a ``per_colour`` tool, in schema order."""
    return tuple(dict.fromkeys(p[0] for p in tool.slots if len(p) == 2))


def presets(tool: Tool) -> tuple[str, ...]:
    """The presets (LUT names) a ``preset`` tool may answer."""
    return tuple(str(v) for v in tool.choices(("name",)))


@dataclass
class Renderer:
    registry: Registry
    lut_dir: Path = LUT_DIR
    strict: bool = False

    @classmethod
    def default(cls, **kwargs) -> "Renderer":
        return cls(default_registry(), **kwargs)

    def gaps(self) -> list[str]:
        """What the registry has and the renderer cannot draw, one readable item each."""
        out = []
        for tool in self.registry.tools:
            kind = layout(tool)
            if DRAWN.get(tool.name) != kind:
                out.append(f"tool {tool.name} ({kind or 'another layout'}): no renderer")
            elif kind == "flat":
                out += [f"adjust.{p}: no operation" for p in params(tool) if p not in KNOWN]
            elif kind == "per_colour":
                out += [f"selective_adjust colour {c}: no hue band" for c in colours(tool) if c not in HUE_CENTRES]
                out += [f"selective_adjust.{p}: no operation" for p in params(tool)
                        if p not in ("saturation", "luminance")]
            else:
                out += [f"filter preset {p}: no LUT file" for p in presets(tool)
                        if p != "none" and not lut_path(p, self.lut_dir).is_file()]
        return out

    def render(self, pixels: np.ndarray, calls: Mapping[str, ToolCall]) -> tuple[np.ndarray, list[str]]:
        """Draw ``calls`` (tool name -> call, e.g. ``Prediction.calls``) on encoded float pixels.

        Returns the pixels and what was not drawn (also logged as warnings).
        """
        skipped: list[str] = []
        x = np.asarray(pixels, dtype=np.float32)
        for name in [n for n in DRAWN if n in calls] + [n for n in calls if n not in DRAWN]:
            call = calls[name]
            if not call.used:
                continue
            value = call.as_value()
            if not isinstance(value, dict) or DRAWN.get(name) != layout(call.tool):
                skipped.append(f"{name}: no renderer for this tool")
            elif name == "adjust":
                skipped += [f"adjust.{k}={v}: no operation" for k, v in value.items() if v and k not in KNOWN]
                x = apply_adjust(x, value)
            elif name == "selective_adjust":
                bands = colours(call.tool)
                skipped += [f"selective_adjust colour {c}: no hue band" for c in bands
                            if c not in HUE_CENTRES and any(value.get(c, {}).values())]
                full = {c: {p: value.get(c, {}).get(p, 0) for p in params(call.tool)} for c in bands}
                x = apply_selective(x, tuple(c for c in bands if c in HUE_CENTRES), full)
            else:
                preset = str(value.get("name"))
                if lut_path(preset, self.lut_dir).is_file():
                    x = apply_filter(x, preset, value.get("intensity", 100), self.lut_dir)
                else:
                    skipped.append(f"filter preset {preset}: no LUT file")
        for item in skipped:
            log.warning("not rendered: %s", item)
        if skipped and self.strict:
            raise RenderError(f"cannot render: {'; '.join(skipped)}")
        return x, skipped


__all__ = ["DRAWN", "Renderer", "colours", "layout", "params", "presets"]
