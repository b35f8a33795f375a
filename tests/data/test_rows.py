"""The JSONL loaders: valid rows round-trip, bad rows are all reported with 1-based line numbers."""

from __future__ import annotations

import json
import random

import pytest

from vedit.data.rows import TruthRow, prediction_row, read_predictions, read_truth, write_jsonl
from vedit.errors import DatasetError
from vedit.registry import ToolCall
from vedit.registry.subset import samples


@pytest.fixture()
def good_row(registry) -> dict:
    """One valid truth row built from the registry (no parameter names spelt out here)."""
    row = {"intent": "golden hour", "calls": 3}
    for tool in registry.tools:
        call = ToolCall.of(tool, samples(tool.parameters, random.Random(0), 0)[1])  # every maximum
        row[tool.name] = call.as_value()
    return row


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_round_trip(tmp_path, registry, good_row):
    rows = read_truth(_write(tmp_path / "t.jsonl", [json.dumps(good_row)]), registry)
    assert len(rows) == 1 and isinstance(rows[0], TruthRow)
    assert rows[0].intent == "golden hour" and rows[0].calls == 3
    assert list(rows[0].calls_by_tool) == list(registry.tool_names)
    out = write_jsonl(tmp_path / "again.jsonl", rows)
    assert json.loads(out.read_text(encoding="utf-8")) == good_row
    assert read_truth(out) == rows


def test_calls_may_be_left_out(tmp_path, registry, good_row):
    """A team's own examples (intent + answers, as for --check-examples) are a truth file as they are."""
    row = {k: v for k, v in good_row.items() if k != "calls"}
    (got,) = read_truth(_write(tmp_path / "t.jsonl", [json.dumps(row)]), registry)
    assert got.calls == 1 and got.intent == good_row["intent"]


def test_bad_rows_reported_with_line_numbers(tmp_path, registry, good_row):
    flat = next(t for t in registry.tools if not t.categories)
    preset = next(t for t in registry.tools if t.categories)
    first_param = flat.slot_params[0].name

    def variant(**changes):
        r = {**good_row, **changes}
        return json.dumps({k: v for k, v in r.items() if v is not ...}, ensure_ascii=False)

    lines = [
        variant(intent="ok 1"),  # 1 fine
        '{"intent": "broken", "calls": 1,',  # 2 bad JSON
        variant(intent="ok 3", **{flat.name: {**good_row[flat.name], first_param: flat.slot_params[0].max + 1}}),  # 3
        variant(intent="ok 4", **{preset.name: ...}),  # 4 missing key
        variant(intent="ok 5", calls=0),  # 5 calls < 1
        "",  # 6 blank: skipped
        variant(intent="ok 1"),  # 7 duplicate of line 1
        variant(intent="ok 8", **{preset.name: {**good_row[preset.name], "name": "no_such_lut"}}),  # 8
        "[1, 2]",  # 9 not an object
        variant(intent="  "),  # 10 empty intent
        variant(intent="ok 11", extra=1),  # 11 unknown key
        variant(intent="ok 12", calls=True),  # 12 bool is not a count
    ]
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DatasetError) as info:
        read_truth(path, registry)
    problems = dict(info.value.problems)
    assert sorted(problems) == [2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    assert "not valid JSON" in problems[2]
    assert first_param in problems[3] and "maximum" in problems[3]
    assert repr(preset.name) in problems[4] and "missing" in problems[4]
    assert "calls" in problems[5]
    assert "duplicate intent" in problems[7] and "line 1" in problems[7]
    assert "no_such_lut" in problems[8]
    assert "JSON object" in problems[9]
    assert "intent" in problems[10]
    assert "extra" in problems[11]
    assert "calls" in problems[12]
    # the one-line message names the file and the first lines
    assert str(path) in str(info.value) and "line 2:" in str(info.value) and "(+5 more)" in str(info.value)


def test_not_utf8_line(tmp_path, good_row):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(good_row).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DatasetError) as info:
        read_truth(path)
    assert info.value.problems[0][0] == 2 and "UTF-8" in info.value.problems[0][1]


def test_empty_truth_file_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="empty"):
        read_truth(_write(tmp_path / "t.jsonl", [""]))


def test_predictions_keep_raw_text(tmp_path, registry, good_row):
    names = registry.tool_names
    rows = [
        {"intent": "a", **{n: good_row[n] for n in names}, "latency_ms": 12},  # extra keys ignored
        {"intent": "b", names[0]: "Parameters: {oops", names[1]: None, names[2]: "{}"},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    preds = read_predictions(path, registry)
    assert preds["a"] == {n: good_row[n] for n in names}
    assert preds["b"] == {names[0]: "Parameters: {oops", names[1]: None, names[2]: "{}"}


def test_bad_prediction_rows(tmp_path, registry):
    names = registry.tool_names
    lines = [
        json.dumps({"intent": "a", **{n: None for n in names}}),
        json.dumps({"intent": "b", **{n: 7 for n in names}}),  # numbers are not outputs
        json.dumps({"intent": "c", names[0]: "{}"}),  # missing tools
        json.dumps({"intent": "a", **{n: None for n in names}}),  # duplicate
    ]
    with pytest.raises(DatasetError) as info:
        read_predictions(_write(tmp_path / "p.jsonl", lines), registry)
    problems = dict(info.value.problems)
    assert sorted(problems) == [2, 3, 4]
    assert "object, text or null" in problems[2]
    assert all(repr(n) in problems[3] for n in names[1:])
    assert "duplicate" in problems[4]


def test_prediction_row_serialises_calls(registry):
    tool = registry.tools[0]
    row = prediction_row("x", {tool.name: ToolCall.unused(tool), "other": "raw"})
    assert row == {"intent": "x", tool.name: {}, "other": "raw"}


def test_write_jsonl_is_atomic(tmp_path):
    target = write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    with pytest.raises(TypeError):
        write_jsonl(target, [{"a": 2}, {"b": object()}])
    # the old file is intact and no temp file is left behind
    assert target.read_text(encoding="utf-8") == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    write_jsonl(target, [{"intent": "😈"}])
    assert target.read_text(encoding="utf-8") == '{"intent": "😈"}\n'
