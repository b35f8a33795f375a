"""The CLI a user expects: -h everywhere, a home that does not depend on the working directory,
and one `error:` line for every failure, vedit's own or not."""

from __future__ import annotations

import logging
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from vedit import paths
from vedit.cli import cli
from vedit.clibase import VeditGroup, show_progress


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_dash_h_on_every_command(path):
    res = CliRunner().invoke(cli, [*path, "-h"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Usage: cli {' '.join(path)}")


def test_vedit_export_dash_h_as_its_own_program():
    res = subprocess.run([sys.executable, "-c", "from vedit.cli import export_main; export_main()", "-h"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: vedit-export")


def test_home_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("VEDIT_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    here = paths.home()
    monkeypatch.chdir("/")
    assert paths.home() == here and tmp_path not in here.parents and here.name == "vedit"
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path / "h"))
    assert paths.exports_dir() == tmp_path / "h" / "exports"


def test_predict_without_a_model_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    res = CliRunner().invoke(cli, ["predict", "golden hour"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"error: no model at {tmp_path}/exports/flan-t5-fp32; export the demo student first "
        "(vedit export flan-t5 --to onnx) or pass --model EXPORT_DIR"]


@click.group(cls=VeditGroup)
def _demo_group() -> None:
    pass


@_demo_group.command("boom")
@click.argument("kind")
def _boom(kind: str) -> None:
    if kind == "runtime":
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nsecond line")
    raise ModuleNotFoundError("No module named 'tritonclient'", name="tritonclient.grpc")


@_demo_group.command("work")
def _work() -> None:
    show_progress()
    logging.getLogger("vedit.export.pipeline").info("exporting to ONNX")
    logging.getLogger("vedit.export.pipeline").debug("not shown")


def test_library_progress_is_logging_shown_by_commands(caplog):
    """The library only logs (an application's logging gets the records); a command shows INFO
    lines with their stage, once, even when something installed a root handler meanwhile."""
    with caplog.at_level(logging.INFO, logger="vedit"):
        logging.getLogger("vedit.export.pipeline").info("library only")
    assert [r.getMessage() for r in caplog.records] == ["library only"]
    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    root, seen = logging.getLogger(), Collect()
    root.addHandler(seen)  # like the handler onnxruntime's quantizer leaves (logging.warning())
    try:
        res = CliRunner().invoke(_demo_group, ["work"])
    finally:
        root.removeHandler(seen)
    assert res.exit_code == 0 and res.output == "[export] exporting to ONNX\n"
    assert seen.records == []  # printed once, by the command's handler only


@pytest.mark.parametrize("kind, line", [
    ("runtime", "error: builtins RuntimeError: [ONNXRuntimeError] : 1 : FAIL : Load model failed (not a vedit "
                "error: run again with VEDIT_DEBUG=1 for the traceback, and report it if it looks like a bug)"),
    ("module", "error: this command needs the Python package 'tritonclient', which is not installed; "
               "pip install 'vedit[triton]'"),
])
def test_foreign_errors_are_one_line(kind, line, monkeypatch):
    monkeypatch.delenv("VEDIT_DEBUG", raising=False)
    res = CliRunner().invoke(_demo_group, ["boom", kind])
    assert res.exit_code == 1
    assert res.output.splitlines() == [line]
    monkeypatch.setenv("VEDIT_DEBUG", "1")
    res = CliRunner().invoke(_demo_group, ["boom", kind])
    assert isinstance(res.exception, (RuntimeError, ModuleNotFoundError))  # the traceback, on request


def test_serve_binds_to_localhost_unless_told():
    serve = cli.commands["triton"].commands["serve"]
    host = next(p for p in serve.params if p.name == "host")
    assert host.default == "127.0.0.1"
    assert "0.0.0.0" in host.help
