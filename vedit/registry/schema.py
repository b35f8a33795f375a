"""JSON Schemas of tool answers, and the jsonschema validator vedit checks answers with.

A tool's answer schema is its ``parameters`` schema, or ``anyOf`` of its ``x-vedit-unused``
answer and the parameters when the parameters do not admit that answer. The schema admits any key
order and whitespace (it validates parsed JSON); the decoding grammar is stricter and admits only
the canonical text.

jsonschema checks ``multipleOf`` with binary floats (0.07 is not a multiple of 0.01 there); the
validator here replaces that one keyword with an exact decimal check, the rest is jsonschema's.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import validators
from jsonschema.exceptions import ValidationError

from vedit.registry.model import Tool

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def _multiple_of(validator, step, instance, schema):
    if not validator.is_type(instance, "number"):
        return
    quotient = Decimal(str(instance)) / Decimal(str(step))
    if quotient != quotient.to_integral_value():
        yield ValidationError(f"{instance!r} is not a multiple of {step}")


#: Draft 2020-12 with an exact decimal ``multipleOf``.
Validator = validators.extend(jsonschema.Draft202012Validator, {"multipleOf": _multiple_of})


def tool_schema(tool: Tool) -> dict[str, Any]:
    """Draft 2020-12 schema of one tool's answer."""
    params = tool.schema
    if tool.language is tool.parameters:
        body = params
    else:
        body = {"anyOf": [{"const": tool.unused}, params]}
    return {"$schema": SCHEMA_URI, "title": tool.name, **body}


@lru_cache(maxsize=64)
def validator(tool: Tool) -> jsonschema.protocols.Validator:
    """A compiled validator, cached per tool (tools are frozen and hashable)."""
    return Validator(tool_schema(tool))


@lru_cache(maxsize=64)
def idle_validator(tool: Tool) -> jsonschema.protocols.Validator | None:
    """The validator of the answers that count as "not used" (``x-vedit-idle``), if the file gives one."""
    import json

    return None if tool.idle_text is None else Validator(json.loads(tool.idle_text))
