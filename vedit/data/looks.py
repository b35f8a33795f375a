"""The look library behind the synthetic teacher dataset (``looks.json``), checked against a registry.

A *look* ("golden hour", "Morocco", "😈") is what users ask for. ``looks.json`` describes each look
per tool, keyed by registry tool name (a look without a tool's key does not use that tool):

- tools with numeric answers only (adjust, selective_adjust): weights of named *traits*, sparse
  parameter sets such as ``"warm": {"temperature": 35, "tint": 5}`` (nested like the answer); a
  look's values are the weighted sum, so related looks share structure and a student can learn
  the mapping;
- tools with a choice (an enum leaf: filter's preset): the tool's own JSON call, e.g.
  ``{"name": "faded_HighNoon", "intensity": 40}``.

Parameter names, colours and presets in the file are checked against the registry on load, so
the library can never silently disagree with the tools it feeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from vedit.errors import RegistryError, ToolCallError
from vedit.registry import Registry, Tool, ToolCall, call_from_value, default_registry, subset


@dataclass(frozen=True)
class Target:
    """A look's intended call of one tool before rounding: float values in slot order and, for
    tools with a choice, the chosen value (the preset name)."""

    values: tuple[float, ...]
    preset: str | None = None

    def used(self, tool: Tool) -> bool:
        if tool.categories:
            return self.preset != none_choice(tool)
        return any(round(v) != 0 for v in self.values)


@dataclass(frozen=True)
class Look:
    name: str
    aliases: tuple[str, ...]  # every surface form, the name first
    targets: dict[str, Target]  # one per registry tool


@dataclass(frozen=True)
class Phrasing:
    """How users word requests: single-look templates, two-look combos, intensity modifiers."""

    templates: tuple[str, ...]
    combos: tuple[str, ...]
    modifiers: tuple[tuple[float, tuple[str, ...]], ...]  # (scale, words)


@dataclass(frozen=True)
class LookLibrary:
    looks: tuple[Look, ...]
    phrasing: Phrasing
    target_use_rates: dict[str, float]


def none_choice(tool: Tool):
    """The choice of a tool's unused answer (the filter's ``"none"``)."""
    return ToolCall.unused(tool).category[0]


def build_value(tool: Tool, values, choice=None) -> dict[str, Any]:
    """The answer with ``values`` at the tool's slots and ``choice`` at its first categorical leaf."""
    out: dict[str, Any] = {}
    pairs = list(zip(tool.slots, values)) + ([(tool.categories[0], choice)] if tool.categories else [])
    for path, v in pairs:
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = v
    return subset.normal(tool.parameters, out)


def unused_target(tool: Tool) -> Target:
    if tool.categories:
        return Target((0.0,) * len(tool.slots), none_choice(tool))
    return Target((0.0,) * len(tool.slots))


def _trait_vector(tool: Tool, trait: dict[str, Any]) -> tuple[float, ...]:
    """A sparse trait as a full vector in slot order; unknown names raise KeyError(name)."""
    index = {slot: i for i, slot in enumerate(tool.slots)}
    out = [0.0] * len(index)

    def items(tree: dict[str, Any], path: tuple[str, ...]):
        for k, v in tree.items():
            yield from (items(v, path + (k,)) if isinstance(v, dict) else [(path + (k,), v)])

    for slot, value in items(trait, ()):
        if slot not in index:
            raise KeyError("/".join(slot))
        out[index[slot]] += float(value)
    return tuple(out)


def _build(raw: dict[str, Any], registry: Registry, source: str) -> LookLibrary:
    problems: list[str] = []
    traits: dict[str, dict[str, tuple[float, ...]]] = {}
    for tool in registry.tools:
        if tool.categories:
            continue
        traits[tool.name] = {}
        for name, trait in raw.get("traits", {}).get(tool.name, {}).items():
            try:
                traits[tool.name][name] = _trait_vector(tool, trait)
            except KeyError as exc:
                problems.append(f"trait {tool.name}/{name}: {exc.args[0]!r} is not a slot of {tool.name}")
    unknown_tools = set(raw.get("traits", {})) - set(traits)
    problems.extend(f"traits for unknown or preset tool {t!r}" for t in sorted(unknown_tools))

    looks = []
    seen_alias: dict[str, str] = {}
    for entry in raw["looks"]:
        name = entry["name"]
        aliases = tuple(entry["aliases"])
        for alias in aliases:
            key = alias.casefold()
            if key in seen_alias:
                problems.append(f"look {name!r}: alias {alias!r} already belongs to {seen_alias[key]!r}")
            seen_alias[key] = name
        extra = set(entry) - {"name", "aliases", *registry.tool_names}
        if extra:
            problems.append(f"look {name!r}: unknown key(s) {sorted(extra)}")
        targets = {}
        for tool in registry.tools:
            spec = entry.get(tool.name)
            if spec is None:
                targets[tool.name] = unused_target(tool)
            elif tool.categories:
                try:
                    call = call_from_value(tool, spec)
                except ToolCallError as exc:
                    problems.append(f"look {name!r}: {exc}")
                    continue
                targets[tool.name] = Target(tuple(float(v) for v in call.vector), call.category[0])
            else:
                vec = [0.0] * len(tool.slots)
                for trait, weight in spec.items():
                    if trait not in traits[tool.name]:
                        problems.append(f"look {name!r}: unknown {tool.name} trait {trait!r}")
                        continue
                    vec = [a + weight * b for a, b in zip(vec, traits[tool.name][trait])]
                targets[tool.name] = Target(tuple(vec))
        looks.append(Look(name=name, aliases=aliases, targets=targets))

    p = raw["phrasing"]
    phrasing = Phrasing(
        templates=tuple(p["templates"]),
        combos=tuple(p["combos"]),
        modifiers=tuple((float(m["scale"]), tuple(m["words"])) for m in p["modifiers"]),
    )
    if any("{x}" not in t for t in phrasing.templates) or any(
        "{x}" not in t or "{y}" not in t for t in phrasing.combos
    ):
        problems.append("phrasing: every template needs {x} (combos: {x} and {y})")
    if problems:
        shown = "; ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        raise RegistryError(f"{source}: look library does not match the tool registry: {shown}")
    rates = {k: float(v) for k, v in raw.get("target_use_rates", {}).items() if k in registry.tool_names}
    return LookLibrary(looks=tuple(looks), phrasing=phrasing, target_use_rates=rates)


def load_looks(registry: Registry | None = None, path: str | Path | None = None) -> LookLibrary:
    """Load the look library (the packaged ``looks.json`` unless ``path`` is given)."""
    registry = registry or default_registry()
    if path is None:
        text = resources.files("vedit.data").joinpath("looks.json").read_text(encoding="utf-8")
        source = "vedit/data/looks.json"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        raw = json.loads(text)
        return _build(raw, registry, source)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistryError(f"{source}: malformed look library ({exc!r})") from exc


__all__ = ["Look", "LookLibrary", "Phrasing", "Target", "load_looks", "unused_target"]
