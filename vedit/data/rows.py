"""The JSONL dataset format: truth rows, prediction rows, and their validating loaders.

Truth row (one intent, the ground-truth call of every registry tool)::

    {"intent": "golden hour", "calls": 12, "adjust": {...}, "selective_adjust": {}, "filter": {...}}

``calls`` is how many times users asked for the intent; the metric subsets r_3 / r_5 keep rows
with ``calls >= 3`` / ``>= 5``. It may be left out (counted as 1): a team with its own tools has
intents and answers but no request counts, and its ``--check-examples`` file is then a truth file. Each tool value is the canonical JSON value of a
:class:`~vedit.registry.ToolCall` and must satisfy the registry's schema.

Prediction row (a model's answer for one intent)::

    {"intent": "golden hour", "adjust": {...} | "raw model text" | null, ...}

Tool values may be parsed objects or the model's raw text; both are kept as they are and judged by
the metrics (text that does not parse, or breaks the schema, counts as "tool not used"), because
an unparseable output is a model error to be scored, not a broken file.

Loaders collect every problem with its 1-based line number and raise one
:class:`~vedit.errors.DatasetError`, so a user fixes a file in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from vedit.atomicio import atomic_open
from vedit.errors import DatasetError, ToolCallError
from vedit.registry import Registry, ToolCall, call_from_value, default_registry

#: What a prediction file may hold for one tool: a parsed object, raw model text, or null.
RawOutput = Union[dict, str, None]

#: The paper's test subsets: name -> minimum ``calls`` (times the intent was requested) of a row.
#: ``All`` is every row (valid rows have ``calls >= 1``).
SUBSETS: dict[str, int] = {"All": 1, "r_3": 3, "r_5": 5}


@dataclass(frozen=True)
class TruthRow:
    """One intent with its popularity and the ground-truth call of every tool."""

    intent: str
    calls: int
    calls_by_tool: dict[str, ToolCall]

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"intent": self.intent, "calls": self.calls}
        row.update({name: call.as_value() for name, call in self.calls_by_tool.items()})
        return row


def _lines(path: Path) -> Iterable[tuple[int, bytes]]:
    """Non-blank lines with 1-based numbers (FileNotFoundError is left to the caller)."""
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if raw.strip():
            yield n, raw


def _object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _intent(row: dict[str, Any], seen: dict[str, int], n: int) -> str:
    intent = row.get("intent")
    if not isinstance(intent, str) or not intent.strip():
        raise ValueError("'intent' must be a non-empty string")
    if intent in seen:
        raise ValueError(f"duplicate intent {intent!r} (first at line {seen[intent]})")
    seen[intent] = n
    return intent


def _missing(row: dict[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"missing key(s): {', '.join(repr(k) for k in missing)}")


def parse_truth_row(row: dict[str, Any], registry: Registry) -> TruthRow:
    """Validate one decoded truth row against the registry; ValueError says what is wrong."""
    expected = ("intent", "calls", *registry.tool_names)
    _missing(row, [k for k in expected if k != "calls"])
    unknown = [k for k in row if k not in expected]
    if unknown:
        raise ValueError(
            f"unknown key(s): {', '.join(repr(k) for k in unknown)}; expected {', '.join(expected)}"
        )
    calls = row.get("calls", 1)
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"'calls' must be an integer >= 1, got {calls!r}")
    by_tool = {}
    for tool in registry.tools:
        try:
            by_tool[tool.name] = call_from_value(tool, row[tool.name])
        except ToolCallError as exc:
            raise ValueError(str(exc)) from None
    return TruthRow(intent=row["intent"], calls=calls, calls_by_tool=by_tool)


def read_truth(path: str | Path, registry: Registry | None = None) -> list[TruthRow]:
    """Load and validate a truth file; every bad row is reported at once."""
    registry = registry or default_registry()
    path = Path(path)
    rows: list[TruthRow] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, line in _lines(path):
        try:
            row = _object(line)
            _intent(row, seen, n)
            rows.append(parse_truth_row(row, registry))
        except ValueError as exc:
            problems.append((n, str(exc)))
    if problems:
        raise DatasetError(str(path), problems)
    if not rows:
        raise DatasetError(str(path), [(1, "empty file: expected one JSON object per line")])
    return rows


def read_intents(path: str | Path, n: int | None = None) -> list[str]:
    """The first ``n`` distinct intents of a JSONL file whose rows carry an ``intent`` string (a
    truth file, a prediction file, or a plain list); other keys are not read. Bad rows up to the
    ``n``-th intent are reported at once."""
    path = Path(path)
    intents: dict[str, None] = {}
    problems: list[tuple[int, str]] = []
    try:
        for k, line in _lines(path):
            if n is not None and len(intents) >= n:
                break
            try:
                intent = _object(line).get("intent")
                if not isinstance(intent, str):
                    raise ValueError("'intent' must be a string")
                intents[intent] = None
            except ValueError as exc:
                problems.append((k, str(exc)))
    except OSError as exc:
        raise DatasetError(str(path), [(0, f"cannot read the file ({exc.strerror})")]) from None
    if problems:
        raise DatasetError(str(path), problems)
    if not intents:
        raise DatasetError(str(path), [(1, 'empty file: expected one JSON object with an "intent" per line')])
    return list(intents)


def read_predictions(
    path: str | Path, registry: Registry | None = None
) -> dict[str, dict[str, RawOutput]]:
    """Load a prediction file as ``intent -> {tool name: object | raw text | None}``.

    Every registry tool must be present in every row (use ``null`` for "no output"); other keys
    (e.g. ``latency_ms``) are ignored so predictors may carry their own bookkeeping. Values are
    not parsed here: the metrics decide what an unparseable output is worth.
    """
    registry = registry or default_registry()
    path = Path(path)
    out: dict[str, dict[str, RawOutput]] = {}
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, line in _lines(path):
        try:
            row = _object(line)
            intent = _intent(row, seen, n)
            _missing(row, registry.tool_names)
            bad = [
                f"{name!r} is {type(row[name]).__name__}"
                for name in registry.tool_names
                if row[name] is not None and not isinstance(row[name], (dict, str))
            ]
            if bad:
                raise ValueError(f"tool outputs must be an object, text or null: {'; '.join(bad)}")
            out[intent] = {name: row[name] for name in registry.tool_names}
        except ValueError as exc:
            problems.append((n, str(exc)))
    if problems:
        raise DatasetError(str(path), problems)
    return out


def prediction_row(intent: str, outputs: Mapping[str, ToolCall | RawOutput]) -> dict[str, Any]:
    """One prediction row; ToolCalls are written as their canonical JSON value."""
    row: dict[str, Any] = {"intent": intent}
    for name, value in outputs.items():
        row[name] = value.as_value() if isinstance(value, ToolCall) else value
    return row


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any] | TruthRow]) -> Path:
    """Write rows (dicts or :class:`TruthRow`) as UTF-8 JSONL, atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        for row in rows:
            value = row.to_json() if isinstance(row, TruthRow) else dict(row)
            f.write(json.dumps(value, ensure_ascii=False) + "\n")
    return Path(path)


__all__ = [
    "RawOutput",
    "SUBSETS",
    "TruthRow",
    "atomic_open",
    "parse_truth_row",
    "prediction_row",
    "read_intents",
    "read_predictions",
    "read_truth",
    "write_jsonl",
]
