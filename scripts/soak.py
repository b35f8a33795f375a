#!/usr/bin/env python
"""Soak a supervised tritonserver (behind the nginx front) and report memory at start and end.

    .venv/bin/python scripts/soak.py REPO_OR_EXPORT [--seconds 150] [--concurrency 16] [--json OUT]

Bounded in time and in requests (``--max-requests``). Every request carries an intent never sent
before, so the response cache answers none of them and the model works for every one. Prints a
progress line every 10 s; at the end: requests sent / answered / failed, throughput, latency
percentiles, the supervisor's events, and the resident memory (VmRSS) of tritonserver, each
python-backend stub and nginx at start (after the first requests) and at the end. The first
``--check`` answers are compared with the in-process predictor. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory(server) -> dict[str, int]:
    """KiB resident per process: tritonserver, its stubs (by instance), nginx (master + workers)."""
    out = {"tritonserver": rss_kib(server.pid)}
    for child in children(server.pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if len(argv) > 8 and argv[0].endswith(b"triton_python_backend_stub"):
                out[f"stub {argv[8].decode()}"] = rss_kib(child)
        except OSError:
            continue
    if server.front is not None and server.front.pid is not None:
        master = server.front.pid
        out["nginx"] = rss_kib(master) + sum(rss_kib(c) for c in children(master))
    return out


async def drive(url: str, seconds: float, concurrency: int, max_requests: int, tally: dict, latencies: list,
                answers: dict, check: int) -> None:
    from vedit.client import aconnect

    looks = ["golden hour", "Morocco", "cold tone", "welding mask", "neon night", "X ray", "😈", "black & white"]
    counter = iter(range(max_requests))
    deadline = time.monotonic() + seconds

    async with aconnect(url, deadline=60.0, timeout=60.0) as client:
        async def worker(w: int) -> None:
            while time.monotonic() < deadline:
                try:
                    i = next(counter)
                except StopIteration:
                    return
                intent = f"{looks[i % len(looks)]} soak {i}"
                tally["sent"] += 1
                t0 = time.perf_counter()
                try:
                    (p,) = await client.predict([intent])
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    tally["failed"] += 1
                    tally.setdefault("errors", []).append(str(exc)[:200])
                    continue
                latencies.append(time.perf_counter() - t0)
                tally["answered"] += 1
                if i < check:
                    answers[intent] = p.to_json()

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        tally["client_retried"] = client.stats.retried


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", type=Path, help="a Triton repository, or an export directory (a cpu repo is built)")
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--cache-mb", type=int, default=64, help="Triton's response cache (0: none)")
    ap.add_argument("--check", type=int, default=64, help="answers compared with the in-process predictor")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vedit.serving import TritonServer
    from vedit.triton_repo import build_repository

    target = args.target
    work = tempfile.TemporaryDirectory(prefix="vedit-soak-")
    if (target / "manifest.json").exists():
        target = build_repository(target, profile="cpu", out=Path(work.name) / "repo")
    export_dir = next(target.glob("*/1/export"))

    with TritonServer(target, supervise=True, cache_bytes=args.cache_mb * 1024 * 1024, log_path=Path(work.name) / "tritonserver.log") as server:
        url = server.urls[args.protocol]
        tally = {"sent": 0, "answered": 0, "failed": 0}
        latencies: list[float] = []
        answers: dict[str, str] = {}
        # warm: the first requests load onnxruntime's lazy parts; memory "at start" is after them
        asyncio.run(drive(url, 5.0, args.concurrency, 64, {"sent": 0, "answered": 0, "failed": 0}, [], {}, 0))
        start_mem, started = memory(server), time.monotonic()
        print(f"soak: {url}, {args.concurrency} in flight, {args.seconds:.0f} s; RSS at start (KiB): {start_mem}",
              flush=True)

        async def run_with_progress() -> None:
            task = asyncio.create_task(drive(url, args.seconds, args.concurrency, args.max_requests, tally,
                                             latencies, answers, args.check))
            while not task.done():
                await asyncio.wait([task], timeout=10)
                el = time.monotonic() - started
                mem = memory(server)
                stubs = "/".join(str(v // 1024) for k, v in mem.items() if k.startswith("stub"))
                print(f"  {el:5.0f} s  sent {tally['sent']}  answered {tally['answered']}  failed {tally['failed']}  "
                      f"RSS MiB: tritonserver {mem['tritonserver'] // 1024}, stubs {stubs}, "
                      f"nginx {mem.get('nginx', 0) // 1024}", flush=True)
            task.result()

        asyncio.run(run_with_progress())
        elapsed = time.monotonic() - started
        end_mem = memory(server)
        events = [(e.kind, e.detail) for e in server.supervisor.events] if server.supervisor else []

    from vedit.decoding import Predictor

    expected = Predictor.load(export_dir, threads=1).predict(list(answers))
    mismatched = sum(1 for (intent, got), p in zip(answers.items(), expected) if got != p.to_json())
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    figures = {
        "seconds": round(elapsed, 1), "concurrency": args.concurrency, "protocol": args.protocol, **tally,
        "req_per_s": round(tally["answered"] / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
        "checked": len(answers), "mismatched": mismatched,
        "rss_kib_start": start_mem, "rss_kib_end": end_mem, "supervisor_events": events,
    }
    figures.pop("errors", None)
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if tally.get("errors"):
        print("first errors:", *tally["errors"][:3], sep="\n  ")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0 if tally["failed"] == 0 and mismatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
