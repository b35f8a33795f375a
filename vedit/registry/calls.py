"""Typed tool calls, their canonical serialization, and the parser for raw model text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import best_match

from vedit.errors import ToolCallError
from vedit.registry import subset
from vedit.registry.model import Tool
from vedit.registry.schema import idle_validator, validator

#: Canonical serialization: compact separators, schema key order, no ASCII escaping.
SEPARATORS = (",", ":")


@dataclass(frozen=True)
class ToolCall:
    """One tool's answer: its JSON value, properties in schema order, integers as ints.

    Build one with :meth:`of` (or :func:`call_from_value`, which also validates); the value is kept
    as its canonical text so calls are hashable and compare by content.
    """

    tool: Tool
    text: str

    @classmethod
    def of(cls, tool: Tool, value: Any) -> "ToolCall":
        """The call with ``value``, which the tool's grammar must be able to write."""
        if not subset.accepts(tool.language, value):
            raise ToolCallError(tool.name, f"{subset.canonical_json(value)} is not an answer vedit's grammar writes")
        return cls(tool, subset.dump(tool.language, value))

    @classmethod
    def unused(cls, tool: Tool) -> "ToolCall":
        """The tool's "not used" answer (``x-vedit-unused``)."""
        if tool.unused_text is None:
            raise ToolCallError(tool.name, "the tools file gives no x-vedit-unused answer for this tool")
        return cls.of(tool, tool.unused)

    @property
    def value(self) -> Any:
        return json.loads(self.text)

    @property
    def used(self) -> bool:
        """Whether the call uses its tool: not the unused answer, and not an ``x-vedit-idle`` answer
        (the paper: some slider non-zero for adjust / selective_adjust, a preset other than "none")."""
        if self.tool.unused_text is not None and self.text == subset.dump(self.tool.language, self.tool.unused):
            return False
        idle = idle_validator(self.tool)
        return idle is None or not idle.is_valid(self.value)

    @property
    def vector(self) -> tuple[float, ...]:
        """The numeric leaves in slot order (0 where absent): the vector of the cosine quality."""
        value = self.value
        return tuple(v if isinstance(v := subset.at(value, p), (int, float)) else 0 for p in self.tool.slots)

    @property
    def values(self) -> tuple[float, ...]:
        """The numeric leaves that are present, in slot order."""
        value = self.value
        return tuple(v for p in self.tool.slots if isinstance(v := subset.at(value, p), (int, float)))

    @property
    def category(self) -> tuple[Any, ...]:
        """The categorical leaves (enums, booleans, strings) in schema order, ``None`` where absent."""
        value = self.value
        return tuple(subset.at(value, p) for p in self.tool.categories)

    def as_value(self) -> Any:
        """The JSON value, keys in schema order."""
        return self.value

    def dumps(self) -> str:
        """Canonical compact JSON: the only text the decoding grammar admits for this call."""
        return self.text

    def __repr__(self) -> str:
        return f"ToolCall({self.tool.name}: {self.text})"


def _path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(tool: Tool, value: Any) -> str:
    """The most precise reason a value breaks the tool's schema (jsonschema's own choice, which
    descends into the anyOf of "used" and "not used" to the deepest error)."""
    best = best_match(validator(tool).iter_errors(value))
    if best.validator == "enum":
        return f"{_path(best)}: {best.instance!r} is not one of the {tool.name} choices"
    return f"{_path(best)}: {best.message}"


def call_from_value(tool: Tool, value: Any) -> ToolCall:
    """Turn a parsed JSON value into a :class:`ToolCall`, or raise :class:`ToolCallError`."""
    if not validator(tool).is_valid(value):
        raise ToolCallError(tool.name, _describe(tool, value))
    return ToolCall.of(tool, value)


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
