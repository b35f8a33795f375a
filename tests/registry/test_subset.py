"""The JSON Schema subset: refusals name the path and reason; what is admitted compiles exactly.

References are independent of vedit's compiler: hand-computed sets of decimal texts (Decimal),
brute-force enumeration of a small schema's canonical texts, and jsonschema on parsed answers.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from support import without_keyword

from vedit.decoding.language import char_regex
from vedit.errors import RegistryError, SchemaSubsetError
from vedit.registry import ToolCall, load_registry, registry_from_dict
from vedit.registry.schema import Validator, tool_schema
from vedit.registry.subset import samples

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools" / "video.json"


def _tools(parameters, **extra) -> list:
    return [{"type": "function", "function": {"name": "t", "description": "d", "parameters": parameters, **extra}}]


def _tool(parameters, **extra):
    return registry_from_dict(_tools(parameters, **extra)).tool("t")


@pytest.mark.parametrize(
    "schema,path,reason",
    [
        ({"type": "object", "properties": {"s": {"type": "string"}}}, "t/parameters/properties/s", "needs maxLength or pattern"),
        ({"type": "number", "minimum": 0, "maximum": 1}, "t/parameters", "needs multipleOf"),
        ({"type": "number", "multipleOf": 0.25, "minimum": 0, "maximum": 1}, "t/parameters", "power of ten"),
        ({"type": "integer", "minimum": 0}, "t/parameters", "both a minimum and a maximum"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "t/parameters", "range is empty"),
        ({"oneOf": [{"const": 1}]}, "t/parameters", "keyword 'oneOf'"),
        ({"$ref": "#/$defs/x"}, "t/parameters", "keyword '$ref'"),
        ({"type": ["string", "null"]}, "t/parameters", "one type name"),
        ({"type": "object", "properties": {}, "additionalProperties": True}, "t/parameters", "additionalProperties"),
        ({"type": "object", "properties": {"a": {"const": 1}}, "required": ["b"]}, "t/parameters", "'b'"),
        ({"type": "string", "pattern": "[a-z]+"}, "t/parameters", "anchored"),
        ({"type": "string", "pattern": "^.{1,3}$"}, "t/parameters", "'.'"),
        ({"type": "string", "pattern": "^[ -~]{1,5}$"}, "t/parameters", "holds a quote, backslash or control"),
        ({"type": "string", "pattern": "^\\s+$"}, "t/parameters", "space characters"),
        ({"type": "string", "pattern": '^a"b$'}, "t/parameters", "can write '\"'"),
        ({"type": "string", "pattern": "^a|b$"}, "t/parameters", "top-level '|'"),
        ({"type": "string", "pattern": "^(?=a)a$"}, "t/parameters", "(?...) groups"),
        ({"type": "string", "maxLength": 5, "format": "email"}, "t/parameters", "keyword 'format'"),
        ({"type": "array", "items": {"const": 1}}, "t/parameters", "maxItems"),
        ({"type": "array", "items": {"const": 1}, "maxItems": 3, "uniqueItems": True}, "t/parameters", "uniqueItems"),
        ({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "null"}}}}},
         "t/parameters/properties/a/properties/b", "type 'null'"),
        ({"anyOf": [{"const": 1}, {"type": "integer"}]}, "t/parameters/anyOf/1", "minimum and a maximum"),
    ],
)
def test_outside_the_subset_is_refused_with_path_and_reason(schema, path, reason, tmp_path):
    with pytest.raises(SchemaSubsetError) as err:
        _tool(schema)
    assert err.value.path == path and reason in err.value.reason
    # the same through a file, as the CLI loads it: one message naming both
    f = tmp_path / "tools.json"
    f.write_text(json.dumps(_tools(schema)))
    with pytest.raises(SchemaSubsetError, match=re.escape(path)):
        load_registry(f)


def test_malformed_files_are_refused(tmp_path):
    for bad, msg in [({"tools": 3}, "list of function"), ([{"name": "x"}], '"type": "function"'),
                     (_tools({"const": 1}) * 2, "defined twice"), ([], "no tools"),
                     (_tools({"const": 1}, **{"x-vedit-colour": 1}), "unknown extension")]:
        with pytest.raises(RegistryError, match=msg):
            registry_from_dict(bad)


def _decimal_texts(lo: Decimal, hi: Decimal, places: int) -> set[str]:
    step = Decimal(1).scaleb(-places)
    out, v = set(), lo
    while v <= hi:
        out.add(f"{v:.{places}f}")
        v += step
    return {("0" + t[1:] if t.startswith("-0") and Decimal(t) == 0 else t) for t in out}


@pytest.mark.parametrize("lo,hi,places", [("-1.5", "2.25", 2), ("0.25", "4", 2), ("-1", "-0.3", 1), ("-12.5", "130", 1),
                                          ("0", "0.05", 3)])
def test_numbers_with_decimals_are_exact(lo, hi, places):
    tool = _tool({"type": "number", "multipleOf": float(Decimal(1).scaleb(-places)), "minimum": float(lo), "maximum": float(hi)})
    rx = re.compile(char_regex(tool))
    want = _decimal_texts(Decimal(lo), Decimal(hi), places)
    span = Decimal(hi) - Decimal(lo) + 2
    candidates = _decimal_texts(Decimal(lo) - span, Decimal(hi) + span, places)
    candidates |= {t + "0" for t in want} | {t[:-1] for t in want} | {"-" + t for t in want} | {"0" + t for t in want}
    candidates |= {"-0." + "0" * places, "+" + next(iter(want)), str(int(Decimal(hi)))}
    admitted = {t for t in candidates if rx.fullmatch(t)}
    assert admitted == want
    for t in want:  # canonical text round-trips through the call
        assert ToolCall.of(tool, json.loads(t)).dumps() == t


def _small_schema():
    return {
        "type": "object",
        "properties": {
            "a": {"enum": ["x", "y"]},
            "b": {"type": "boolean"},
            "c": {"type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": 0, "maximum": 1}},
            "d": {"type": "integer", "minimum": -1, "maximum": 0},
        },
        "required": ["d"],
        "additionalProperties": False,
    }


def test_optional_properties_and_arrays_match_a_brute_force_enumeration():
    tool = _tool(_small_schema())
    rx = re.compile(char_regex(tool))
    arrays = [list(p) for k in range(3) for p in itertools.product([0, 1], repeat=k)]
    options = {"a": ["x", "y"], "b": [True, False], "c": arrays, "d": [-1, 0]}
    want = set()
    for present in itertools.product([False, True], repeat=3):
        keys = [k for k, on in zip("abc", present) if on] + ["d"]
        for vals in itertools.product(*(options[k] for k in keys)):
            want.add(json.dumps(dict(zip(keys, vals)), separators=(",", ":")))
    # wrong orders, missing required, too long arrays, empty object: all refused
    wrong = {'{"b":true,"a":"x","d":0}', '{"a":"x"}', '{"c":[0,0,0],"d":0}', "{}", '{"d":0,}', '{,"d":0}'}
    assert {t for t in want | wrong if rx.fullmatch(t)} == want
    validator = jsonschema.Draft202012Validator(_small_schema())
    assert all(validator.is_valid(json.loads(t)) for t in want)


def test_example_tools_file_answers_validate_with_jsonschema():
    registry = load_registry(EXAMPLE)
    assert registry.tool_names == ("speed", "caption", "vignette")
    for tool in registry.tools:
        rx = re.compile(char_regex(tool))
        schema = tool_schema(tool)
        plain = jsonschema.Draft202012Validator(without_keyword(schema, "multipleOf"))
        for value in samples(tool.language, random.Random(7), 60) + [tool.unused]:
            text = ToolCall.of(tool, value).dumps()
            assert rx.fullmatch(text) and rx.fullmatch(" " + text), text
            assert Validator(schema).is_valid(json.loads(text)), text
            # plain jsonschema agrees but for its binary-float multipleOf (decimals: test above)
            assert plain.is_valid(json.loads(text)), text
    caption = registry.tool("caption")
    for bad in ['{"text":"","position":"top"}', '{"text":"' + "x" * 25 + '","position":"top"}',
                '{"text":"a\\"b","position":"top"}', '{"text":"hi","position":"top","color":"#12345g"}',
                '{"position":"top","text":"hi"}', '"None"']:
        assert not re.fullmatch(char_regex(caption), bad), bad


def test_exact_multiple_of_where_plain_jsonschema_errs():
    tool = _tool({"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 1})
    assert not jsonschema.Draft202012Validator({"multipleOf": 0.01}).is_valid(0.07)  # the float problem
    assert Validator(tool_schema(tool)).is_valid(0.07) and not Validator(tool_schema(tool)).is_valid(0.071)


def test_unused_answer_and_idle_schema_decide_used():
    registry = load_registry(EXAMPLE)
    caption = registry.tool("caption")
    assert ToolCall.unused(caption).dumps() == '"none"' and not ToolCall.unused(caption).used
    assert ToolCall.of(caption, {"text": "hi", "position": "top"}).used
    tool = _tool({"type": "object", "properties": {"k": {"type": "integer", "minimum": 0, "maximum": 9}}},
                 **{"x-vedit-unused": {}, "x-vedit-idle": {"type": "object", "additionalProperties": {"const": 0}}})
    assert [ToolCall.of(tool, v).used for v in ({}, {"k": 0}, {"k": 3})] == [False, False, True]


def test_patterns_compile_exactly():
    """Samples of anchored patterns match both Python's re and the grammar; near misses do not."""
    tool = _tool({"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "tag": {"type": "string", "pattern": "^(?:red|green)(?:_[a-z0-9]+)?$"}}, "required": ["code", "tag"]})
    rx = re.compile(char_regex(tool))
    for value in samples(tool.language, random.Random(5), 30):
        assert re.fullmatch("[A-Z]{3}-[0-9]{4}", value["code"]) and re.fullmatch("(?:red|green)(?:_[a-z0-9]+)?", value["tag"])
        assert rx.fullmatch(ToolCall.of(tool, value).dumps())
    for code, tag in [("AB-1234", "red"), ("ABC-12345", "red"), ("ABC-1234", "blue"), ("ABC-1234", "red_"),
                      ("abc-1234", "green")]:
        assert not rx.fullmatch(json.dumps({"code": code, "tag": tag}, separators=(",", ":")))
