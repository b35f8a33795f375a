"""MkDocs hook: the Results pages' tables, rendered at build time from the main job's own reports.

Nothing on the Results pages is retyped. A page asks for a table with a marker on a line of its
own, ``<!-- vedit:NAME -->``; this hook replaces it with Markdown built from

- ``docs/latency.json`` (what ``vedit bench latency`` writes: one run per model, every path's
  statistics, the machine, notes, profiles) for ``machine``, ``latency``, ``serving``,
  ``profiles`` and ``step-costs``;
- ``docs/main-job.md`` (the main job's log: its parity reports, offline metrics, exports and
  decoding guarantees) for ``parity``, ``metrics``, ``exports`` and ``guarantees``.

An unknown marker, or a report section that is missing, fails the build (the site is built with
``--strict`` by the tests): a results page can never silently show stale or empty tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- vedit:([a-z-]+) -->$", re.MULTILINE)
# vedit's own paths in a latency run: bold in the tables, and the rows others are compared with
OURS = {f"onnx-{p}{d}": p for p in ("fp32", "int8", "int4") for d in ("", "-draft")}


class ResultsError(PluginError):
    """A results marker that cannot be rendered (unknown name, missing report section)."""


def _docs(config) -> Path:
    return Path(config["docs_dir"])


def _latency(config) -> list[dict]:
    return json.loads((_docs(config) / "latency.json").read_text(encoding="utf-8"))


def _sections(config) -> dict[str, str]:
    """``## Title`` -> the first fenced block under it, from docs/main-job.md."""
    text = (_docs(config) / "main-job.md").read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"^## (.+?)\n+```\n(.*?)\n```", text, re.MULTILINE | re.DOTALL):
        out[m.group(1).strip()] = m.group(2)
    return out


def _section(config, prefix: str) -> list[tuple[str, str]]:
    found = [(t, body) for t, body in _sections(config).items() if t.startswith(prefix)]
    if not found:
        raise ResultsError(f"docs/main-job.md has no section starting with {prefix!r}")
    return found


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _share(x: float) -> str:
    return "<1%" if x < 0.005 else f"{x:.0%}"


def _same_precision_base(path: str) -> str:
    low = path.lower()
    if "int4" in low or "q4" in low:
        return "onnx-int4"
    return "onnx-int8" if ("int8" in low or "q8" in low) else "onnx-fp32"


def render_machine(config) -> str:
    m = _latency(config)[0]["machine"]
    pk = m.get("packages", {})
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    pkgs = ", ".join(f"{k} {v}" for k, v in pk.items())
    return (f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('threads')} threads per engine), {gpus}, "
            f"Python {m.get('python')}; load average at the start {m.get('load_average')}.\n\nPackages: {pkgs}.")


def render_latency(config) -> str:
    """One table per model: the paths timed side by side at concurrency 1."""
    out = []
    for run in _latency(config):
        by = {s["path"]: s for s in run["stats"] if s["concurrency"] == 1 and s["path"] in run["compared"]}
        checked = (run.get("texts_check") or {}).get("differing", {})
        intents = (run.get("texts_check") or {}).get("intents")
        ref = by.get("pytorch+grammar")
        rows = []
        for path in run["compared"]:
            s = by.get(path)
            if s is None:
                continue
            tokens = ("-" if s["free_tokens_per_request"] is None
                      else f"{_num(s['free_tokens_per_request'])} / {_num(s['forced_tokens_per_request'])}")
            speed = f"{ref['p50_ms'] / s['p50_ms']:.1f}x" if ref and s["p50_ms"] else "-"
            base = by.get(_same_precision_base(path))
            ratio = f"{s['p50_ms'] / base['p50_ms']:.2f}x" if base and base["p50_ms"] else "-"
            same = "-" if path not in checked else ("yes" if not checked[path] else f"{checked[path]}/{intents} differ")
            name = f"**`{path}`**" if path in OURS else f"`{path}`"
            rows.append([name, _ms(s["p50_ms"]), _ms(s["p95_ms"]), _num(s["decoder_calls_per_request"]), tokens,
                         speed, ratio, same])
        scripted = run.get("scripted")
        head = f"### {run['model']}\n\n"
        if scripted:
            head += (f"{scripted['requests']} requests steered to scripted answers "
                     f"({scripted['free_tokens_per_request']} free + {scripted['forced_tokens_per_request']} forced "
                     "tokens per request).\n\n")
        out.append(head + _table(
            ["path", "p50 ms", "p95 ms", "decoder calls / req", "free / forced tokens / req",
             "p50 speed-up vs `pytorch+grammar`", "this row ÷ vedit, same precision", "same texts"], rows))
        if run.get("notes"):
            out.append("\n".join(f"- {n}" for n in run["notes"] if not n.startswith("profile ")))
        if run.get("info"):
            out.append('??? note "What each path is"\n'
                       + "\n".join(f"    - `{p}`: {i}" for p, i in run["info"].items()))
    return "\n\n".join(out)


def render_serving(config) -> str:
    """Serving paths (in-process, Triton) at each concurrency level."""
    out = []
    for run in _latency(config):
        rows = [s for s in run["stats"] if s["path"] not in run["compared"]]
        if not rows:
            continue
        paths = list(dict.fromkeys(s["path"] for s in rows))
        levels = sorted({s["concurrency"] for s in rows})
        cell = {(s["concurrency"], s["path"]): s for s in rows}
        table = [[str(c)] + [(f"{_ms(cell[c, p]['p50_ms'])} / {cell[c, p]['throughput_rps']:.1f}"
                              if (c, p) in cell else "-") for p in paths] for c in levels]
        out.append(f"### {run['model']}\n\n"
                   + _table(["concurrency"] + [f"`{p}` p50 ms / req/s" for p in paths], table))
    if not out:
        raise ResultsError("docs/latency.json has no serving rows")
    return "\n\n".join(out)


def render_profiles(config) -> str:
    rows = []
    for run in _latency(config):
        for p in run.get("profiles") or []:
            wall = p["wall_ms"]
            parts = ", ".join(f"{k} {_ms(v)} ({_share(v / wall)})" for k, v in p["parts_ms"].items() if v)
            d = p.get("draft")
            drafts = "-" if not d else (f"{_num(d['proposed'])} drafted, {d['acceptance']:.0%} accepted; "
                                        f"{_num(d['decoder_calls'])} calls = {d['calls_per_free']:.2f}x free tokens")
            rows.append([run["model"], p["label"], _ms(wall), parts, drafts])
    return _table(["model", "export", "ms / request", "where it goes", "drafts (per request)"], rows)


def render_step_costs(config) -> str:
    rows = []
    for run in _latency(config):
        for c in run.get("step_costs") or []:
            rows.append([run["model"], c["precision"], f"{c['batch']} x {c['steps']}", _ms(c["vedit_ms"]),
                         _ms(c["genai_ms"]), f"{c['ratio']:.2f}x"])
    if not rows:
        raise ResultsError("docs/latency.json has no step_costs")
    return _table(["model", "precision", "batch x steps", "vedit ms / step", "onnxruntime-genai ms / step",
                   "vedit ÷ genai"], rows)


def _metrics_rows(body: str) -> tuple[list[str], list[list[str]]]:
    """The text table ``vedit.data.metrics`` prints (``test n (sel, qual, final) x 3 overall``)."""
    rows = []
    for line in body.splitlines():
        cells = re.findall(r"\([^)]*\)|\S+", line)
        if cells and cells[0] in ("All", "r_3", "r_5"):
            rows.append(cells)
    return ["test", "n", "adjust (sel, qual, final)", "selective_adjust (sel, qual, final)",
            "filter (sel, qual, final)", "overall"], rows


def render_metrics(config) -> str:
    out = []
    for title, body in _section(config, "Offline metrics"):
        head, rows = _metrics_rows(body)
        if not rows:
            raise ResultsError(f"docs/main-job.md section {title!r} has no metrics rows")
        name = re.sub(r"\s*\(\d+ s\)$", "", title.split(":", 1)[-1].strip())  # drop the stage's duration
        out.append(f"**{name}**\n\n" + _table(head, rows))
    return "\n\n".join(out)


def render_parity(config) -> str:
    (title, body), = _section(config, "Parity summary")
    rows = []
    for line in body.splitlines()[1:]:
        m = re.match(r"(\S+ \S+)\s+(\d+)\s+(\S+ -> \S+ \(\S+\))\s+(\S+)\s+(\S+)\s+(PASS|FAIL)$", line.strip())
        if not m:
            raise ResultsError(f"docs/main-job.md {title!r}: cannot read {line!r}")
        rows.append(list(m.groups()))
    return _table(["export", "rows", "overall, constrained PyTorch -> export (delta)", "exact agreement",
                   "valid", "gate"], rows)


def _block(config, prefix: str) -> str:
    (_, body), = _section(config, prefix)
    return "```\n" + body + "\n```"


RENDERERS: dict[str, Callable] = {
    "machine": render_machine,
    "latency": render_latency,
    "serving": render_serving,
    "profiles": render_profiles,
    "step-costs": render_step_costs,
    "metrics": render_metrics,
    "parity": render_parity,
    "exports": lambda config: _block(config, "Exports"),
    "guarantees": lambda config: _block(config, "Constrained decoding guarantees"),
    "merge": lambda config: _block(config, "LoRA merge"),
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(m: re.Match) -> str:
        name = m.group(1)
        if name not in RENDERERS:
            raise ResultsError(f"{page.file.src_path}: unknown results marker {name!r} "
                               f"(known: {', '.join(sorted(RENDERERS))})")
        return RENDERERS[name](config)

    return MARKER.sub(replace, markdown)
