"""The character regex of each tool admits exactly the canonical outputs."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from decoding_cases import accepted, refused
from vedit.decoding.language import char_regex, needed_chars
from vedit.registry import default_registry, parse_call
from vedit.registry.schema import tool_schema

TOOLS = default_registry().tools


@pytest.fixture(scope="module", params=TOOLS, ids=lambda t: t.name)
def tool(request):
    return request.param


def test_accepts_canonical_outputs(tool):
    rx = re.compile(char_regex(tool))
    for text in accepted(tool):
        assert rx.fullmatch(text), text
        jsonschema.validate(json.loads(text), tool_schema(tool))
        assert parse_call(tool, text).dumps() == text.strip()


@pytest.mark.parametrize("tool_name", [t.name for t in TOOLS])
def test_refuses_non_canonical_outputs(tool_name):
    tool = default_registry().tool(tool_name)
    rx = re.compile(char_regex(tool))
    admitted = [(why, text) for why, text in refused(tool) if rx.fullmatch(text)]
    assert admitted == []


def test_needed_chars_cover_outputs(tool):
    chars = needed_chars(tool)
    for text in accepted(tool):
        assert set(text.strip()) <= chars
    assert {"{", "}", '"', ":"} <= chars
