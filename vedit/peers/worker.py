"""A peer engine running in its own interpreter, spoken to in JSON lines.

Why a subprocess: a peer lives in its own environment (see :mod:`vedit.peers.env`), so it
cannot be imported here. The worker loads its model once at start and then answers requests; the
time it reports (``ms``) is measured inside it around generation only, so process start, model
load, pipes and JSON stay out of the peer's figure. The bench still times the whole call as well.

Protocol (the worker side is ``workers/jsonl_protocol.py``): the worker's first line is
``{"ready": true, ...}`` (its info) or ``{"error": ...}``; then one reply line per request line,
``{"op": "run", ...}`` -> ``{"ms": float, ...}`` or ``{"error": ...}``; ``{"op": "exit"}`` stops it.
A worker that exits, hangs past the timeout or replies with an error raises :class:`PeerError`
whose one line says which worker, what happened and the end of its stderr.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vedit.peers.env import child_env
from vedit.errors import PeerError

log = logging.getLogger(__name__)

#: folder of the standalone worker scripts shipped with vedit
WORKERS = Path(__file__).resolve().parent / "workers"
_EOF = object()


def _stop(proc: subprocess.Popen, stderr) -> None:
    """Finalizer: end the worker (it is ours) and close its stderr file."""
    if proc.poll() is None:
        try:
            proc.stdin.close()  # a healthy worker ends its loop on EOF
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
    stderr.close()


class Worker:
    """``Worker(python, script, args)``: start ``python script *args`` and wait for its ready line.

    ``start_timeout``: seconds for loading the model; ``timeout``: seconds per request (both raise
    :class:`PeerError` and kill the worker when exceeded). ``env``: extra environment variables.
    ``info`` holds what the worker said when ready (versions, precision, threads...).
    """

    def __init__(self, python: Path, script: Path, args: Sequence[str] = (), *, name: str | None = None,
                 start_timeout: float = 600.0, timeout: float = 120.0, env: Mapping[str, str] | None = None):
        self.name = name or Path(script).stem
        self.timeout = timeout
        env_vars = child_env(offline=False)
        env_vars.setdefault("HF_HUB_OFFLINE", "1")
        env_vars["PYTHONUNBUFFERED"] = "1"
        env_vars.update(env or {})
        # stderr goes to a file: a pipe nobody reads would fill and block a chatty worker
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        cmd = [str(python), str(script), *map(str, args)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         text=True, encoding="utf-8", bufsize=1, env=env_vars)
        except OSError as exc:
            self._stderr.close()
            raise PeerError(f"peer worker {self.name}: cannot start {python} ({exc.strerror})") from None
        self._finalizer = weakref.finalize(self, _stop, self.proc, self._stderr)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self._lines), daemon=True,
                         name=f"peer-{self.name}-reader").start()
        ready = self._next(start_timeout, "to load")
        if not ready.get("ready"):
            self.close()
            raise PeerError(f"peer worker {self.name}: failed to start: {ready.get('error', ready)}")
        ready.pop("ready")
        self.info: dict[str, Any] = ready
        log.info(f"peer worker {self.name}: ready (pid {self.proc.pid})")

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(_EOF)

    def _stderr_tail(self, n: int = 3) -> str:
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            tail = [t.strip() for t in self._stderr.read().splitlines() if t.strip()][-n:]
        except (OSError, ValueError):
            return ""
        return " | ".join(tail)

    def _next(self, timeout: float, doing: str) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            tail = self._stderr_tail()
            self.close()
            raise PeerError(f"peer worker {self.name}: no answer within {timeout:.0f} s {doing}; killed it"
                            + (f" (stderr: {tail})" if tail else "")) from None
        if line is _EOF:
            code = self.proc.wait()
            tail = self._stderr_tail()
            self.close()
            raise PeerError(f"peer worker {self.name}: exited with code {code} {doing}"
                            + (f" (stderr: {tail})" if tail else ""))
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self.close(kill=True)  # the stream is out of step: no later reply could be trusted
            raise PeerError(f"peer worker {self.name}: not a JSON line: {line.strip()[:200]!r}") from None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, op: str = "run", **fields: Any) -> dict:
        """Send one request and return the worker's reply; :class:`PeerError` on error, death or timeout."""
        if not self.alive:
            raise PeerError(f"peer worker {self.name}: not running (exit code {self.proc.returncode})")
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died: the reader sees EOF and _next reports the exit code and stderr
        reply = self._next(self.timeout, f"while answering {op!r}")
        if "error" in reply:
            raise PeerError(f"peer worker {self.name}: {reply['error']}")
        return reply

    def run(self, **fields: Any) -> dict:
        """``request("run", ...)``: one generation; the reply carries its ``ms``."""
        return self.request("run", **fields)

    def close(self, *, kill: bool = False) -> None:
        """Stop the worker (politely unless ``kill``); safe to call twice."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._finalizer()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["WORKERS", "Worker"]
