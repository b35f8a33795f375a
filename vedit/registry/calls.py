"""Typed tool calls, their canonical serialization, and the parser for raw model text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import best_match, by_relevance

from vedit.errors import ToolCallError
from vedit.registry.model import Tool
from vedit.registry.schema import validator

#: Canonical serialization: compact separators, registry key order, no ASCII escaping.
SEPARATORS = (",", ":")


@dataclass(frozen=True)
class ToolCall:
    """One tool's decision.

    ``values`` holds the integers in the tool's slot order (empty for the ``{}`` form of flat and
    per-colour tools); ``preset`` is the preset name for preset tools and ``None`` otherwise.
    """

    tool: Tool
    values: tuple[int, ...]
    preset: str | None = None

    @property
    def used(self) -> bool:
        """Whether the call uses its tool, as the offline metrics define it.

        Flat / per-colour tools: a non-empty object with at least one non-zero value.
        Preset tools: any preset other than ``"none"``.
        """
        if self.tool.kind == "preset":
            return self.preset != self.tool.none_preset
        return any(v != 0 for v in self.values)

    @property
    def vector(self) -> tuple[int, ...]:
        """Values for cosine similarity (zeros for the ``{}`` form)."""
        if self.values:
            return self.values
        return (0,) * len(self.tool.slots)

    def as_value(self) -> dict[str, Any]:
        """The JSON value, keys in registry order."""
        t = self.tool
        if t.kind == "preset":
            out: dict[str, Any] = {"name": self.preset}
            out.update({p.name: v for p, v in zip(t.params, self.values)})
            return out
        if not self.values:
            return {}
        if t.kind == "flat":
            return {p.name: v for p, v in zip(t.params, self.values)}
        n = len(t.params)
        return {
            c: {p.name: v for p, v in zip(t.params, self.values[i * n : (i + 1) * n])}
            for i, c in enumerate(t.colours)
        }

    def dumps(self) -> str:
        """Canonical compact JSON: the only text the decoding grammar admits for this call."""
        return json.dumps(self.as_value(), separators=SEPARATORS, ensure_ascii=False)

    def __repr__(self) -> str:
        return f"ToolCall({self.tool.name}: {self.dumps()})"

    @classmethod
    def unused(cls, tool: Tool) -> "ToolCall":
        if tool.kind == "preset":
            return cls(tool, (0,) * len(tool.params), tool.none_preset)
        return cls(tool, ())


def _path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(tool: Tool, value: Any) -> str:
    """The most precise reason a value breaks the tool's schema."""
    # jsonschema's own choice of the most relevant error, descending into the oneOf of "used" and
    # "not used" ({}: maxProperties 0). The empty branch's complaint is never the cause the user
    # wants: inside a oneOf, best_match keeps the smallest key, and a "strong" keyword ranks
    # higher, so marking maxProperties lets the used branch's error win at the same depth.
    best = best_match(validator(tool).iter_errors(value), key=by_relevance(strong={"maxProperties"}))
    if best.validator == "enum":
        return f"{_path(best)}: {best.instance!r} is not a known preset of {tool.name}"
    return f"{_path(best)}: {best.message}"


def call_from_value(tool: Tool, value: Any) -> ToolCall:
    """Turn a parsed JSON value into a :class:`ToolCall`, or raise :class:`ToolCallError`."""
    if not validator(tool).is_valid(value):
        raise ToolCallError(tool.name, _describe(tool, value))
    # jsonschema counts 10.0 as an integer; the call keeps Python ints.
    if tool.kind == "preset":
        return ToolCall(tool, tuple(int(value[p.name]) for p in tool.params), value["name"])
    if not value:
        return ToolCall(tool, ())
    if tool.kind == "flat":
        return ToolCall(tool, tuple(int(value[p.name]) for p in tool.params))
    return ToolCall(tool, tuple(int(value[c][p]) for c, p in tool.slots))


def parse_call(tool: Tool, text: str) -> ToolCall:
    """Parse a model's raw text for ``tool``.

    Accepts surrounding whitespace (T5 students often start with a space) and an optional
    ``Parameters:`` lead-in (the paper's prompt asks for it); anything else must be one JSON value.
    """
    s = text.strip()
    if s.lower().startswith("parameters:"):
        s = s[len("parameters:") :].strip()
    if not s:
        raise ToolCallError(tool.name, "empty output")
    try:
        value = json.loads(s, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ToolCallError(tool.name, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError as exc:
        raise ToolCallError(tool.name, str(exc)) from None
    return call_from_value(tool, value)


def _reject_constant(name: str) -> float:
    raise ValueError(f"not valid JSON: {name} is not allowed")


__all__ = ["ToolCall", "call_from_value", "parse_call", "SEPARATORS"]
