"""The JSON-lines worker protocol, against a real subprocess (the shipped echo worker)."""

from __future__ import annotations

import sys
import time

import pytest

from vedit.peers.worker import WORKERS, Worker
from vedit.errors import PeerError

ECHO = WORKERS / "echo.py"


def test_ready_info_and_replies_survive_library_chatter_on_stdout():
    with Worker(sys.executable, ECHO, ["--noisy"]) as w:
        assert w.info["executable"] == sys.executable
        for k in range(3):
            reply = w.run(sleep_s=0.03, k=k, payload={"ids": [1, 2, 3]})
            assert reply["echo"] == {"op": "run", "sleep_s": 0.03, "k": k, "payload": {"ids": [1, 2, 3]}}
            assert 25 <= reply["ms"] < 1000  # timed inside the worker, around the work only
        assert w.alive
    assert not w.alive


def test_an_error_reply_raises_and_the_worker_keeps_serving():
    with Worker(sys.executable, ECHO) as w:
        with pytest.raises(PeerError, match="peer worker echo: ValueError: asked to fail"):
            w.request("fail")
        assert w.run()["echo"] == {"op": "run"}


def test_a_dead_worker_is_reported_with_its_exit_code_and_stderr():
    w = Worker(sys.executable, ECHO)
    with pytest.raises(PeerError) as err:
        w.request("die", code=7)
    assert "exited with code 7" in str(err.value) and "dying on request" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(PeerError, match="not running"):
        w.run()


def test_a_hung_worker_times_out_and_is_killed():
    w = Worker(sys.executable, ECHO, timeout=1.5)
    began = time.monotonic()
    with pytest.raises(PeerError, match="no answer within 2 s"):
        w.request("hang")
    assert time.monotonic() - began < 10
    assert not w.alive


def test_setup_failure_and_missing_interpreter_are_one_line_errors(tmp_path):
    with pytest.raises(PeerError, match="failed to start: RuntimeError: no model at /x"):
        Worker(sys.executable, ECHO, ["--fail-setup", "no model at /x"])
    with pytest.raises(PeerError, match="cannot start"):
        Worker(tmp_path / "bin" / "python", ECHO)


def test_the_faster_backend_is_kept_and_the_other_closed():
    """CTranslate2's rows run on whichever of its documented backends is faster on the host: here two
    real echo workers, one slower per request, stand for the two backends."""
    from vedit.peers.ctranslate2_peer import TRIAL_REQUESTS, best_backend

    started: dict[str, Worker] = {}

    def start(name: str) -> Worker:
        started[name] = Worker(sys.executable, ECHO, name=name)
        return started[name]

    def trial(w: Worker) -> float:
        return w.run(sleep_s=0.06 if w.name == "slow" else 0.01)["ms"]

    kept, line = best_backend(start, trial, backends=("slow", "fast"))
    try:
        assert kept is started["fast"] and kept.alive and not started["slow"].alive
        assert line.startswith("backend fast") and "slow" in line and f"median of {TRIAL_REQUESTS}" in line
    finally:
        kept.close()


def test_a_backend_that_cannot_start_is_passed_over():
    from vedit.peers.ctranslate2_peer import best_backend

    def start(name: str) -> Worker:
        return Worker(sys.executable, ECHO, ["--fail-setup", "no such backend"] if name == "broken" else [], name=name)

    kept, line = best_backend(start, lambda w: w.run()["ms"], backends=("broken", "ok"))
    try:
        assert kept.name == "ok" and "broken" not in line
    finally:
        kept.close()
    with pytest.raises(PeerError, match="no backend could start"):
        best_backend(start, lambda w: w.run()["ms"], backends=("broken",))
