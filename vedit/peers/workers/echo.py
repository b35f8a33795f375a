"""A protocol check for a peer environment's interpreter: loads nothing, answers what it is asked.

``python echo.py [--fail-setup MSG] [--noisy]``. Ops: ``run`` replies ``{"ms": ..., "echo": request}``
(``sleep_s`` waits inside the timed part); ``fail`` raises (the worker keeps serving); ``die``
exits at once with ``code`` (the parent must notice); ``hang`` never answers. ``--noisy`` prints to
stdout at every step, as chatty libraries do, which must not reach the protocol.
"""

from __future__ import annotations

import os
import sys
import time

from jsonl_protocol import serve


def setup(argv: list[str]):
    if "--fail-setup" in argv:
        raise RuntimeError(argv[argv.index("--fail-setup") + 1])
    noisy = "--noisy" in argv
    if noisy:
        print("loading... (library chatter on stdout)")
        os.write(1, b"raw bytes on fd 1\n")

    def handle(request: dict) -> dict:
        if noisy:
            print("generating...")
        op = request.get("op")
        if op == "fail":
            raise ValueError("asked to fail")
        if op == "die":
            sys.stderr.write("dying on request\n")
            sys.stderr.flush()
            os._exit(int(request.get("code", 3)))
        if op == "hang":
            time.sleep(3600)
        t0 = time.perf_counter()
        time.sleep(float(request.get("sleep_s", 0.0)))
        ms = (time.perf_counter() - t0) * 1000
        return {"ms": ms, "echo": request}

    return handle, {"python": sys.version.split()[0], "executable": sys.executable}


if __name__ == "__main__":
    serve(setup)
