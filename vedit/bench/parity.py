"""Metric parity: does an export answer like the PyTorch model it came from?

Three sides run on the same intents:
- ``pytorch``: the original with plain greedy ``generate`` (what the paper served);
- ``pytorch+grammar``: the original with the export's grammar as a logits processor;
- ``candidate``: the export in-process (an export dir) or behind a Triton server (a URL).
The gate compares like with like, the constrained original against the candidate: the overall
score (All) may not move by more than ``max_overall_delta`` and at least ``min_agreement`` of the
tool outputs must be identical. The unconstrained original is reported for context only.

Parity in what users see (:mod:`vedit.bench.visual`): both constrained sides' answers are drawn on
the sample photos and compared with CIEDE2000; a quantized variant's gate also requires the p95
below :data:`~vedit.bench.visual.JND` (2.3, the just-noticeable difference).

For any tools file the candidate's answers are also scored per tool against the constrained
original's: validity (jsonschema), same answer, and agreement per parameter (every leaf of the
schema: enums, booleans and strings exactly, numbers within 1% of their range; see
:func:`vedit.data.metrics.agreement`). The paper's offline metrics (selection, quality, final)
are derived from the same schemas.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from vedit.bench.visual import JND, VisualParity, compare_renders
from vedit.data.metrics import Agreement, Report, format_table, normalise, score
from vedit.data.metrics import agreement as answer_agreement
from vedit.data.rows import TruthRow
from vedit.errors import VeditError
from vedit.registry import Registry, ToolCall, load_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """Parity limits for one precision; documented in docs/concepts/parity.md."""

    precision: str
    max_overall_delta: float
    min_agreement: float
    #: CIEDE2000 p95 limit of the rendered edits (None: reported, not gated)
    max_delta_e_p95: float | None = None


#: fp32 must reproduce the original; fp16 may flip near-ties; int8 / int4 (weight-only quantization of
#: a small student) change some answers, so only a bounded metric loss is allowed (more for 4 bits).
GATES: dict[str, Gate] = {
    "fp32": Gate("fp32", 0.005, 0.99),
    "fp16": Gate("fp16", 0.01, 0.95, JND),
    "int8": Gate("int8", 0.03, 0.75, JND),
    "int4": Gate("int4", 0.05, 0.6, JND),
}


@dataclass
class Side:
    """One system's answers: raw text per intent and tool, scored."""

    name: str
    raw: dict[str, dict[str, str]]
    calls: dict[str, dict[str, ToolCall | None]]
    report: Report
    seconds: float

    @property
    def validity(self) -> float:
        """Share of tool outputs that parse and validate against the registry's schemas."""
        flat = [c for per in self.calls.values() for c in per.values()]
        return sum(c is not None for c in flat) / len(flat) if flat else 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "validity": self.validity, "seconds": round(self.seconds, 2),
                "metrics": self.report.to_json()}


@dataclass
class ParityResult:
    precision: str
    gate: Gate
    unconstrained: Side
    reference: Side
    candidate: Side
    agreement: float
    disagreements: list[dict] = field(default_factory=list)
    visual: VisualParity | None = None
    #: Per tool: the candidate's answers against the constrained original's, per parameter.
    parameters: dict[str, Agreement] = field(default_factory=dict)

    @property
    def overall_delta(self) -> float:
        return self.candidate.report.subsets["All"].overall - self.reference.report.subsets["All"].overall

    @property
    def failures(self) -> list[str]:
        out = []
        if abs(self.overall_delta) > self.gate.max_overall_delta:
            out.append(f"overall moved by {self.overall_delta:+.4f} (gate ±{self.gate.max_overall_delta})")
        if self.agreement < self.gate.min_agreement:
            out.append(f"exact agreement {self.agreement:.2%} < {self.gate.min_agreement:.0%}")
        if self.candidate.validity < 1.0:
            out.append(f"candidate validity {self.candidate.validity:.2%} < 100%")
        limit = self.gate.max_delta_e_p95
        if limit is not None and self.visual is not None and self.visual.p95 >= limit:
            out.append(f"rendered edits CIEDE2000 p95 {self.visual.p95:.2f} >= {limit} (just noticeable)")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "gate": vars(self.gate),
            "passed": self.passed,
            "failures": self.failures,
            "agreement": self.agreement,
            "overall_delta": self.overall_delta,
            "sides": {s.name: s.to_json() for s in (self.unconstrained, self.reference, self.candidate)},
            "disagreements": self.disagreements[:20],
            "visual": self.visual.to_json() if self.visual is not None else None,
            "parameters": {t: a.to_json() for t, a in self.parameters.items()},
        }


def _parse_all(registry: Registry, raw: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, ToolCall | None]]:
    """Raw text -> calls (``None`` where the text is not a valid call), as the metrics read it."""
    return {intent: {t.name: normalise(t, per_tool.get(t.name)) for t in registry.tools}
            for intent, per_tool in raw.items()}


def _side(name: str, registry: Registry, truth: Sequence[TruthRow],
          run: Callable[[list[str]], dict[str, dict[str, str]]]) -> Side:
    t0 = time.perf_counter()
    raw = run([r.intent for r in truth])
    seconds = time.perf_counter() - t0
    calls = _parse_all(registry, raw)
    return Side(name, raw, calls, score(truth, calls, registry), seconds)


def agreement(registry: Registry, a: Side, b: Side) -> tuple[float, list[dict]]:
    """Share of (intent, tool) outputs that are the same call (canonical JSON), and the differences."""
    same = total = 0
    diffs = []
    for intent, per in a.calls.items():
        for tool in registry.tool_names:
            x, y = per[tool], b.calls.get(intent, {}).get(tool)
            total += 1
            if x is not None and y is not None and x.dumps() == y.dumps():
                same += 1
            else:
                diffs.append({"intent": intent, "tool": tool, a.name: a.raw[intent][tool],
                              b.name: b.raw.get(intent, {}).get(tool)})
    return (same / total if total else 0.0), diffs


def served_registry(url: str) -> Registry:
    """The tools (and prompt style) a Triton server carries in its model config: with ``--url`` the
    truth rows and the PyTorch side's grammar must be the served model's, not the paper's."""
    from vedit.client import connect

    with connect([u.strip() for u in url.split(",")]) as client:
        return client.model_info().registry


@contextmanager
def grammar_dir_for(student_dir: Path, family: str, registry: Registry | Path | None) -> Iterator[Path]:
    """A throwaway directory holding the student's tokenizer, a registry and the compiled grammar.

    Why: constrained PyTorch needs the grammar; with ``--url`` there is no local export to take
    it from, so it is compiled from the student's own tokenizer (the export was made from it).
    """
    from vedit.decoding.compile import compile_grammars
    from vedit.export.checks import copy_tokenizer_files
    from vedit.registry import default_registry

    tmp = Path(tempfile.mkdtemp(prefix="vedit-grammar-"))
    try:
        copy_tokenizer_files(student_dir, tmp)  # a SentencePiece-only folder gets its tokenizer.json
        for name in ("config.json", "generation_config.json"):
            if (student_dir / name).exists():
                shutil.copy(student_dir / name, tmp / name)
        if isinstance(registry, Path):
            shutil.copy(registry, tmp / "registry.json")
        else:
            (registry or default_registry()).save(tmp / "registry.json")
        compile_grammars(tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def run_parity(
    reference_dir: str | Path,
    truth: Sequence[TruthRow],
    *,
    candidate: str | Path,
    adapter_dir: str | Path | None = None,
    precision: str | None = None,
    batch_size: int = 16,
    threads: int | None = None,
    visual: bool = True,
) -> ParityResult:
    """Run the three sides on ``truth``'s intents and compare.

    ``candidate`` is an export directory (in-process runtime) or a Triton URL. ``visual``: also draw
    the constrained sides' answers on the sample photos and compare them (CIEDE2000).
    """
    import torch

    from vedit.client import connect
    from vedit.client.base import is_url
    from vedit.decoding import load_grammar
    from vedit.manifest import read_manifest
    from vedit.reference import ReferencePredictor, detect_family
    from vedit.render.engine import drawn

    if threads:
        torch.set_num_threads(threads)
    reference_dir = Path(reference_dir)
    remote = isinstance(candidate, str) and is_url(candidate)
    export_dir = None if remote else Path(candidate)
    if export_dir is not None:
        registry = load_registry(export_dir / "registry.json")
        precision = precision or read_manifest(export_dir).precision
    else:
        registry = served_registry(str(candidate))
        precision = precision or "fp32"
    if precision not in GATES:
        raise VeditError(f"no parity gate for precision {precision!r}; known: {', '.join(GATES)}")

    log.info(f"loading the PyTorch original from {reference_dir}")
    ref = ReferencePredictor.load(reference_dir, adapter_dir, threads=threads, registry=registry)
    family = detect_family(reference_dir)

    def unconstrained(intents: list[str]) -> dict[str, dict[str, str]]:
        return {r.intent: r.raw for r in ref.predict(intents, batch_size=batch_size)}

    def constrained_with(grammar_dir: Path) -> Callable[[list[str]], dict[str, dict[str, str]]]:
        grammar = load_grammar(grammar_dir)

        def run(intents: list[str]) -> dict[str, dict[str, str]]:
            return {r.intent: r.raw for r in ref.predict(intents, batch_size=batch_size, grammar=grammar)}
        return run

    def served(intents: list[str]) -> dict[str, dict[str, str]]:
        with connect(str(candidate) if remote else Path(candidate)) as client:
            out = {}
            for chunk in _chunks(intents, batch_size):
                for p in client.predict(chunk):
                    out[p.intent] = p.raw
            return out

    log.info(f"[1/3] PyTorch, unconstrained generate, {len(truth)} intents")
    side_u = _side("pytorch", registry, truth, unconstrained)
    log.info("[2/3] PyTorch with the grammar (constrained generate)")
    if export_dir is not None:
        side_r = _side("pytorch+grammar", registry, truth, constrained_with(export_dir))
    else:
        with grammar_dir_for(reference_dir, family, registry) as gdir:
            side_r = _side("pytorch+grammar", registry, truth, constrained_with(gdir))
    log.info(f"[3/3] candidate {candidate}")
    side_c = _side("candidate", registry, truth, served)
    rate, diffs = agreement(registry, side_r, side_c)
    seen = None
    if visual and not any(drawn(t) for t in registry.tools):
        log.info(f"no rendered comparison: the renderer draws none of the tools ({', '.join(registry.tool_names)})")
        visual = False
    if visual:
        log.info("rendering both sides' answers on the sample photos (CIEDE2000)")
        seen = compare_renders(registry, side_r.calls, side_c.calls)
    return ParityResult(precision, GATES[precision], side_u, side_r, side_c, rate, diffs, seen,
                        parameter_agreement(registry, side_r, side_c))


def parameter_agreement(registry: Registry, reference: Side, candidate: Side) -> dict[str, Agreement]:
    """Per tool, the candidate's answers scored against the reference's valid ones."""
    out = {}
    for tool in registry.tools:
        pairs = [(candidate.calls.get(intent, {}).get(tool.name), per[tool.name])
                 for intent, per in reference.calls.items() if per[tool.name] is not None]
        out[tool.name] = answer_agreement(tool, pairs)
    return out


def format_parity(result: ParityResult) -> str:
    """Both metric tables with deltas, agreement and validity, then the gate's verdict."""
    lines = []
    for side in (result.unconstrained, result.reference, result.candidate):
        lines.append(f"## {side.name}  (valid JSON {side.validity:.2%}, {side.seconds:.1f} s)")
        lines.append(format_table(side.report, digits=3))
        lines.append("")
    lines.append("## delta (candidate - pytorch+grammar)")
    ref, cand = result.reference.report.subsets, result.candidate.report.subsets
    for name in ref:
        tools = ", ".join(
            f"{t} {cand[name].tools[t].final - ref[name].tools[t].final:+.4f}" for t in ref[name].tools
        )
        lines.append(f"{name:>4}: overall {cand[name].overall - ref[name].overall:+.4f}  (final: {tools})")
    lines.append("## candidate vs pytorch+grammar, per tool (valid, same answer, per parameter)")
    for tool, a in result.parameters.items():
        params = ", ".join(f"{p} {v:.0%}" for p, v in a.parameters.items())
        lines.append(f"{tool}: valid {a.valid:.2%}, same {a.agreement:.2%} of {a.n}" + (f"; {params}" if params else ""))
    lines.append(f"exact agreement: {result.agreement:.2%}  "
                 f"(gate {result.gate.precision}: |delta overall| <= {result.gate.max_overall_delta}, "
                 f"agreement >= {result.gate.min_agreement:.0%}"
                 + (f", CIEDE2000 p95 < {result.gate.max_delta_e_p95}" if result.gate.max_delta_e_p95 else "") + ")")
    if result.visual is not None:
        lines.append(result.visual.line())
    lines.append("PASS" if result.passed else "FAIL: " + "; ".join(result.failures))
    return "\n".join(lines)
