"""Serving overhead, measured side by side in one run: in-process vs Triton over HTTP and gRPC.

For each concurrency level every path answers its own distinct intents, one intent per request,
with ``concurrency`` requests in flight (asyncio tasks over the async clients). In-process runs
twice: ``in-process`` is the batching client with as many workers (predictors) as the profile
starts Triton instances, each with the profile's threads, so both sides have the same resources;
``in-process-serial`` is one predictor decoding one request at a time (``batch=False``), the path
before cross-request batching, kept to measure what batching and workers give. Each request's latency is
timed from its own start; throughput is requests over the wall time.

Every request carries a distinct intent and the in-process answer caches are off, so no cache
answers: this measures the model path. (A repeated intent is answered from the cache;
test_server.py and tests/client/test_local.py check that.)
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vedit.bench.timing import LatencyStats, summarize

PATHS = ("in-process", "in-process-serial", "http", "grpc")
DEFAULT_INTENTS = ("golden hour", "Morocco", "cold tone", "neon night", "welding mask", "Charlie Chaplin",
                   "dark atmosphere", "X ray", "fire", "black & white")


def distinct_intents(n: int, seed: Sequence[str] = DEFAULT_INTENTS, *, tag: str = "") -> list[str]:
    """``n`` distinct intents (so no response-cache hits) built from realistic ones."""
    return [f"{seed[i % len(seed)]} {tag}{i}" for i in range(n)]


async def _drive(client, intents: Sequence[str], concurrency: int) -> tuple[list[float], float]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for intent in intents:
        queue.put_nowait(intent)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            intent = queue.get_nowait()
            t0 = time.perf_counter()
            await client.predict([intent])
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - t0


async def compare(
    export_dir: str | Path,
    urls: dict[str, str],
    *,
    requests: int = 300,
    concurrencies: Sequence[int] = (1, 4, 16),
    warmup: int = 5,
    threads: int | None = None,
    workers: int = 1,
    model: str = "vedit",
) -> list[LatencyStats]:
    """Latency/throughput of in-process and each URL (``{"http": ..., "grpc": ...}``) per level."""
    from vedit.client import AsyncLocalClient, AsyncTritonClient

    clients = {"in-process": AsyncLocalClient(export_dir, threads=threads, cache_size=0, workers=workers),
               "in-process-serial": AsyncLocalClient(export_dir, threads=threads, cache_size=0, batch=False)}
    for name, url in urls.items():
        clients[name] = AsyncTritonClient(url, model=model, concurrency=max(concurrencies), timeout=120)
    try:
        for name, client in clients.items():
            await client.predict(distinct_intents(warmup, tag=f"warm-{name}-"))
        stats = []
        for c in concurrencies:
            for name, client in clients.items():
                intents = distinct_intents(requests, tag=f"{name}-c{c}-")
                latencies, wall = await _drive(client, intents, c)
                stats.append(summarize(name, latencies, wall, c))
        return stats
    finally:
        for client in clients.values():
            await client.close()


def run(
    export_dir: str | Path,
    *,
    requests: int = 300,
    concurrencies: Sequence[int] = (1, 4, 16),
    profile: str = "cpu",
    threads: int | None = None,
) -> list[LatencyStats]:
    """Build a repository for ``export_dir`` in a temp dir, serve it, compare the three paths.

    The in-process client gets the profile's onnxruntime threads (unless ``threads`` is given) and
    as many workers as the repository has Triton instances, so both sides run the same kernels on
    the same resources and the difference is the serving path.
    """
    from vedit.triton_repo.builder import build_repository
    from vedit.triton_repo.profiles import get_profile
    from vedit.serving.server import TritonServer

    if threads is None:
        threads = get_profile(profile).threads or None

    with tempfile.TemporaryDirectory(prefix="vedit-triton-bench-") as tmp:
        repo = build_repository(export_dir, profile=profile, out=Path(tmp) / "repo")
        workers = instance_count(repo)
        with TritonServer(repo) as server:
            urls = {"http": server.urls["http"], "grpc": server.urls["grpc"]}
            return asyncio.run(compare(export_dir, urls, requests=requests, concurrencies=concurrencies,
                                       threads=threads, workers=workers))


def instance_count(repo: Path) -> int:
    """How many model instances the repository's configs start (what Triton runs in parallel)."""
    from vedit.triton_repo.config import parse_config

    counts = [sum(g.count for g in parse_config(cfg.read_text(encoding="utf-8")).instance_group)
              for cfg in sorted(Path(repo).glob("*/config.pbtxt"))]
    return max(1, max(counts, default=1))


def table(stats: Sequence[LatencyStats]) -> str:
    """A markdown table, one row per (concurrency, path)."""
    lines = ["| concurrency | path | p50 ms | p95 ms | mean ms | requests/s |", "|---|---|---|---|---|---|"]
    for s in stats:
        lines.append(f"| {s.concurrency} | {s.path} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | {s.mean_ms:.1f} | "
                     f"{s.throughput_rps:.1f} |")
    return "\n".join(lines)


__all__ = ["PATHS", "compare", "distinct_intents", "instance_count", "run", "table"]
