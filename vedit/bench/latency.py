"""Per-request latency of every serving path, measured side by side in one run.

Paths (one request = one intent = its three tool prompts as one batch):
- ``pytorch``: the PyTorch original, plain greedy ``generate`` (what the paper served);
- ``pytorch+grammar``: the original with the export's grammar as a logits processor;
- ``onnx-<label>-step``: the ONNX runtime, constrained, one decoder call per token;
- ``onnx-<label>``: the ONNX runtime, constrained, with jump-forward (the default);
- ``triton-http`` / ``triton-grpc``: the same runtime behind a real tritonserver.

At concurrency 1 the paths are interleaved request by request (round robin over the same
intents), so load on a shared machine hits every path alike and the ratios stay meaningful.
Concurrency > 1 is measured for the in-process runtime and Triton only (PyTorch generate is
not a server).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from vedit.bench.timing import LatencyStats, summarize

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Cost:
    """What one request cost a path: decoder calls, and model-decided tokens where the path knows."""

    decoder_calls: int
    free_tokens: int | None = None


#: A path: answers one intent and says what it cost.
Call = Callable[[str], Cost]


@dataclass
class LatencyRun:
    model: str
    stats: list[LatencyStats]
    machine: dict
    notes: list[str] = field(default_factory=list)
    #: Paths timed side by side on the same intents; speed-ups are only meaningful among them.
    compared: list[str] = field(default_factory=list)

    def at(self, concurrency: int) -> list[LatencyStats]:
        return [s for s in self.stats if s.concurrency == concurrency]

    def speedup(self, path: str, baseline: str = "pytorch") -> float | None:
        by = {s.path: s for s in self.at(1) if s.path in self.compared}
        if path in by and baseline in by and by[path].p50_ms > 0:
            return by[baseline].p50_ms / by[path].p50_ms
        return None

    def to_json(self, *, samples: bool = False) -> dict:
        return {"model": self.model, "machine": self.machine, "notes": self.notes, "compared": self.compared,
                "stats": [s.to_json(samples=samples) for s in self.stats]}


class _StepCounter:
    """Counts forward calls of a PyTorch model (one per generate step)."""

    def __init__(self, module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def pytorch_paths(student_dir: Path, adapter_dir: Path | None, export_dir: Path, *, threads: int) -> dict[str, Call]:
    """The unconstrained and constrained PyTorch paths of one student."""
    from vedit.decoding import load_grammar
    from vedit.reference import ReferencePredictor

    ref = ReferencePredictor.load(student_dir, adapter_dir, threads=threads)
    grammar = load_grammar(export_dir)  # prepared once, like the model: only generation is timed
    # generate() of a peft model runs the wrapped transformers model: count that one's forwards
    counter = _StepCounter(ref.model.get_base_model() if hasattr(ref.model, "get_base_model") else ref.model)

    def plain(intent: str) -> Cost:
        before = counter.calls
        ref.predict([intent], batch_size=1)
        return Cost(counter.calls - before)

    def constrained(intent: str) -> Cost:
        before = counter.calls
        ref.predict([intent], batch_size=1, grammar=grammar)
        return Cost(counter.calls - before)

    return {"pytorch": plain, "pytorch+grammar": constrained}


def onnx_paths(exports: dict[str, Path], *, threads: int, step_for: Sequence[str] = ("fp32",)) -> dict[str, Call]:
    """In-process ONNX paths: jump-forward for every export, step-by-step for ``step_for`` labels."""
    from vedit.decoding import Predictor

    paths: dict[str, Call] = {}

    def wrap(p) -> Call:
        def call(intent: str) -> Cost:
            stats = p.predict([intent])[0].stats
            return Cost(stats.decoder_calls, stats.free_tokens)
        return call

    for label, d in exports.items():
        if label in step_for:
            paths[f"onnx-{label}-step"] = wrap(Predictor.load(d, threads=threads, jump_forward=False))
        paths[f"onnx-{label}"] = wrap(Predictor.load(d, threads=threads, jump_forward=True))
    return paths


def interleaved(paths: dict[str, Call], intents: Sequence[str], *, warmup: int = 2,
                progress: Callable[[int], None] | None = None) -> list[LatencyStats]:
    """Concurrency-1 latency of every path, round robin per intent.

    Free tokens are each path's own (an int8 export may answer differently from fp32); paths that
    cannot tell (PyTorch ``generate``) report none.
    """
    for call in paths.values():
        for intent in intents[:warmup]:
            call(intent)
    samples: dict[str, list[float]] = {k: [] for k in paths}
    costs: dict[str, list[Cost]] = {k: [] for k in paths}
    for intent in intents:
        for name, call in paths.items():
            t0 = time.perf_counter()
            cost = call(intent)
            samples[name].append(time.perf_counter() - t0)
            costs[name].append(cost)
        if progress:
            progress(1)
    out = []
    for name in paths:
        c = [x.decoder_calls for x in costs[name]]
        free = [x.free_tokens for x in costs[name] if x.free_tokens is not None]
        out.append(summarize(name, samples[name], sum(samples[name]), 1,
                             decoder_calls_per_request=(sum(c) / len(c)) if c else None,
                             free_tokens_per_request=(sum(free) / len(free)) if free else None))
    return out


def measure_model(
    name: str,
    *,
    student_dir: Path,
    exports: dict[str, Path],
    intents: Sequence[str],
    adapter_dir: Path | None = None,
    threads: int = 2,
    pytorch: bool = True,
    triton: bool = False,
    triton_requests: int = 200,
    concurrencies: Sequence[int] = (1, 4, 16),
) -> LatencyRun:
    """Every path of one student, side by side; Triton (if asked) on the first export."""
    from tqdm.auto import tqdm

    from vedit.bench.machine import machine_info

    info = machine_info(threads)
    first = next(iter(exports.values()))
    paths: dict[str, Call] = {}
    if pytorch:
        log.info(f"{name}: loading the PyTorch original")
        paths.update(pytorch_paths(student_dir, adapter_dir, first, threads=threads))
    paths.update(onnx_paths(exports, threads=threads))
    log.info(f"{name}: {len(intents)} requests x {len(paths)} paths, interleaved")
    with tqdm(total=len(intents), desc=name, unit="req", mininterval=2.0, dynamic_ncols=True) as bar:
        stats = interleaved(paths, intents, progress=bar.update)
    compared = [s.path for s in stats]
    notes = [f"{len(intents)} requests per path at concurrency 1, interleaved; {threads} threads",
             "free (model-decided) tokens per request: " + ", ".join(
                 f"{x.path} {x.free_tokens_per_request:.1f}" for x in stats if x.free_tokens_per_request is not None)]
    if triton:
        from vedit.bench import serving as tbench

        log.info(f"{name}: Triton over HTTP and gRPC at concurrency {', '.join(map(str, concurrencies))}")
        served = tbench.run(first, requests=triton_requests, concurrencies=concurrencies)
        for s in served:
            s.path = {"http": "triton-http", "grpc": "triton-grpc"}.get(s.path, s.path)
        stats.extend(served)
        notes.append(f"Triton: {triton_requests} distinct requests per level (no cache hits), cpu profile, "
                     "one intent per request; in-process uses the profile's threads. These rows use other "
                     "intents than the rows above, so no speed-up is given for them")
    return LatencyRun(name, stats, info, notes, compared)
