"""Commands that need an optional extra say which one, in one line, before any work starts."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedit import extras
from vedit.errors import MissingExtraError

REPO = Path(__file__).resolve().parents[1]


def test_every_listed_module_is_installed_with_the_test_extras():
    # the test venv has every extra: a misspelt module name would make a command refuse forever
    assert {e: extras.missing_modules(e) for e in extras.EXTRAS} == {e: [] for e in extras.EXTRAS}


def test_checked_extras_exist_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = {k for k in cfg["options.extras_require"]}
    assert set(extras.EXTRAS) <= declared


def test_missing_extra_message(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "triton", ("tritonclient", "no_such_module_xyz"))
    with pytest.raises(MissingExtraError) as exc:
        extras.require_extras("export", "triton", command="vedit demo run")
    assert str(exc.value) == ("vedit demo run needs the vedit[triton] extra (missing: no_such_module_xyz); "
                              "install it with: pip install 'vedit[triton]'")
    with pytest.raises(ValueError, match="unknown extra"):
        extras.missing_modules("gpu")


@pytest.mark.parametrize("args, extra", [
    (["demo", "run", "--quick"], "bench"),
    (["demo", "build", "--quick"], "export"),
    (["export", "flan-t5", "--to", "onnx"], "export"),
    (["triton", "build", "nowhere"], "triton"),
    (["bench", "latency"], "bench"),
    (["predict", "--url", "http://127.0.0.1:1", "golden hour"], "triton"),
])
def test_commands_refuse_before_any_work(monkeypatch, tmp_path, args, extra):
    from vedit.cli import cli

    monkeypatch.setenv("VEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(extras.EXTRAS, extra, ("no_such_module_xyz",))
    result = CliRunner().invoke(cli, args, prog_name="vedit")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: vedit {args[0]}")
    assert f"pip install 'vedit[" in lines[0] and extra in lines[0]
    assert not (tmp_path / "home").exists()  # nothing was built or written
