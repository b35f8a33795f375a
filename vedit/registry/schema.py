"""JSON Schemas derived from the registry, used to validate model output and dataset rows.

The schema admits any key order and whitespace (it validates parsed JSON); the decoding grammar is
stricter and admits only the canonical serialization.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema

from vedit.registry.model import Param, Tool


def _int(p: Param) -> dict[str, Any]:
    return {"type": "integer", "minimum": p.min, "maximum": p.max}


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


EMPTY_OBJECT: dict[str, Any] = {"type": "object", "maxProperties": 0}


def tool_schema(tool: Tool) -> dict[str, Any]:
    """Draft 2020-12 schema of one tool's output."""
    if tool.kind == "flat":
        body = {"oneOf": [EMPTY_OBJECT, _object({p.name: _int(p) for p in tool.params})]}
    elif tool.kind == "per_colour":
        colour = _object({p.name: _int(p) for p in tool.params})
        body = {"oneOf": [EMPTY_OBJECT, _object({c: colour for c in tool.colours})]}
    else:
        props: dict[str, Any] = {"name": {"enum": list(tool.presets)}}
        props.update({p.name: _int(p) for p in tool.params})
        body = _object(props)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": tool.name, **body}


@lru_cache(maxsize=32)
def validator(tool: Tool) -> jsonschema.Draft202012Validator:
    """A compiled validator, cached per tool (tools are frozen and hashable)."""
    return jsonschema.Draft202012Validator(tool_schema(tool))
