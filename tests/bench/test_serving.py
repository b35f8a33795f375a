"""The serving benchmark runs end to end (numbers are reported, never asserted)."""

from __future__ import annotations

import asyncio

import pytest

from vedit.bench import serving as bench

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_distinct_intents_never_repeat():
    intents = bench.distinct_intents(50, tag="x")
    assert len(set(intents)) == 50


def test_compare_measures_every_path_and_level(triton_served):
    urls = {"http": triton_served.http, "grpc": triton_served.grpc}
    stats = asyncio.run(bench.compare(triton_served.export_dir, urls, requests=4, concurrencies=(1, 2), warmup=1,
                                      threads=1))
    assert [(s.concurrency, s.path) for s in stats] == [(c, p) for c in (1, 2) for p in bench.PATHS]
    assert all(s.n == 4 and s.p50_ms > 0 and s.p95_ms >= s.p50_ms and s.throughput_rps > 0 for s in stats)
    lines = bench.table(stats).splitlines()
    assert len(lines) == 2 + len(stats) and lines[2].startswith("| 1 | in-process |")


def test_in_process_gets_as_many_workers_as_triton_has_instances(triton_served):
    """Same resources on both sides: the repository's instance count (the cpu profile starts 2)."""
    assert bench.instance_count(triton_served.repo) == 2
