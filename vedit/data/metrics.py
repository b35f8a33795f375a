"""The paper's offline metrics: tool selection, quality, final score, overall, per subset.

Per tool, over the rows of a subset:

- *used*: :attr:`ToolCall.used`: not the tool's ``x-vedit-unused`` answer nor an ``x-vedit-idle``
  one (the paper's adjust / selective_adjust: some value is non-zero; filter: the preset is not
  ``"none"``). An output that does not parse or breaks the schema is "not used".
- *selection*: F1 of precision ``TP / (TP + FP)`` and recall ``TP / (TP + FN)``, positive = used.
- *quality*: mean over rows where truth and prediction both use the tool; for a tool whose
  schema has categorical leaves (enums, booleans, strings: the filter's preset) 1 when they all
  match, else 0; otherwise the cosine similarity of the numeric leaves (schema order). Dispatch is
  on the schema's leaves, never on tool names.
- *final*: harmonic mean of selection and quality; *overall*: mean of the tools' finals.

Any ratio with an empty denominator is 0 (so is the harmonic mean of 0 and 0).

Rows are matched by intent. A truth intent with no prediction counts as a prediction that uses
no tool (a predictor that skips rows must not look better for it); a tool missing from a
prediction entry likewise counts as not used. Predictions for intents absent from the truth are
ignored (scoring a test split with predictions made for a larger set is common and harmless).

Subsets: ``All`` (every row), ``r_3`` and ``r_5`` (rows whose intent was requested at least 3 /
5 times, the truth's ``calls``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

from vedit.data.rows import SUBSETS, TruthRow, read_predictions, read_truth
from vedit.errors import DatasetError, ToolCallError
from vedit.registry import Registry, Tool, ToolCall, call_from_value, default_registry, parse_call, subset

#: One tool's prediction as callers may hand it over: a call, a parsed JSON value, raw text, or
#: None for "no usable output".
Prediction = Union[ToolCall, Mapping, str, None]


@dataclass(frozen=True)
class ToolScore:
    precision: float
    recall: float
    selection: float
    quality: float
    final: float


@dataclass(frozen=True)
class SubsetScore:
    tools: dict[str, ToolScore]
    overall: float
    n: int

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: asdict(s) for name, s in self.tools.items()}
        out["overall"] = self.overall
        out["n"] = self.n
        return out


@dataclass(frozen=True)
class Report:
    subsets: dict[str, SubsetScore]

    def to_json(self) -> dict[str, Any]:
        """``{"All": {"<tool>": {precision, recall, selection, quality, final}, ..., "overall",
        "n"}, "r_3": {...}, "r_5": {...}}``."""
        return {name: s.to_json() for name, s in self.subsets.items()}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Report":
        subsets = {}
        for name, sub in value.items():
            tools = {k: ToolScore(**v) for k, v in sub.items() if k not in ("overall", "n")}
            subsets[name] = SubsetScore(tools=tools, overall=sub["overall"], n=sub["n"])
        return cls(subsets=subsets)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def harmonic_mean(a: float, b: float) -> float:
    return _ratio(2 * a * b, a + b)


def cosine(u: Sequence[int], v: Sequence[int]) -> float:
    """Cosine similarity; 0 when either vector is all zeros."""
    dot = sum(x * y for x, y in zip(u, v, strict=True))
    return _ratio(dot, math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))


def normalise(tool: Tool, value: Prediction) -> ToolCall | None:
    """Turn any accepted prediction form into a ToolCall, or None if it is not a valid call."""
    if value is None:
        return None
    if isinstance(value, ToolCall):
        if value.tool.name != tool.name:
            raise ValueError(f"a {value.tool.name} call was given as the prediction of {tool.name}")
        return value
    try:
        if isinstance(value, str):
            return parse_call(tool, value)
        return call_from_value(tool, value)
    except ToolCallError:
        return None


def quality(truth: ToolCall, pred: ToolCall) -> float:
    """Quality of one prediction that uses the tool, as the paper defines it (see module docstring)."""
    if truth.tool.categories:
        return 1.0 if truth.category == pred.category else 0.0
    return cosine(truth.vector, pred.vector)


def score_tool(pairs: Sequence[tuple[ToolCall, ToolCall | None]]) -> ToolScore:
    """Score one tool over ``(truth, prediction)`` pairs; ``None`` predictions are "not used"."""
    tp = fp = fn = 0
    qualities: list[float] = []
    for truth, pred in pairs:
        t_used = truth.used
        p_used = pred is not None and pred.used
        if t_used and p_used:
            tp += 1
            qualities.append(quality(truth, pred))  # type: ignore[arg-type]
        elif p_used:
            fp += 1
        elif t_used:
            fn += 1
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    selection = harmonic_mean(precision, recall)
    q = _ratio(sum(qualities), len(qualities))
    return ToolScore(precision, recall, selection, q, harmonic_mean(selection, q))


def _check_truth(truth: Sequence[TruthRow], registry: Registry) -> None:
    problems = []
    seen: set[str] = set()
    for i, row in enumerate(truth, start=1):
        missing = [n for n in registry.tool_names if n not in row.calls_by_tool]
        if missing:
            problems.append((i, f"{row.intent!r}: no truth for tool(s) {', '.join(missing)}"))
        if row.intent in seen:
            problems.append((i, f"duplicate intent {row.intent!r}"))
        seen.add(row.intent)
    if problems:
        raise DatasetError("truth rows", problems)


def score(
    truth: Sequence[TruthRow],
    predictions: Mapping[str, Mapping[str, Prediction]],
    registry: Registry | None = None,
) -> Report:
    """Score predictions (``intent -> {tool name: prediction}``) against truth rows."""
    registry = registry or default_registry()
    _check_truth(truth, registry)
    normalised = {}
    for row in truth:
        entry = predictions.get(row.intent) or {}
        normalised[row.intent] = {t.name: normalise(t, entry.get(t.name)) for t in registry.tools}
    subsets = {}
    for name, min_calls in SUBSETS.items():
        rows = [r for r in truth if r.calls >= min_calls]
        tools = {
            tool.name: score_tool(
                [(r.calls_by_tool[tool.name], normalised[r.intent][tool.name]) for r in rows]
            )
            for tool in registry.tools
        }
        overall = _ratio(sum(t.final for t in tools.values()), len(tools))
        subsets[name] = SubsetScore(tools=tools, overall=overall, n=len(rows))
    return Report(subsets=subsets)


def score_files(
    truth_path: str | Path, predictions_path: str | Path, registry: Registry | None = None
) -> Report:
    """Score a prediction JSONL file against a truth JSONL file (both validated first)."""
    registry = registry or default_registry()
    return score(read_truth(truth_path, registry), read_predictions(predictions_path, registry), registry)


#: Numbers agree when they differ by at most this fraction of their range.
TOLERANCE = 0.01


@dataclass(frozen=True)
class Agreement:
    """Answers of one tool against expected ones, for any tools file: validity (jsonschema), whole
    answers alike, and per parameter (each leaf at a fixed path of the schema)."""

    n: int
    valid: float  # share of answers that are valid calls
    agreement: float  # share of answers equal to the expected answer
    parameters: dict[str, float]  # "path/to/leaf" -> share that agree (see :func:`agreement`)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _leaf_agrees(tool: Tool, path: tuple[str, ...], a: ToolCall, b: ToolCall, tolerance: float) -> bool:
    x, y = subset.at(a.value, path), subset.at(b.value, path)
    if x is None or y is None or isinstance(x, bool) or isinstance(y, bool) or not all(
            isinstance(v, (int, float)) for v in (x, y)):
        return x == y and type(x) is type(y)  # enums, booleans, strings, absent: exactly
    p = next(q for q in tool.slot_params if q.path == path)
    return abs(x - y) <= tolerance * (p.max - p.min)


def agreement(tool: Tool, pairs: Sequence[tuple[Prediction, ToolCall]], tolerance: float = TOLERANCE) -> Agreement:
    """Score ``(answer, expected)`` pairs of one tool: an answer that is not a valid call agrees on
    nothing; enums, booleans and strings agree exactly, numbers within ``tolerance`` of their range;
    a leaf absent from both agrees (an optional property left out by both)."""
    calls = [(normalise(tool, got), want) for got, want in pairs]
    paths = [*tool.slots, *tool.categories]
    per = {"/".join(p): _ratio(sum(g is not None and _leaf_agrees(tool, p, g, w, tolerance) for g, w in calls),
                               len(calls)) for p in paths}
    return Agreement(
        n=len(calls),
        valid=_ratio(sum(g is not None for g, _ in calls), len(calls)),
        agreement=_ratio(sum(g is not None and g == w for g, w in calls), len(calls)),
        parameters=per,
    )


def format_table(report: Report, digits: int = 2) -> str:
    """The paper's table: per subset, each tool's (selection, quality, final), then overall."""
    subsets = list(report.subsets.items())
    tool_names = list(subsets[0][1].tools) if subsets else []
    header = ["test", "n", *[f"{t} (sel, qual, final)" for t in tool_names], "overall"]
    body = []
    for name, sub in subsets:
        cells = [name, str(sub.n)]
        for t in tool_names:
            s = sub.tools[t]
            cells.append(f"({s.selection:.{digits}f}, {s.quality:.{digits}f}, {s.final:.{digits}f})")
        cells.append(f"{sub.overall:.{digits}f}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


__all__ = [
    "Agreement",
    "Prediction",
    "TOLERANCE",
    "agreement",
    "Report",
    "SUBSETS",
    "SubsetScore",
    "ToolScore",
    "cosine",
    "format_table",
    "harmonic_mean",
    "normalise",
    "quality",
    "score",
    "score_files",
    "score_tool",
]
