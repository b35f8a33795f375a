"""Helpers for the fault tests: a stream of distinct intents sent in small predict calls, checked
against the in-process runtime, with the figures the closing notes quote."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vedit.decoding import Predictor

LOOKS = ["golden hour", "Morocco", "cold tone", "welding mask", "X ray", "neon night", "Dark atmosphere",
         "black & white", "Charlie Chaplin", "warm film", "misty forest", "vivid sunset"]


def distinct_intents(n: int, tag: str) -> list[str]:
    """``n`` different intents (no two equal, so Triton's response cache answers none of them)."""
    return [f"{LOOKS[i % len(LOOKS)]} {tag}{i}" for i in range(n)]


class Stream:
    """Sends intents ``chunk`` at a time, at most one chunk per ``pace`` seconds, and keeps every
    answer; an intent answered twice, or not answered, fails the test."""

    def __init__(self, client, intents: list[str], *, chunk: int = 3, pace: float = 0.3) -> None:
        self.client = client
        self._todo: Iterator[list[str]] = (intents[k:k + chunk] for k in range(0, len(intents), chunk))
        self.pace = pace
        self.sent: list[str] = []
        self.answers: dict[str, object] = {}

    def send_one_chunk(self) -> None:
        chunk = next(self._todo, None)
        if chunk is None:
            raise AssertionError("the stream ran out of intents")
        start = time.monotonic()
        self.sent.extend(chunk)
        got = self.client.predict(chunk)
        assert [p.intent for p in got] == chunk
        for intent, prediction in zip(chunk, got):
            assert intent not in self.answers, f"{intent!r} answered twice"
            self.answers[intent] = prediction
        time.sleep(max(0.0, self.pace - (time.monotonic() - start)))

    def until(self, done: Callable[[], bool], what: str, *, timeout: float = 60.0) -> None:
        """Send chunks until ``done()`` (checked after each chunk)."""
        deadline = time.monotonic() + timeout
        while True:
            self.send_one_chunk()
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout:.0f} s of streaming")

    def check_against(self, export_dir: Path) -> None:
        """Every intent sent was answered, exactly as the in-process runtime answers it."""
        reference = Predictor.load(export_dir, threads=1).predict(self.sent)
        assert sorted(self.answers) == sorted(self.sent)
        for r in reference:
            assert self.answers[r.intent].to_json() == r.to_json(), r.intent


def figures(stats: dict) -> str:
    """The line the closing notes quote."""
    return ("sent {sent} / answered {answered} / retried {retried} (failovers {failovers}) / lost {lost}; "
            "answered by {answered_by}").format(**stats)


def children_named(pid: int, name: str) -> list[int]:
    """Child processes of ``pid`` whose command line contains ``name`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and name in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` is dead (gone or a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive after {timeout} s")


__all__ = ["LOOKS", "Stream", "children_named", "distinct_intents", "figures", "wait_gone"]

