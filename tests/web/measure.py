"""Measure the browser student for docs/web.md (not a test): site sizes, time to first answer in
headless chromium (cold: a new profile; warm: a reload, files from the service worker cache),
per-request latency in the page vs the Python runtime on the same intents, and the identical-answer
counts of the trained student. Usage (from the repo root, web/dist built):

    PYTHONPATH=$PWD:tests:tests/web .venv/bin/python tests/web/measure.py EXPORT_FP32 EXPORT_INT8 [--screenshot PNG]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from browser import chromium, static_server, wait_answered

REQUESTS = ["golden hour", "Morocco", "welding mask", "cold tone", "😈", "sunset in Paris", "neon night",
            "Charlie Chaplin", "warm vintage film", "blue hour by the sea"]
TIMED = """
const [intents, rounds, done] = arguments;
(async () => {
  const ms = [];
  for (let r = 0; r < rounds; r++) for (const s of intents) {
    const t = performance.now(); await vedit.student.predict(s); ms.push(performance.now() - t);
  }
  done(ms);
})();
"""


def site_sizes(site: Path) -> dict:
    files = [p for p in site.rglob("*") if p.is_file()]
    raw = sum(p.stat().st_size for p in files)
    gz = sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)
    model = sum(p.stat().st_size for p in files if p.relative_to(site).parts[0] == "model")
    return {"bytes": raw, "gzip": gz, "model": model}


def browser_times(site: Path, rounds: int, screenshot: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as prof, static_server(site) as url, chromium(Path(prof)) as d:
        d.get(url + "?intent=golden%20hour")
        wait_answered(d)
        cold = float(d.execute_script("return document.body.dataset.sinceStart"))
        d.set_script_timeout(60)
        d.execute_async_script("const done = arguments[0]; navigator.serviceWorker.ready.then(() => done(1));")
        warm = []
        for _ in range(3):
            d.get(url + "?intent=golden%20hour")
            wait_answered(d)
            warm.append(float(d.execute_script("return document.body.dataset.sinceStart")))
        if screenshot:
            d.save_screenshot(str(screenshot))
        d.set_script_timeout(600)
        ms = d.execute_async_script(TIMED, REQUESTS, rounds)
    return {"cold_ms": cold, "warm_ms": statistics.median(warm), "request_ms": statistics.median(ms)}


def python_times(export: Path, rounds: int, threads: int) -> float:
    from vedit.decoding import Predictor

    p = Predictor.load(export, threads=threads, draft=False)  # like the browser runtime
    p.predict(["warm up"])
    ms = []
    for _ in range(rounds):
        for s in REQUESTS:
            t = time.perf_counter()
            p.predict([s])
            ms.append((time.perf_counter() - t) * 1000)
    return statistics.median(ms)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("exports", nargs=2, type=Path, help="the T5 fp32 and int8 export dirs")
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from web_cases import INTENTS, Reference, compare, node_answers
    from vedit.web import build_site

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for export, precision in zip(args.exports, ("fp32", "int8")):
            site = build_site(export, Path(tmp) / precision).out_dir
            sizes = site_sizes(site)
            b = browser_times(site, args.rounds, args.screenshot if precision == "int8" else None)
            py1 = python_times(export, args.rounds, 1)
            py2 = python_times(export, args.rounds, 2)
            counts = compare(Reference(export), INTENTS, node_answers(site, INTENTS), precision=precision)
            rows.append({"precision": precision, **sizes, **b, "python_1t_ms": py1, "python_2t_ms": py2, "node": counts})
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"rows": rows, "uptime": uptime, "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
