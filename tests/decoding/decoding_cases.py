"""Accepted and refused outputs per tool, derived from the registry (no names or ranges restated)."""

from __future__ import annotations

import json

import random

from vedit.decoding.compile import sample_calls
from vedit.registry import Tool, ToolCall
from vedit.registry.subset import samples

SENTINEL = 77777


def accepted(tool: Tool) -> list[str]:
    texts = [c.dumps() for c in sample_calls(tool, n=10, seed=3)]
    return texts + [" " + t for t in texts[:5]]


def _with_first_value(tool: Tool, spelling: str) -> str:
    """A canonical output whose first integer is written as ``spelling``."""
    value = samples(tool.parameters, random.Random(0), 0)[1]  # the "max" sample: every property
    text = ToolCall.of(tool, value).dumps()
    first = tool.slot_params[0]
    head = text.index(":", text.index(json.dumps(first.path[-1])))
    end = head + 1 + len(str(int(first.max)))
    assert text[head + 1 : end] == str(int(first.max))
    return text[: head + 1] + spelling + text[end:]


def refused(tool: Tool) -> list[tuple[str, str]]:
    """``(why, text)`` pairs the grammar must refuse."""
    p = tool.slot_params[0]
    out = [
        ("above max", _with_first_value(tool, str(p.max + 1))),
        ("below min", _with_first_value(tool, str(p.min - 1))),
        ("leading zeros", _with_first_value(tool, "007")),
        ("leading zero", _with_first_value(tool, "01")),
        ("minus zero", _with_first_value(tool, "-0")),
        ("fraction", _with_first_value(tool, "1.5")),
        ("plus sign", _with_first_value(tool, "+1")),
        ("exponent", _with_first_value(tool, "1e2")),
        ("string number", _with_first_value(tool, '"5"')),
        ("null value", _with_first_value(tool, "null")),
        ("space before value", _with_first_value(tool, " 5")),
    ]
    for v in (250, -101):
        if not p.min <= v <= p.max:
            out.append((f"{v} out of range", _with_first_value(tool, str(v))))
    full = sample_calls(tool, n=1, seed=5)[-1]
    value = full.as_value()
    keys = list(value)
    missing = dict(value)
    del missing[keys[0]]
    extra = dict(value, extra_key=1)
    swapped = {keys[1]: value[keys[1]], keys[0]: value[keys[0]], **{k: value[k] for k in keys[2:]}}
    compact = (",", ":")
    text = full.dumps()
    out += [
        ("missing key", json.dumps(missing, separators=compact)),
        ("extra key", json.dumps(extra, separators=compact)),
        ("wrong key order", json.dumps(swapped, separators=compact)),
        ("spaced json", json.dumps(value)),
        ("trailing comma", text[:-1] + ",}"),
        ("two leading spaces", "  " + text),
        ("trailing space", text + " "),
        ("trailing newline", text + "\n"),
        ("two objects", text + text),
        ("truncated", text[:-1]),
        ("empty", ""),
        ("null", "null"),
        ("array", "[" + text + "]"),
        ("parameters lead-in", "Parameters: " + text),
    ]
    for path in tool.categories:  # enums (the filter's presets)
        choice = json.dumps(value[path[0]])
        out += [
            ("unknown choice", text.replace(choice, '"not_a_choice"', 1)),
            ("choice in another case", text.replace(choice, choice.upper(), 1)),
        ]
    if tool.unused != {}:
        out.append(("empty object", "{}"))
    else:
        out += [("empty object with space inside", "{ }")]
    nested = [k for k in keys if isinstance(value[k], dict)]
    if nested:
        out.append(("inner object alone", json.dumps(value[nested[0]], separators=compact)))
    return out
