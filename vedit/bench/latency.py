"""Per-request latency of every serving path, measured side by side in one run.

Paths (one request = one intent = its three tool prompts as one batch):
- ``pytorch``: the PyTorch original, plain greedy ``generate`` (what the paper served); in a
  scripted run it is steered to the script, so it is the lower bound of any PyTorch path;
- ``pytorch+grammar``: the original with the export's grammar as a logits processor (+ script);
- ``onnx-<label>-step``: the ONNX runtime, constrained, one decoder call per token;
- ``onnx-<label>``: the ONNX runtime, constrained, with jump-forward (the default);
- peers (``--peers``): other engines a user could pick (:mod:`vedit.peers`);
- ``triton-http`` / ``triton-grpc``: the same runtime behind a real tritonserver.

Models and grammars are loaded once, before timing; a PyTorch request times ``generate`` alone
(prompt ids are built beforehand), while an ONNX request times the whole ``predict`` (prompts,
decoding and parsing the calls): the baselines get the better of the deal.

*Scripted* runs (:mod:`vedit.workload.scripted`) steer every path to the same realistic answers, so a
random-weight model of a real size does the work a trained student does. Every path that is
constrained or steered returns its texts, and the run checks that they are identical per intent
(:class:`TextCheck`).

At concurrency 1 the paths are interleaved request by request (round robin over the same
intents), so load on a shared machine hits every path alike and the ratios stay meaningful.
Concurrency > 1 is measured for the in-process runtime and Triton only (PyTorch generate is
not a server).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from vedit.bench.timing import LatencyStats, summarize
from vedit.workload.cost import Call, Cost

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)


@dataclass
class TextCheck:
    """Did every path that returns texts produce the same texts per intent?

    Compared with the scripts when the run is scripted, else with the first path that returned
    texts. ``differing[path]`` counts the intents where ``path`` differs.
    """

    reference: str
    paths: list[str]
    intents: int
    differing: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.differing.values())

    def verdict(self, path: str) -> str:
        if path not in self.paths:
            return "-"
        n = self.differing.get(path, 0)
        return "yes" if n == 0 else f"NO ({n}/{self.intents} differ)"

    def describe(self) -> str:
        if not self.paths:
            return "same texts: no path returned texts"
        head = "same texts on every path: yes" if self.ok else "same texts on every path: NO"
        bad = [f"{p} differs on {n} of {self.intents}" for p, n in self.differing.items() if n]
        return (f"{head} ({len(self.paths)} paths x {self.intents} intents, compared with {self.reference})"
                + (": " + "; ".join(bad) if bad else ""))

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class LatencyRun:
    model: str
    stats: list[LatencyStats]
    machine: dict
    notes: list[str] = field(default_factory=list)
    #: Paths timed side by side on the same intents; speed-ups are only meaningful among them.
    compared: list[str] = field(default_factory=list)
    #: the same-texts check over the compared paths (None when no path returned texts)
    texts: TextCheck | None = None
    #: path -> what it is (precision, threads, what constrains it)
    info: dict[str, str] = field(default_factory=dict)
    #: scripted runs: free and forced tokens per request of the scripts themselves
    scripted: dict | None = None
    #: where vedit's time went per export (:class:`vedit.bench.profile.Profile` as JSON)
    profiles: list[dict] = field(default_factory=list)
    #: decoder-only shapes with peers: vedit's batched decoder step beside onnxruntime-genai's
    step_costs: list[dict] = field(default_factory=list)

    def at(self, concurrency: int) -> list[LatencyStats]:
        return [s for s in self.stats if s.concurrency == concurrency]

    def speedup(self, path: str, baseline: str = "pytorch") -> float | None:
        by = {s.path: s for s in self.at(1) if s.path in self.compared}
        if path in by and baseline in by and by[path].p50_ms > 0:
            return by[baseline].p50_ms / by[path].p50_ms
        return None

    def to_json(self, *, samples: bool = False) -> dict:
        return {"model": self.model, "machine": self.machine, "notes": self.notes, "compared": self.compared,
                "texts_check": self.texts.to_json() if self.texts else None, "info": self.info,
                "scripted": self.scripted, "profiles": self.profiles, "step_costs": self.step_costs,
                "stats": [s.to_json(samples=samples) for s in self.stats]}


def _with_info(call: Call, info: str) -> Call:
    call.info = info  # type: ignore[attr-defined]
    return call


def pytorch_paths(student_dir: Path, adapter_dir: Path | None, export_dir: Path, *, threads: int,
                  scripts: dict[str, "Script"] | None = None, trials: int | None = None,
                  trial_intent: str = "golden hour") -> dict[str, Call]:
    """The plain and the constrained PyTorch paths of one student, loaded once, at PyTorch's best
    setting on this host (:mod:`vedit.bench.torch_settings`, tried on the first scripted intent or
    ``trial_intent``; ``trials`` timed trial requests per setting, default
    :data:`~vedit.bench.torch_settings.TRIALS`; 0: no trial, transformers' defaults).

    Each request times ``generate`` alone: prompt ids are built before timing for the scripted
    intents (and cached on first use for others), the grammar is loaded once. With ``scripts``
    both paths are steered to them (:class:`vedit.reference.ScriptLogitsProcessor`).
    """
    import torch

    from vedit.bench import torch_settings
    from vedit.decoding import load_grammar
    from vedit.reference import ReferencePredictor

    from vedit.registry import load_registry

    # the export's tools and prompt style: the PyTorch rows must be the ones the export answers
    ref = ReferencePredictor.load(student_dir, adapter_dir, threads=threads,
                                  registry=load_registry(export_dir / "registry.json"))
    grammar = load_grammar(export_dir)
    tools = ref.registry.tool_names
    # the runtime's prompts, with the runtime's input limit (same truncation of long intents)
    builder = ref.prompt_builder(grammar.max_tokens())
    prompts: dict[str, list[list[int]]] = {}

    def rows(intent: str) -> list[list[int]]:
        if intent not in prompts:
            prompts[intent] = builder.build(intent).ids
        return prompts[intent]

    for intent in scripts or {}:
        rows(intent)
    trials = torch_settings.TRIALS if trials is None else trials
    if trials:
        _, choice = torch_settings.best_setting(ref, rows(next(iter(scripts or {}), trial_intent)), tools, grammar,
                                                trials=trials)
        setting = torch_settings.describe(choice)
    else:
        setting = f"transformers' defaults ({ref.model.config._attn_implementation} attention, no settings trial)"

    def run(intent: str, constrained: bool) -> Cost:
        script = scripts.get(intent) if scripts else None
        ids, steps = ref.generate(rows(intent), tools=tools, grammar=grammar if constrained else None,
                                  script=[script.tokens[t] for t in tools] if script else None)
        steered = constrained or script is not None
        return Cost(steps, texts=tuple(grammar.text(x) for x in ids) if steered else None)

    how = f"PyTorch {torch.__version__} fp32, eager mode (no torch.compile), {threads} threads, greedy generate, 3 rows per call, {setting}"
    steer = "; steered by the script" if scripts else ""
    return {"pytorch": _with_info(lambda i: run(i, False), how + ", unconstrained" + steer),
            "pytorch+grammar": _with_info(lambda i: run(i, True),
                                          how + ", vedit's grammar as a logits processor (prepared once)" + steer)}


def onnx_paths(exports: dict[str, Path], *, threads: int, step_for: Sequence[str] = ("fp32",),
               scripts: dict[str, "Script"] | None = None, drafts: bool = True) -> dict[str, Call]:
    """In-process ONNX paths: jump-forward, and (``drafts``) drafted (``draft=True``), for every
    export; step-by-step (and for T5 the previous scheduler) for ``step_for`` labels."""
    import onnxruntime

    from vedit.workload.scripted import steer
    from vedit.decoding import Predictor
    from vedit.manifest import read_manifest

    paths: dict[str, Call] = {}

    def wrap(p) -> Call:
        def call(intent: str) -> Cost:
            script = scripts.get(intent) if scripts else None
            pred = p.predict([intent], bias=steer([script]) if script else None)[0]
            st = pred.stats
            return Cost(st.decoder_calls, st.free_tokens, st.forced_tokens, tuple(pred.raw.values()))
        return call

    how = f"onnxruntime {onnxruntime.__version__} CPU, {threads} threads, vedit's grammar"
    steered = "; steered by the script" if scripts else ""
    for label, d in exports.items():
        if label in step_for:
            paths[f"onnx-{label}-step"] = _with_info(wrap(Predictor.load(d, threads=threads, jump_forward=False)),
                                                     f"{label}, {how}, one decoder call per token{steered}")
            if read_manifest(d).family == "t5":  # the scheduler before every row joined every call
                paths[f"onnx-{label}-grouped"] = _with_info(
                    wrap(Predictor.load(d, threads=threads, join_rows=False, draft=False)),
                    f"{label}, {how}, jump-forward, rows share a call only at equal cache lengths "
                    f"(the previous scheduler){steered}")
        drafted = Predictor.load(d, threads=threads, draft=True) if drafts else None
        jf = drafted.without_drafts() if drafted else Predictor.load(d, threads=threads, draft=False)
        paths[f"onnx-{label}"] = _with_info(wrap(jf), f"{label}, {how}, jump-forward over forced tokens{steered}")
        if drafted:
            paths[f"onnx-{label}-draft"] = _with_info(
                wrap(drafted),
                f"{label}, {how}, jump-forward and drafts verified in the same call (each call's draft length priced "
                f"by the measured cost of a call and of a token), learnt from the answers "
                f"this path gave before (warm-up included){steered}")
    return paths


def _mean(xs: list[int | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return sum(known) / len(known) if known else None


def interleaved(paths: dict[str, Call], intents: Sequence[str], *, warmup: int = 2,
                progress: Callable[[int], None] | None = None, expected: dict[str, tuple[str, ...]] | None = None,
                fragile: Sequence[str] = (), notes: list[str] | None = None) -> tuple[list[LatencyStats], TextCheck]:
    """Concurrency-1 latency of every path, round robin per intent, and the same-texts check.

    Free and forced tokens are each path's own (an unscripted int8 export may answer differently
    from fp32); paths that cannot tell (PyTorch ``generate``) report none. ``expected``: intent ->
    texts every path must return (scripted runs); else paths are compared with the first path that
    returned texts. A ``fragile`` path (a peer engine in another process) that fails is dropped
    from the run with a note instead of ending it.
    """
    paths = dict(paths)
    notes = notes if notes is not None else []

    def guarded(name: str, intent: str) -> Cost | None:
        try:
            return paths[name](intent)
        except Exception as exc:  # noqa: BLE001 -- only for fragile paths, reported in the run's notes
            if name not in fragile:
                raise
            log.warning(f"{name} failed ({exc}); dropped from this run")
            notes.append(f"{name} failed and was dropped: {type(exc).__name__}: {exc}")
            del paths[name]
            return None

    for name in list(paths):
        for intent in intents[:warmup]:
            if name in paths:
                guarded(name, intent)
    samples: dict[str, list[float]] = {k: [] for k in paths}
    costs: dict[str, list[Cost]] = {k: [] for k in paths}
    texts: dict[str, dict[str, tuple[str, ...]]] = {k: {} for k in paths}
    for intent in intents:
        for name in list(paths):
            t0 = time.perf_counter()
            cost = guarded(name, intent)
            dt = time.perf_counter() - t0
            if cost is None:
                continue
            samples[name].append(dt)
            costs[name].append(cost)
            if cost.texts is not None:
                texts[name][intent] = tuple(cost.texts)
        if progress:
            progress(1)
    out = []
    for name in paths:
        c = costs[name]
        out.append(summarize(name, samples[name], sum(samples[name]), 1,
                             decoder_calls_per_request=_mean([x.decoder_calls for x in c]),
                             free_tokens_per_request=_mean([x.free_tokens for x in c]),
                             forced_tokens_per_request=_mean([x.forced_tokens for x in c])))
    return out, check_texts({k: v for k, v in texts.items() if k in paths and v}, intents, expected)


def check_texts(texts: dict[str, dict[str, tuple[str, ...]]], intents: Sequence[str],
                expected: dict[str, tuple[str, ...]] | None = None) -> TextCheck:
    """Compare every path's texts per intent with ``expected`` (or with the first path's)."""
    names = list(texts)
    if expected is None and names:
        reference, want = names[0], texts[names[0]]
    else:
        reference, want = "the scripts", expected or {}
    differing = {p: sum(1 for i in intents if texts[p].get(i) != want.get(i)) for p in names}
    return TextCheck(reference, names, len(intents), differing)


def measure_model(
    name: str,
    *,
    student_dir: Path,
    exports: dict[str, Path],
    intents: Sequence[str] | None = None,
    adapter_dir: Path | None = None,
    threads: int = 2,
    pytorch: bool = True,
    triton: bool = False,
    triton_requests: int = 200,
    concurrencies: Sequence[int] = (1, 4, 16),
    scripts: Sequence["Script"] | None = None,
    peers: Callable[..., dict[str, Call]] | None = None,
    step_for: Sequence[str] = ("fp32",),
    warmup: int = 2,
    peer_student_dir: Path | None = None,
    pytorch_trials: int | None = None,
) -> LatencyRun:
    """Every path of one student, side by side; Triton (if asked) on the first export.

    ``scripts``: a scripted run on the scripts' intents (every path steered to them);
    ``peers``: ``peers(family, student_dir=, exports=, scripts=, threads=) -> {name: Call}`` adds
    other engines' paths to the same interleaved run (:func:`vedit.peers.peer_paths`); a peer
    that fails during the run is dropped with a note. ``peer_student_dir``: the HF folder peers load
    (default ``student_dir``; peers cannot apply a LoRA adapter, so give them the merged student).
    ``pytorch_trials``: timed trial requests per PyTorch setting (:func:`pytorch_paths`; 0: none).
    """
    from tqdm.auto import tqdm

    from vedit.bench.machine import machine_info
    from vedit.manifest import read_manifest

    info = machine_info(threads)
    first = next(iter(exports.values()))
    by_intent = {s.intent: s for s in scripts} if scripts else None
    if scripts:
        intents = [s.intent for s in scripts]
    if not intents:
        raise ValueError("measure_model needs intents or scripts")
    paths: dict[str, Call] = {}
    notes: list[str] = []
    if pytorch:
        log.info(f"{name}: loading the PyTorch original")
        paths.update(pytorch_paths(student_dir, adapter_dir, first, threads=threads, scripts=by_intent,
                                   trials=pytorch_trials, trial_intent=intents[0]))
    paths.update(onnx_paths(exports, threads=threads, scripts=by_intent, step_for=step_for))
    fragile: list[str] = []
    if peers is not None:
        found = peers(read_manifest(first).family, student_dir=peer_student_dir or student_dir, exports=exports,
                      scripts=by_intent or {}, threads=threads)
        fragile = list(found)
        paths.update(found)
        notes.extend(getattr(found, "notes", lambda: [])())  # peers skipped, with their reasons
    log.info(f"{name}: {len(intents)} requests x {len(paths)} paths, interleaved")
    with tqdm(total=len(intents), desc=name, unit="req", mininterval=2.0, dynamic_ncols=True) as bar:
        stats, check = interleaved(paths, intents, warmup=warmup, progress=bar.update, fragile=fragile, notes=notes,
                                   expected={i: s.text_tuple() for i, s in by_intent.items()} if by_intent else None)
    compared = [s.path for s in stats]
    notes[:0] = [f"{len(intents)} requests per path at concurrency 1, interleaved; {threads} threads; "
                 f"load average at the end {machine_info(threads)['load_average']}", check.describe()]
    scripted = None
    if scripts:
        scripted = _script_summary(first, scripts)
        notes.insert(1, f"scripted answers (the demo test set's, every path steered to them): "
                        f"{scripted['free_tokens_per_request']:.1f} free + {scripted['forced_tokens_per_request']:.1f} "
                        "forced tokens per request")
    run_info = {p: str(getattr(c, "info", "")) for p, c in paths.items() if getattr(c, "info", "")}
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
    return LatencyRun(name, stats, info, notes, compared, check if check.paths else None, run_info, scripted)


def _script_summary(export_dir: Path, scripts: Sequence["Script"]) -> dict:
    from vedit.workload.scripted import script_cost
    from vedit.decoding import load_grammar

    grammar = load_grammar(export_dir)
    costs = [script_cost(grammar, s) for s in scripts]
    return {"requests": len(scripts),
            "free_tokens_per_request": sum(c.free for c in costs) / len(costs),
            "forced_tokens_per_request": sum(c.forced for c in costs) / len(costs)}

