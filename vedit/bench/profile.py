"""Where a request's time goes on vedit's runtime: model graphs, grammar, and the Python around them.

Why not cProfile alone: every graph is one builtin ``InferenceSession.run`` to it, so it cannot say
how much went to the encoder, the prefill or the decoder calls; and its per-call overhead inflates
the Python share it is asked about. Here onnxruntime's ``run`` (both the host and the IO-binding
form) and the grammar matcher's methods are timed with ``perf_counter`` for the duration of the
profile (class attributes patched, then restored); everything else in the request's wall time is
the decoding loop's own Python (scheduling, feeds, cache alignment, bias, the argmax).

Parts, ms per request:
- ``encoder``: T5's encoder graph;
- ``prefill``: a decoder-only batch's first call (the prompt after the cached prefix);
- ``decoder calls``: every other call of the decoder graphs (T5: the first-step and with-past graphs);
- ``cache ops``: small vedit graphs that move KV caches (T5's row alignment);
- ``grammar``: the compiled grammar's matchers (allowed tokens, advance, forced runs);
- ``python``: the rest of the wall time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from vedit.decoding import Predictor

PARTS = ("encoder", "prefill", "decoder calls", "cache ops", "grammar", "python")
_MATCHER_METHODS = ("allowed_tokens", "advance", "advance_nth", "forced_tokens", "take_forced", "is_finished")


@dataclass
class Profile:
    """Median-free totals over ``requests`` sequential requests (ms per request, calls per request)."""

    label: str
    requests: int
    wall_ms: float
    parts_ms: dict[str, float]
    calls: dict[str, float] = field(default_factory=dict)
    #: with drafts: decoder calls, free tokens, drafted free tokens fed and accepted, per request
    draft: dict[str, float] | None = None

    def share(self, part: str) -> float:
        return self.parts_ms.get(part, 0.0) / self.wall_ms if self.wall_ms else 0.0

    def line(self) -> str:
        shown = [f"{p} {self.parts_ms[p]:,.1f} ms ({self.share(p):.0%})" for p in PARTS if self.parts_ms.get(p)]
        calls = ", ".join(f"{k} {v:.1f}" for k, v in self.calls.items())
        drafted = ""
        if self.draft:
            d = self.draft
            drafted = (f"; drafts: {d['proposed']:.1f} free tokens drafted/request, {d['acceptance']:.0%} accepted, "
                       f"decoder calls {d['decoder_calls']:.2f} per request = {d['calls_per_free']:.2f}x free tokens")
        return (f"profile {self.label}: {self.wall_ms:,.1f} ms/request over {self.requests} requests = "
                + "; ".join(shown) + (f" (graph calls/request: {calls})" if calls else "") + drafted)

    def to_json(self) -> dict:
        return {"label": self.label, "requests": self.requests, "wall_ms": self.wall_ms,
                "parts_ms": self.parts_ms, "calls": self.calls, "draft": self.draft}


class _Clock:
    """Accumulates seconds and calls per part while :meth:`patched` is active."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.first_call_pending = False  # decoder-only: the next call of the model graph is a prefill

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds
        self.calls[part] += 1

    def graph_part(self, model_path: str) -> str:
        """The part a run of ``model_path`` belongs to (a decoder-only export's graph is ``model.onnx``:
        its first run of a request is the prefill)."""
        stem = Path(model_path).stem
        if stem.startswith("encoder"):
            return "encoder"
        if stem == "model" and self.first_call_pending:
            self.first_call_pending = False
            return "prefill"
        if stem.startswith("decoder") or stem == "model":
            return "decoder calls"
        return "cache ops"

    @contextmanager
    def patched(self) -> Iterator[None]:
        import onnxruntime as ort

        from vedit.decoding.grammar import Matcher

        clock = self
        originals = {("ort", n): getattr(ort.InferenceSession, n) for n in ("run", "run_with_iobinding")}
        originals.update({("matcher", n): getattr(Matcher, n) for n in _MATCHER_METHODS})

        def timed_run(name):
            inner = originals[("ort", name)]

            def run(self, *args, **kwargs):
                part = clock.graph_part(getattr(self, "_model_path", "") or "")
                began = time.perf_counter()
                try:
                    return inner(self, *args, **kwargs)
                finally:
                    clock.add(part, time.perf_counter() - began)
            return run

        def timed_method(name):
            inner = originals[("matcher", name)]

            def method(self, *args, **kwargs):
                began = time.perf_counter()
                try:
                    return inner(self, *args, **kwargs)
                finally:
                    clock.seconds["grammar"] += time.perf_counter() - began
            return method

        try:
            for n in ("run", "run_with_iobinding"):
                setattr(ort.InferenceSession, n, timed_run(n))
            for n in _MATCHER_METHODS:
                setattr(Matcher, n, timed_method(n))
            yield
        finally:
            for (kind, n), fn in originals.items():
                setattr(ort.InferenceSession if kind == "ort" else Matcher, n, fn)


def profile_export(export_dir: Path, intents: Sequence[str], *, threads: int, label: str | None = None,
                   scripts: dict | None = None, warmup: int = 1, draft: bool = False, **load) -> Profile:
    """Profile ``intents`` answered one request at a time on ``export_dir`` (``scripts``: steered to them).

    ``draft``: with drafts (jump-forward alone by default, so a profile names what it measured);
    ``load``: more :meth:`vedit.decoding.Predictor.load` options (e.g. ``join_rows=False``).
    """
    from vedit.decoding import Predictor

    pred = Predictor.load(export_dir, threads=threads, draft=draft, **load)
    return profile_predictor(pred, intents, label=label or Path(export_dir).name, scripts=scripts, warmup=warmup)


def profile_predictor(pred: Predictor, intents: Sequence[str], *, label: str, scripts: dict | None = None,
                      warmup: int = 1) -> Profile:
    """:func:`profile_export` on a predictor already loaded (the bench profiles one export with and
    without drafts from one load: :meth:`~vedit.decoding.Predictor.without_drafts`)."""
    from vedit.workload.scripted import steer

    decoder_only = pred.family != "t5"

    stats: list = []

    def answer(intent: str) -> None:
        script = scripts.get(intent) if scripts else None
        stats.append(pred.predict([intent], bias=steer([script]) if script else None)[0].stats)

    for intent in list(intents)[:warmup]:
        answer(intent)
    stats.clear()
    drafter = pred.drafter
    before = (drafter.proposed, drafter.accepted) if drafter else (0, 0)
    clock = _Clock()
    wall = 0.0
    with clock.patched():
        for intent in intents:
            clock.first_call_pending = decoder_only
            began = time.perf_counter()
            answer(intent)
            wall += time.perf_counter() - began
    n = max(1, len(intents))
    parts = {p: clock.seconds.get(p, 0.0) * 1000 / n for p in PARTS if p != "python"}
    parts["python"] = max(0.0, wall * 1000 / n - sum(parts.values()))
    calls = {p: c / n for p, c in clock.calls.items()}
    draft = None
    if drafter:
        proposed, accepted = drafter.proposed - before[0], drafter.accepted - before[1]
        dec, free = sum(s.decoder_calls for s in stats), sum(s.free_tokens for s in stats)
        draft = {"proposed": proposed / n, "accepted": accepted / n, "acceptance": accepted / max(1, proposed),
                 "decoder_calls": dec / n, "free_tokens": free / n, "calls_per_free": dec / max(1, free)}
    return Profile(label, len(intents), wall * 1000 / n, parts, calls, draft)


__all__ = ["PARTS", "Profile", "profile_export", "profile_predictor"]
