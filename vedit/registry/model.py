"""Typed view of ``tools.json``.

The registry is data (a JSON file) so that an export directory can carry an exact snapshot of the
registry it was built against, and serving reads that snapshot instead of whatever the installed
package says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from vedit.errors import RegistryError

ToolKind = Literal["flat", "per_colour", "preset"]
Family = Literal["t5", "llama"]


@dataclass(frozen=True)
class Param:
    """An integer parameter with an inclusive range."""

    name: str
    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min > self.max:
            raise RegistryError(f"parameter {self.name!r}: min {self.min} > max {self.max}")


@dataclass(frozen=True)
class Tool:
    """One colour tool.

    ``kind`` decides the JSON layout:
    - ``flat``: ``{"p1": int, ...}`` with every parameter, or ``{}`` when not used;
    - ``per_colour``: ``{"colour": {"p1": int, ...}, ...}`` for every colour, or ``{}``;
    - ``preset``: ``{"name": preset, "<param>": int}``; not used is the preset ``"none"``.
    """

    name: str
    kind: ToolKind
    params: tuple[Param, ...]
    prompt: str
    colours: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()

    @property
    def slots(self) -> tuple[tuple[str, ...], ...]:
        """Paths of the integer values in canonical order, e.g. ``("red", "saturation")``.

        This order is the order of the metric vectors (cosine similarity) and of the JSON.
        """
        if self.kind == "per_colour":
            return tuple((c, p.name) for c in self.colours for p in self.params)
        return tuple((p.name,) for p in self.params)

    @property
    def slot_params(self) -> tuple[Param, ...]:
        """The :class:`Param` (range) of each slot, aligned with :attr:`slots`."""
        if self.kind == "per_colour":
            return tuple(p for _ in self.colours for p in self.params)
        return self.params

    @property
    def none_preset(self) -> str:
        return "none"

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@dataclass(frozen=True)
class Registry:
    tools: tuple[Tool, ...]
    chat_templates: dict[str, str]
    preset_sets: dict[str, tuple[str, ...]]
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False, default_factory=dict)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    def tool(self, name: str) -> Tool:
        for t in self.tools:
            if t.name == name:
                return t
        raise RegistryError(f"unknown tool {name!r}; known tools: {', '.join(self.tool_names)}")

    def prompt(self, tool: str, intent: str, family: Family = "t5") -> str:
        """The concise student prompt for one tool (no rationale), in the family's chat form."""
        t = self.tool(tool)
        body = t.prompt.format(
            intent=intent,
            params=", ".join(p.name for p in t.params),
            colours=", ".join(t.colours),
            presets=", ".join(t.presets),
        )
        try:
            template = self.chat_templates[family]
        except KeyError:
            raise RegistryError(
                f"no chat template for family {family!r}; known: {', '.join(self.chat_templates)}"
            ) from None
        return template.format(prompt=body)

    def prompts(self, intent: str, family: Family = "t5") -> list[str]:
        """The prompts of all tools for one intent, in registry order (one batch per request)."""
        return [self.prompt(t.name, intent, family) for t in self.tools]

    def to_json(self) -> str:
        return json.dumps(self.raw, indent=2, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")


def registry_from_dict(raw: dict[str, Any]) -> Registry:
    """Build a registry from its JSON form (e.g. a snapshot carried in a Triton config)."""
    try:
        preset_sets = {k: tuple(v) for k, v in raw["preset_sets"].items()}
        tools = []
        for t in raw["tools"]:
            kind = t["kind"]
            if kind not in ("flat", "per_colour", "preset"):
                raise RegistryError(f"tool {t['name']!r}: unknown kind {kind!r}")
            presets: tuple[str, ...] = ()
            if kind == "preset":
                presets = preset_sets[t["preset_set"]]
                if "none" not in presets:
                    raise RegistryError(f"tool {t['name']!r}: preset set must contain 'none'")
            tools.append(
                Tool(
                    name=t["name"],
                    kind=kind,
                    params=tuple(Param(p["name"], int(p["min"]), int(p["max"])) for p in t["params"]),
                    prompt=t["prompt"],
                    colours=tuple(t.get("colours", ())),
                    presets=presets,
                )
            )
        return Registry(
            tools=tuple(tools),
            chat_templates=dict(raw["chat_templates"]),
            preset_sets=preset_sets,
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"malformed tool registry: {exc!r}") from exc


def load_registry(path: str | Path) -> Registry:
    """Load a registry snapshot (e.g. the one stored in an export directory)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{p}: registry file not found") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return registry_from_dict(raw)


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry shipped with the package (``vedit/registry/tools.json``)."""
    text = resources.files("vedit.registry").joinpath("tools.json").read_text(encoding="utf-8")
    return registry_from_dict(json.loads(text))
