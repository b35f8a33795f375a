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

from vedit.errors import RegistryError, RenderError
from vedit.registry import Registry, Tool, ToolCall, default_registry
from vedit.render.adjust import KNOWN, apply_adjust
from vedit.render.filter import apply_filter, lut_path
from vedit.render.looks import LUT_DIR
from vedit.render.selective import HUE_CENTRES, apply_selective

log = logging.getLogger(__name__)

#: The tools the renderer draws: name -> the shape of answer it reads, in drawing order.
DRAWN = {"adjust": "flat", "selective_adjust": "per_colour", "filter": "preset"}


def shape(tool: Tool) -> str | None:
    """How the renderer can read ``tool``'s answers, from its schema: ``flat`` (numbers by name),
    ``per_colour`` (colour -> numbers by name), ``preset`` (an enum ``name`` + numbers), else None."""
    slots, cats = tool.slots, tool.categories
    if slots and not cats and all(len(p) == 1 for p in slots):
        return "flat"
    if slots and not cats and all(len(p) == 2 for p in slots):
        return "per_colour"
    if cats == (("name",),) and all(len(p) == 1 for p in slots):
        try:
            tool.choices(("name",))
        except RegistryError:
            return None
        return "preset"
    return None


def params(tool: Tool) -> tuple[str, ...]:
    """The numeric parameters' names (per colour for ``per_colour`` tools), in schema order."""
    return tuple(dict.fromkeys(p[-1] for p in tool.slots))


def colours(tool: Tool) -> tuple[str, ...]:
    """The colours of a ``per_colour`` tool, in schema order."""
    return tuple(dict.fromkeys(p[0] for p in tool.slots if len(p) == 2))


def presets(tool: Tool) -> tuple[str, ...]:
    """The presets of a ``preset`` tool (the values of its ``name`` enum)."""
    return tuple(tool.choices(("name",)))


def drawn(tool: Tool) -> bool:
    """Whether an operation draws ``tool``: one of :data:`DRAWN`, with answers of the shape it reads."""
    return tool.name in DRAWN and DRAWN[tool.name] == shape(tool)


def undrawable_tools(calls: Mapping[str, ToolCall]) -> list[str]:
    """The tools of ``calls`` (an answer: tool name -> call) that no operation draws."""
    return [name for name, call in calls.items() if not drawn(call.tool)]


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
            kind = shape(tool)
            if not drawn(tool):
                out.append(f"tool {tool.name}: no renderer")
            elif kind == "flat":
                out += [f"adjust.{p}: no operation" for p in params(tool) if p not in KNOWN]
            elif kind == "per_colour":
                out += [f"selective_adjust colour {c}: no hue band" for c in colours(tool) if c not in HUE_CENTRES]
                out += [f"selective_adjust.{p}: no operation" for p in params(tool) if p not in ("saturation", "luminance")]
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
            if not drawn(call.tool):
                skipped.append(f"{name}: no renderer for this tool")
            elif name == "adjust":
                skipped += [f"adjust.{k}={v}: no operation" for k, v in value.items() if v and k not in KNOWN]
                x = apply_adjust(x, value)
            elif name == "selective_adjust":
                bands = tuple(c for c in colours(call.tool) if c in HUE_CENTRES)
                skipped += [f"selective_adjust colour {c}: no hue band" for c in colours(call.tool)
                            if c not in HUE_CENTRES and any(value[c].values())]
                x = apply_selective(x, bands, value)
            else:
                preset = value["name"]
                if lut_path(preset, self.lut_dir).is_file():
                    x = apply_filter(x, preset, value.get("intensity", 100), self.lut_dir)
                else:
                    skipped.append(f"filter preset {preset}: no LUT file")
        for item in skipped:
            log.warning("not rendered: %s", item)
        if skipped and self.strict:
            raise RenderError(f"cannot render: {'; '.join(skipped)}")
        return x, skipped


__all__ = ["DRAWN", "Renderer", "colours", "params", "presets", "drawn", "shape", "undrawable_tools"]
