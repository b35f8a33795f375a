"""The registry against the paper's facts, and the parser against hand-written tables."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from vedit.errors import RegistryError, ToolCallError
from vedit.registry import ToolCall, load_registry, parse_call
from vedit.registry.schema import tool_schema
from vedit.registry.subset import samples

GOLDEN_HOUR_ADJUST = (
    '{"exposure": 0, "contrast": 10, "brightness": 10, "highlights": 20, "shadows": -10, '
    '"saturation": 15, "vibrance": 15, "temperature": 30, "tint": 10, "hue": 0, "bloom": 0, '
    '"sharpen": 0, "structure": 0, "linearOffset": 0}'
)
GOLDEN_HOUR_SELECTIVE = (
    '{"red": {"saturation": 20, "luminance": 10}, "orange": {"saturation": 30, "luminance": 20}, '
    '"yellow": {"saturation": 40, "luminance": 30}, "green": {"saturation": -20, "luminance": 0}, '
    '"cyan": {"saturation": -20, "luminance": 0}, "blue": {"saturation": 0, "luminance": 0}}'
)


def test_paper_tools_and_ranges(registry):
    assert registry.tool_names == ("adjust", "selective_adjust", "filter")
    adjust = registry.tool("adjust")
    assert [p.name for p in adjust.slot_params][:3] == ["exposure", "contrast", "brightness"]
    assert len(adjust.slot_params) == 14
    ranges = {p.name: (p.min, p.max) for p in adjust.slot_params}
    assert ranges["hue"] == (0, 360) and ranges["bloom"] == (0, 100) and ranges["tint"] == (-100, 100)
    sel = registry.tool("selective_adjust")
    assert len(sel.slots) == 12 and sel.slots[:3] == (("red", "saturation"), ("red", "luminance"), ("orange", "saturation"))
    filt = registry.tool("filter")
    presets = filt.choices(("name",))
    assert presets[0] == "none" and "night_vision" in presets and len(presets) == 34
    assert [p.path for p in filt.slot_params] == [("intensity",)] and filt.categories == (("name",),)


def test_golden_hour_round_trip(registry):
    a = parse_call(registry.tool("adjust"), " " + GOLDEN_HOUR_ADJUST)
    assert a.values == (0, 10, 10, 20, -10, 15, 15, 30, 10, 0, 0, 0, 0, 0) and a.used
    assert json.loads(a.dumps()) == json.loads(GOLDEN_HOUR_ADJUST)
    assert " " not in a.dumps()
    s = parse_call(registry.tool("selective_adjust"), GOLDEN_HOUR_SELECTIVE)
    assert s.values[:6] == (20, 10, 30, 20, 40, 30) and s.used
    f = parse_call(registry.tool("filter"), 'Parameters: {"name": "faded_HighNoon", "intensity": 40}')
    assert (f.category, f.values, f.used) == (("faded_HighNoon",), (40,), True)


@pytest.mark.parametrize(
    "tool,text,used",
    [
        ("adjust", "{}", False),
        ("selective_adjust", "{}", False),
        ("filter", '{"name":"none","intensity":0}', False),
        ("filter", '{"name":"none","intensity":55}', False),
        ("adjust", GOLDEN_HOUR_ADJUST.replace("10", "0").replace("20", "0").replace("-0", "0")
         .replace("15", "0").replace("30", "0"), False),
    ],
)
def test_not_used_forms(registry, tool, text, used):
    assert parse_call(registry.tool(tool), text).used is used


@pytest.mark.parametrize(
    "tool,text,fragment",
    [
        ("adjust", "", "empty output"),
        ("adjust", "not json", "not valid JSON"),
        ("adjust", GOLDEN_HOUR_ADJUST.replace('"exposure": 0', '"exposure": 250'), "250 is greater than the maximum of 100"),
        ("adjust", GOLDEN_HOUR_ADJUST.replace('"hue": 0', '"hue": -1'), "hue: -1 is less than the minimum of 0"),
        ("adjust", GOLDEN_HOUR_ADJUST.replace('"tint": 10', '"tint": 1.5'), "tint: 1.5 is not of type 'integer'"),
        ("adjust", GOLDEN_HOUR_ADJUST.replace('"tint": 10, ', ""), "'tint' is a required property"),
        ("adjust", '{"exposure": NaN}', "NaN is not allowed"),
        ("selective_adjust", GOLDEN_HOUR_SELECTIVE.replace('"luminance": 30', '"luminance": -101'), "yellow/luminance: -101"),
        ("filter", '{"name": "vivd", "intensity": 40}', "'vivd' is not one of the filter choices"),
        ("filter", '{"name": "vivid", "intensity": 101}', "intensity: 101 is greater than the maximum of 100"),
        ("filter", '{"name": "vivid"}', "'intensity' is a required property"),
        ("filter", '["vivid", 3]', "is not of type 'object'"),
    ],
)
def test_parser_errors_are_precise(registry, tool, text, fragment):
    with pytest.raises(ToolCallError) as err:
        parse_call(registry.tool(tool), text)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"{tool}: ")


def test_integral_float_is_accepted_as_int(registry):
    call = parse_call(registry.tool("filter"), '{"name": "vivid", "intensity": 40.0}')
    assert call.values == (40,) and isinstance(call.values[0], int)


def test_canonical_output_validates_against_schema(registry):
    for tool in registry.tools:
        extreme = ToolCall.of(tool, samples(tool.parameters, random.Random(0), 0)[0])  # every minimum
        jsonschema.validate(json.loads(extreme.dumps()), tool_schema(tool))
        jsonschema.validate(json.loads(ToolCall.unused(tool).dumps()), tool_schema(tool))
        assert parse_call(tool, extreme.dumps()) == extreme


def test_prompts_are_concise_and_family_specific(registry):
    t5 = registry.prompt("filter", "golden hour", "t5")
    llama = registry.prompt("filter", "golden hour", "llama")
    assert t5.endswith("golden hour") and len(t5) < 80  # concise: latency first, no rationale
    assert llama.startswith("[INST] ") and llama.endswith(" [/INST]") and t5 in llama
    assert registry.prompt("adjust", "a {b} c").endswith("a {b} c")  # intents are not templates
    assert len(registry.prompts("x")) == 3
    with pytest.raises(RegistryError, match="known: t5, llama"):
        registry.prompt("adjust", "x", "gpt")  # type: ignore[arg-type]


def test_snapshot_round_trip(registry, tmp_path):
    path = tmp_path / "registry.json"
    registry.save(path)
    again = load_registry(path)
    assert again.tools == registry.tools
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        load_registry(tmp_path / "bad.json")
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "missing.json")
    with pytest.raises(RegistryError, match="unknown tool 'blur'"):
        registry.tool("blur")
