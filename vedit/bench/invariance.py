"""Batch and mode invariance on a real export: does an answer depend on how it was asked?

The reference for every intent is its own step-by-step answer, asked alone
(``Predictor.load(jump_forward=False)``, one request per call). Every other way of asking must give
the same raw text for every tool: alone with jump-forward, alone with drafts, all the intents in one
batch (jump-forward, drafts), and batches of mixed partners (the intents rotated so that each meets
other partners, at another position in its batch). At fp32 a differing answer is a broken guarantee
when jump-forward alone differs from step-by-step alone (the same rows, fewer calls); elsewhere, and
in quantized exports, a difference is the known effect of fp32 rounding that depends on the shape of
the call and can flip a near-tie between two tokens (docs/concepts/jump-forward.md). This module
measures how often that happens, per precision; ``vedit bench invariance`` prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from vedit.manifest import read_manifest

#: Batch size of the mixed-partner batches, and how many rotations of the intents are asked.
MIXED_BATCH = 8
ROTATIONS = 3

#: The mode whose difference from the reference is a broken guarantee at fp32.
STEP_GUARANTEE = "jump-forward, alone"


@dataclass(frozen=True)
class ModeResult:
    """How one way of asking compares with the reference, intent by intent."""

    mode: str
    total: int
    #: intent -> the tools whose raw text differed from the reference (registry order)
    differing: dict[str, list[str]] = field(default_factory=dict)
    #: intent -> where its texts first part, per differing tool: ``adjust.saturation`` (see :func:`first_field`)
    fields: dict[str, list[str]] = field(default_factory=dict)

    @property
    def identical(self) -> int:
        return self.total - len(self.differing)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "identical": self.identical, "total": self.total, "differing": self.differing,
                "fields": self.fields}


@dataclass(frozen=True)
class InvarianceReport:
    export: str
    family: str
    precision: str
    modes: list[ModeResult]

    @property
    def broken(self) -> bool:
        """A guarantee the tests hold is broken: at fp32, jump-forward alone differs from step-by-step alone."""
        return self.precision == "fp32" and any(m.differing for m in self.modes if m.mode == STEP_GUARANTEE)

    def lines(self, *, show: int = 4) -> list[str]:
        """A header and one line per mode: identical/N and the first ``show`` differing intents."""
        n = self.modes[0].total if self.modes else 0
        out = [f"{self.export} ({self.family} {self.precision}, {n} intents; reference: step-by-step, alone)",
               f"  {'mode':<38} {'identical':>9}  differing intents (where the text first differs)"]
        for m in self.modes:
            names = [f"{_short(i)} ({', '.join(m.fields.get(i) or tools)})" for i, tools in list(m.differing.items())[:show]]
            if len(m.differing) > show:
                names.append(f"... {len(m.differing) - show} more")
            out.append(f"  {m.mode:<38} {f'{m.identical}/{m.total}':>9}  {'; '.join(names) or '-'}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"export": self.export, "family": self.family, "precision": self.precision,
                "broken": self.broken, "modes": [m.to_json() for m in self.modes]}


def _short(intent: str, width: int = 28) -> str:
    text = intent if len(intent) <= width else intent[: width - 1] + "…"
    return repr(text)


def mixed_batches(n: int, batch: int = MIXED_BATCH, rotations: int = ROTATIONS) -> list[list[list[int]]]:
    """Index batches for each rotation: the order ``k, k+1, ..., n-1, 0, ..., k-1`` cut into batches of
    ``batch``, with shifts spread over a batch so an intent meets other partners at another position."""
    out = []
    for r in range(1, rotations + 1):
        shift = (r * max(1, batch) // (rotations + 1)) % max(1, n) if n else 0
        order = [(shift + i) % n for i in range(n)]
        out.append([order[i : i + batch] for i in range(0, n, batch)])
    return out


def first_field(tool: str, ref: str, got: str) -> str:
    """``tool.key``: the JSON member (the last key written) where ``got`` first departs from ``ref``;
    ``tool`` alone when they part before any key. A reader sees which value a near tie moved."""
    k = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
    keys = re.findall(r'"([^"\\]+)"\s*:', ref[:k])
    return f"{tool}.{keys[-1]}" if keys else tool


def _compare(mode: str, tools: Sequence[str], intents: Sequence[str], reference: list[dict[str, str]],
             answers: list[dict[str, str]], into: dict[str, ModeResult]) -> None:
    """Fold one pass of ``answers`` (raw text per tool, in intent order) into ``into[mode]``."""
    old = into.get(mode) or ModeResult(mode, len(intents))
    differing = {k: list(v) for k, v in old.differing.items()}
    fields = {k: list(v) for k, v in old.fields.items()}
    for intent, ref, got in zip(intents, reference, answers):
        bad = [t for t in tools if got.get(t) != ref.get(t)]
        if bad:
            differing[intent] = sorted(set(differing.get(intent, [])) | set(bad), key=list(tools).index)
            where = [first_field(t, ref[t], got.get(t) or "") for t in bad]
            fields[intent] = list(dict.fromkeys(fields.get(intent, []) + where))
    into[mode] = ModeResult(mode, len(intents), differing, fields)


def check(export_dir: str | Path, intents: Sequence[str], *, threads: int = 2,
          mixed_batch: int = MIXED_BATCH, rotations: int = ROTATIONS,
          progress: Callable[[str], None] | None = None) -> InvarianceReport:
    """Ask every intent in every mode on ``export_dir`` and compare with step-by-step alone.

    Duplicate intents are asked once (an intent is the unit the report names)."""
    from vedit.decoding import Predictor

    d = Path(export_dir)
    man = read_manifest(d)
    intents = list(dict.fromkeys(intents))
    n = max(1, len(intents))
    step = Predictor.load(d, threads=threads, jump_forward=False, batch_size=1)
    jf = Predictor.load(d, threads=threads, jump_forward=True, batch_size=n, draft=False)
    drafts = Predictor.load(d, threads=threads, jump_forward=True, draft=True, batch_size=n)
    tools = step.registry.tool_names

    def alone(p) -> list[dict[str, str]]:
        return [p.predict([i])[0].raw for i in intents]

    def batched(p, batches: list[list[int]]) -> list[dict[str, str]]:
        got: dict[int, dict[str, str]] = {}
        for idx in batches:
            for k, pred in zip(idx, p.predict([intents[k] for k in idx])):
                got[k] = pred.raw
        return [got[k] for k in range(len(intents))]

    reference = alone(step)
    results: dict[str, ModeResult] = {}
    passes: list[tuple[str, Callable[[], list[dict[str, str]]]]] = [
        (STEP_GUARANTEE, lambda: alone(jf)),
        ("drafts, alone", lambda: alone(drafts)),
        (f"jump-forward, one batch of {len(intents)}", lambda: batched(jf, [list(range(len(intents)))])),
        (f"drafts, one batch of {len(intents)}", lambda: batched(drafts, [list(range(len(intents)))])),
    ]
    for name, p in (("jump-forward", jf), ("drafts", drafts)):
        for rot in mixed_batches(len(intents), mixed_batch, rotations):
            passes.append((f"{name}, mixed batches of {mixed_batch} x{rotations}",
                           lambda p=p, rot=rot: batched(p, rot)))
    for mode, run in passes:
        if progress is not None:
            progress(f"{d.name}: {mode}")
        _compare(mode, tools, intents, reference, run(), results)
    return InvarianceReport(d.name, man.family, man.precision, list(results.values()))


__all__ = ["InvarianceReport", "ModeResult", "check", "first_field", "mixed_batches"]
