"""Latency and throughput measurement shared by every path the bench compares.

Why a single helper: paths are only comparable when they are measured the same way, in the same
run, on the same intents (medians and percentiles, never one-off timings).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np


@dataclass
class LatencyStats:
    path: str
    concurrency: int
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    decoder_calls_per_request: float | None = None
    free_tokens_per_request: float | None = None
    forced_tokens_per_request: float | None = None
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def to_json(self, *, samples: bool = False) -> dict:
        out = asdict(self)
        if not samples:
            out.pop("samples_ms")
        return out


def summarize(path: str, samples_s: Sequence[float], wall_s: float, concurrency: int, **extra) -> LatencyStats:
    ms = np.asarray(samples_s, dtype=float) * 1000.0
    return LatencyStats(
        path=path,
        concurrency=concurrency,
        n=len(ms),
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(statistics.fmean(ms)),
        throughput_rps=len(ms) / wall_s if wall_s > 0 else 0.0,
        samples_ms=[round(float(x), 3) for x in ms],
        **extra,
    )


def measure(
    path: str,
    call: Callable[[str], object],
    intents: Sequence[str],
    *,
    concurrency: int = 1,
    warmup: int = 2,
    progress: Callable[[int], None] | None = None,
) -> LatencyStats:
    """Send one request per intent through ``call`` with ``concurrency`` requests in flight.

    Each request's latency is measured from its own start; throughput is requests over the wall
    time of the whole run.
    """
    for intent in list(intents)[:warmup]:
        call(intent)

    def one(intent: str) -> float:
        t0 = time.perf_counter()
        call(intent)
        dt = time.perf_counter() - t0
        if progress:
            progress(1)
        return dt

    t0 = time.perf_counter()
    if concurrency <= 1:
        samples = [one(i) for i in intents]
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            samples = list(pool.map(one, intents))
    return summarize(path, samples, time.perf_counter() - t0, concurrency)
