"""``--check-examples FILE.jsonl``: how often the export answers as the student's own training data
says it should, the honest way to know the prompt is the one the student was trained on.

Each line is ``{"intent": "...", "<tool>": <expected answer>, ...}`` with answers for some or all
tools (the format of ``vedit bench metrics`` prediction rows). The file is read and every answer
checked against the tools before any export work; after the export, the exported model answers
every intent (constrained, in-process) and the agreement per tool and per parameter goes into the
manifest and the export's summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vedit.data.metrics import agreement
from vedit.errors import DatasetError, ToolCallError
from vedit.registry import Registry, ToolCall, call_from_value


@dataclass(frozen=True)
class Example:
    intent: str
    answers: dict[str, ToolCall]  # the tools the line gives, registry order


def read_examples(path: str | Path, registry: Registry) -> list[Example]:
    """Read and check every line (all problems reported at once, with line numbers)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(str(p), [(0, f"cannot read the file ({exc.strerror})")]) from None
    out, problems = [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((n, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("intent"), str):
            problems.append((n, 'expected {"intent": "...", "<tool>": answer, ...}'))
            continue
        unknown = sorted(set(row) - {"intent", *registry.tool_names})
        if unknown:
            problems.append((n, f"unknown tool {unknown[0]!r}; known: {', '.join(registry.tool_names)}"))
            continue
        answers = {}
        for tool in registry.tools:
            if tool.name in row:
                try:
                    answers[tool.name] = call_from_value(tool, row[tool.name])
                except ToolCallError as exc:
                    problems.append((n, str(exc)))
        if not set(row) & set(registry.tool_names):
            problems.append((n, "no expected answer for any tool"))
        out.append(Example(row["intent"], answers))
    if problems:
        raise DatasetError(str(p), problems)
    if not out:
        raise DatasetError(str(p), [(0, "no examples")])
    return out


def check_examples(export_dir: Path, path: str | Path, examples: list[Example], registry: Registry) -> dict:
    """Answer every example's intent with the export and score the answers against the expected ones."""
    from vedit.decoding import Predictor

    predictor = Predictor.load(export_dir)
    answers = predictor.predict([e.intent for e in examples])
    tools = {}
    for tool in registry.tools:
        pairs = [(a.calls.get(tool.name), e.answers[tool.name]) for a, e in zip(answers, examples) if tool.name in e.answers]
        if pairs:
            tools[tool.name] = agreement(tool, pairs).to_json()
    n = sum(t["n"] for t in tools.values())
    overall = sum(t["agreement"] * t["n"] for t in tools.values()) / n if n else 0.0
    return {"file": str(path), "n": n, "agreement": overall, "tools": tools}


__all__ = ["Example", "check_examples", "read_examples"]
