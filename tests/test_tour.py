"""The main job shows the T5 student's answers before the Llama stage; the tour keeps to <home>/tour;
the ``vedit demo`` group's options reach its subcommands.

The tour end to end (every section, Triton, the plot) is tests/test_main_job.py; these tests stop the
run at the Llama stage to stay cheap (tiny T5 student, one export: seconds).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vedit import pipeline
from vedit.intents import SAMPLE_INTENTS
from vedit.pipeline import PipelineOptions

pytestmark = pytest.mark.slow


class _AtLlamaStage(Exception):
    pass


def _run_until_llama(options: PipelineOptions) -> tuple[list[str], bool]:
    """Run the pipeline, recording what it prints, until the Llama stage announces itself.

    Returns the messages and whether the Llama student existed on disk at that moment.
    """
    home = pipeline.pipeline_home(options)
    seen: list[str] = []
    llama_existed = []

    def echo(msg: str) -> None:
        seen.append(msg)
        if pipeline.STAGES["llama"].title in msg:
            llama_existed.append((home / "students" / "llama-base").exists())
            raise _AtLlamaStage

    with pytest.raises(_AtLlamaStage):
        pipeline.run(options, echo)
    return seen, llama_existed[0]


def test_tour_prints_t5_answers_before_the_llama_stage(tmp_path):
    options = PipelineOptions(quick=True, home=tmp_path, threads=1, parity_limit=4, latency_requests=3)
    seen, llama_existed = _run_until_llama(options)
    text = "\n".join(seen)

    assert not llama_existed  # the Llama student is trained after the answers, not before
    assert "TOUR" in seen[0] and str(tmp_path / "tour") in seen[0]
    titles = [m for m in seen if m.startswith("\n--- [")]
    assert [t.split("] ", 1)[1].split(" (about")[0] for t in titles] == [
        pipeline.STAGES[k].title for k in ("t5", "t5-export", "answers", "llama")]
    assert all("on 2 cores" in t for t in titles)

    answers = next(m for m in seen if m.startswith("\n=== First answers"))
    assert "t5    fp32:" in answers and "MB ONNX, validation passed=True" in answers
    for intent in SAMPLE_INTENTS:
        assert f"\n{intent}\n" in answers
    # each tool call is printed as the runtime's canonical JSON, one line per tool
    calls = [line.split(None, 1) for line in answers.splitlines() if line.startswith("  ")]
    assert [c[0] for c in calls] == ["adjust", "selective_adjust", "filter"] * len(SAMPLE_INTENTS)
    for _, rest in calls:
        json.loads(rest.removesuffix("  (not used)"))
    assert text.index("=== First answers") < text.index(pipeline.STAGES["llama"].title)
    # the answers drawn on the sample photos: the contact sheet, in the tour's reports (vedit.render)
    sheet = tmp_path / "tour" / "reports" / "contact-sheet.png"
    assert f"contact sheet: {sheet}" in answers and sheet.stat().st_size > 50_000
    # the T5 export as a static site, and how to open it (web/dist is built by scripts/test.sh)
    site = tmp_path / "tour" / "web" / "flan-t5-fp32"
    web = next(m for m in seen if m.startswith("\n=== In the browser"))
    assert f"python -m http.server -b 127.0.0.1 -d {site} 8000" in web and "?intent=golden%20hour" in web
    assert (site / "index.html").is_file() and (site / "model" / "web.json").is_file()

    # the tour lives apart from the full run's home
    assert (tmp_path / "tour" / "exports" / "flan-t5-fp32" / "manifest.json").is_file()
    assert not (tmp_path / "students").exists() and not (tmp_path / "exports").exists()

    # a re-run reuses the student and the export, and says so
    seen, _ = _run_until_llama(options)
    text = "\n".join(seen)
    assert "reused: t5 (" in text and "reused: tokenizer (" in text and "built: " not in text
    assert f"reused: {tmp_path / 'tour' / 'exports' / 'flan-t5-fp32'} (same source weights)" in text
    assert "=== First answers" in text


def test_demo_group_options_reach_the_subcommands(tmp_path, monkeypatch):
    from vedit.cli import cli
    from vedit.students import demo

    runner = CliRunner()
    home = tmp_path / "h"
    res = runner.invoke(cli, ["demo", "--home", str(home), "--quick", "build"])
    assert res.exit_code == 0, res.output
    assert demo.is_built(home, quick=True)
    res = runner.invoke(cli, ["demo", "--home", str(home), "metrics", "--student", "t5", "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)) == {"All", "r_3", "r_5"}

    # options a subcommand has no use for are refused, not dropped
    for args, flag in ((["--seed", "3", "metrics"], "--seed"), (["--quick", "metrics"], "--quick")):
        res = runner.invoke(cli, ["demo", "--home", str(home), *args])
        assert res.exit_code == 2 and f"{flag} does not apply to `vedit demo metrics`" in res.output

    # `run` takes --home/--quick/--seed/--force from the group (what reaches the pipeline is recorded)
    got: list[PipelineOptions] = []
    monkeypatch.setattr(pipeline, "run", lambda options, echo: got.append(options) or pipeline.PipelineReport())
    res = runner.invoke(cli, ["demo", "--home", str(home), "--quick", "--seed", "4", "--force", "run"])
    assert res.exit_code == 0, res.output
    o = got[-1]
    assert (o.home, o.quick, o.seed, o.force) == (home, True, 4, True)
    assert pipeline.pipeline_home(o) == home.resolve() / "tour"
    assert (o.parity_limit, o.latency_requests, o.base_shape) == (12, 3, False)  # the tour's sizes
    res = runner.invoke(cli, ["demo", "run", "--quick", "--requests", "4", "--parity-limit", "7"])
    assert res.exit_code == 0, res.output
    assert (got[-1].latency_requests, got[-1].parity_limit) == (4, 7)  # given sizes win over the tour's
    res = runner.invoke(cli, ["demo", "run"])
    assert res.exit_code == 0, res.output
    o = got[-1]
    assert (o.quick, o.home, o.seed, o.parity_limit, o.latency_requests, o.base_shape) == (
        False, None, 0, 200, 30, True)
