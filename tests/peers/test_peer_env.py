"""Peer environments: a real venv with a real (tiny) requirement, cached, rebuilt only when half-built."""

from __future__ import annotations

import json
import subprocess

import pytest

from vedit.peers.env import MARKER, TORCH_PIN, env_key, env_path, is_ready, peer_env, venv_python
from vedit.errors import PeerError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEDIT_HOME", str(tmp_path))
    return tmp_path


def test_key_depends_on_requirements_not_their_order():
    assert env_key("p", ["a", "b"]) == env_key("p", ["b", "a"])
    assert env_key("p", ["a"]) != env_key("p", ["a==1"])
    assert env_key("p", ["a"]) != env_key("q", ["a"])
    with pytest.raises(PeerError):
        env_key("../escape", ["a"])


def test_builds_once_replaces_a_half_built_leftover_and_reuses(home, caplog):
    target = env_path("tiny", ["six"])
    assert target.parent == home / "peers"
    target.mkdir(parents=True)
    (target / "junk-from-a-killed-build").write_text("x")  # no marker: not an environment
    caplog.set_level("INFO", logger="vedit.peers")
    got = peer_env("tiny", ["six"])
    assert got == target and is_ready(got)
    assert not (got / "junk-from-a-killed-build").exists()
    assert any("pip install six" in r.getMessage() for r in caplog.records)  # progress reaches vedit.peers
    assert any("Successfully installed" in r.getMessage() for r in caplog.records)
    out = subprocess.run([venv_python(got), "-c", "import six, sys; print(six.__version__, sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == str(got)  # the env's own interpreter, not the main venv
    marker = json.loads((got / MARKER).read_text())
    assert marker["requirements"] == ["six"]
    assert (got / "vedit-constraints.txt").read_text().strip() == TORCH_PIN
    stamp = (got / MARKER).stat().st_mtime_ns
    caplog.clear()
    assert peer_env("tiny", ["six"]) == got  # cached: nothing is installed again
    assert (got / MARKER).stat().st_mtime_ns == stamp
    assert not any("pip install" in r.getMessage() for r in caplog.records)


def test_failed_install_is_one_line_and_leaves_nothing(home, tmp_path):
    missing = tmp_path / "no-such-project"
    with pytest.raises(PeerError) as err:
        peer_env("broken", [str(missing)])
    msg = str(err.value)
    assert "\n" not in msg
    assert "peer env broken: pip install failed" in msg and str(missing) in msg and ".pip.log" in msg
    assert not env_path("broken", [str(missing)]).exists()  # no half-built env for a later run to trust
