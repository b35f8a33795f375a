"""The documentation site: ``mkdocs build --strict`` succeeds, every page of the nav is built, and
the generated pages say what their sources say.

- Strict mode turns every warning into a failure: a broken link or anchor, a page left out of the
  nav, a docstring mkdocstrings cannot read.
- The Results page's tables are rendered by docs/hooks/results.py from docs/latency.json and the
  main-job log; here the expected figures are computed again from those files, independently.
- The CLI reference lists every command of the click tree; the API reference has the public names.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                out += _nav_pages([value]) if isinstance(value, str) else _nav_pages(value)
    return out


def _html_path(site: Path, page: str) -> Path:
    stem = page[: -len(".md")]
    if stem == "index" or stem.endswith("/index"):
        return site / (stem[: -len("index")] + "index.html")
    return site / stem / "index.html"


def _text(path: Path) -> str:
    """The page's visible text, whitespace collapsed."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                        str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    print(r.stderr[-2000:])
    assert r.returncode == 0, r.stderr[-4000:]
    return {"dir": out, "log": r.stderr}


def test_every_page_in_the_nav_is_built(site):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = _nav_pages(config["nav"])
    assert {"index.md", "getting-started.md", "results/index.md", "reference/cli.md", "reference/api.md",
            "latency.md", "main-job.md"} <= set(pages)
    on_disk = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert set(pages) == on_disk, {"not in nav": sorted(on_disk - set(pages)), "missing": sorted(set(pages) - on_disk)}
    for page in pages:
        assert _html_path(site["dir"], page).is_file(), page
    print("pages:", ", ".join(pages))
    assert "WARNING" not in site["log"]


def test_results_tables_come_from_the_reports(site):
    text = _text(site["dir"] / "results" / "index.html")
    assert "vedit:" not in text  # every marker was replaced
    runs = json.loads((REPO / "docs" / "latency.json").read_text(encoding="utf-8"))
    for run in runs:
        assert run["model"] in text
        one = {s["path"]: s for s in run["stats"] if s["concurrency"] == 1}
        fp32, ref = one["onnx-fp32"], one["pytorch+grammar"]
        speedup = f"{ref['p50_ms'] / fp32['p50_ms']:.1f}x"
        # the vedit fp32 row: its p95 and calls per request, then its speed-up over constrained PyTorch
        calls = f"{fp32['decoder_calls_per_request']:.1f}"
        assert re.search(rf"onnx-fp32 [\d,.]+ [\d,.]+ {re.escape(calls)} [\d./ -]+ {re.escape(speedup)} 1\.00x", text), \
            (run["model"], speedup)
    log = (REPO / "docs" / "main-job.md").read_text(encoding="utf-8")
    summary = log.split("## Parity summary", 1)[1].split("```", 2)[1]
    rows = [line.split() for line in summary.strip().splitlines()[1:]]
    assert len(rows) == 4
    for cells in rows:  # e.g. ['t5', 'int8', '200', '0.845', '->', '0.842', '(-0.0029)', '84.8%', '100.0%', 'PASS']
        assert " ".join([cells[0], cells[1], cells[2], *cells[3:7], cells[7], cells[8], cells[9]]) in text, cells
    assert (site["dir"] / "latency.png").is_file()


def _commands(group: click.Group, prefix: str) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        out.append(f"{prefix} {name}")
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
    return out


def test_cli_reference_has_every_command(site):
    from vedit.cli import cli

    text = _text(site["dir"] / "reference" / "cli" / "index.html")
    commands = _commands(cli, "vedit")
    assert len(commands) > 15
    missing = [c for c in commands if c not in text]
    assert not missing, missing
    assert "--profile" in text and "--model" in text


def test_api_reference_has_the_public_names(site):
    text = _text(site["dir"] / "reference" / "api" / "index.html")
    for name in ("default_registry", "ToolCall", "Predictor", "connect", "aconnect", "build_repository",
                 "TritonServer", "export_model", "run_parity", "get_profile"):
        assert name in text, name


def _hook():
    spec = importlib.util.spec_from_file_location("results_hook", REPO / "docs" / "hooks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page:
    class file:
        src_path = "results/index.md"


def test_results_hook_refuses_unknown_markers_and_missing_sections(tmp_path):
    hook = _hook()
    with pytest.raises(hook.ResultsError, match="unknown results marker 'nope'"):
        hook.on_page_markdown("x\n<!-- vedit:nope -->\n", _Page, {"docs_dir": str(REPO / "docs")}, None)
    (tmp_path / "main-job.md").write_text("# vedit main job\n\n## Exports\n\n```\nt5 fp32\n```\n", encoding="utf-8")
    with pytest.raises(hook.ResultsError, match="no section starting with 'Parity summary'"):
        hook.on_page_markdown("<!-- vedit:parity -->", _Page, {"docs_dir": str(tmp_path)}, None)
    assert hook.on_page_markdown("<!-- vedit:exports -->", _Page, {"docs_dir": str(tmp_path)}, None) == \
        "```\nt5 fp32\n```"


#: README results-table labels -> the latency bench's path names (flan-t5-base shape)
README_ROWS = {
    "PyTorch `generate` + vedit grammar (oneDNN linear)": "pytorch+grammar",
    "optimum ORT `generate` + vedit grammar, fp32": "optimum-ort+grammar-fp32",
    "CTranslate2 fp32, oneDNN (unconstrained, told the length)": "ctranslate2-fp32",
    "vedit fp32, one call per token": "onnx-fp32-step",
    "vedit fp32, jump-forward only": "onnx-fp32",
    "**vedit fp32** (jump-forward + drafts, the default)": "onnx-fp32-draft",
    "**vedit int8** (weight-only, + drafts)": "onnx-int8-draft",
}


def test_readme_is_short_and_its_results_table_is_the_latest_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "bash scripts/demo.sh " in readme and "bash scripts/test.sh " in readme  # the two set-up commands
    runs = json.loads((REPO / "docs" / "latency.json").read_text(encoding="utf-8"))
    run = next(r for r in runs if r["model"].startswith("flan-t5-base"))
    one = {s["path"]: s for s in run["stats"] if s["concurrency"] == 1}
    ref = one["pytorch+grammar"]["p50_ms"]
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in README_ROWS:
            rows[README_ROWS[cells[0]]] = cells[1:]
    assert set(rows) == set(README_ROWS.values())
    for path, (p50, calls, speedup) in rows.items():
        s = one[path]
        assert (p50, calls, speedup) == (f"{s['p50_ms']:,.0f}", f"{s['decoder_calls_per_request']:.1f}",
                                         f"{ref / s['p50_ms']:.1f}x"), path
    # and its parity sentence: the int8 agreements of the main-job log's parity summary
    log = (REPO / "docs" / "main-job.md").read_text(encoding="utf-8")
    summary = log.split("## Parity summary", 1)[1].split("```", 2)[1]
    int8 = [line.split()[7] for line in summary.splitlines() if " int8 " in f" {line} "]
    assert len(int8) == 2 and all(a in readme for a in int8), int8
