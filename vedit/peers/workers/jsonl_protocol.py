"""The worker side of the peer protocol: JSON lines over stdin/stdout (standalone: no vedit import).

A worker script runs in a peer's own environment, so it cannot import vedit; it imports this file,
which sits beside it (a script's own folder is first on ``sys.path``). ``serve(setup)``:

1. keeps the real stdout for the protocol and points file descriptor 1 at stderr, so whatever a
   library prints (converters, C++ logging) cannot corrupt a reply line;
2. calls ``setup(argv) -> (handler, info)`` once: the model is loaded here, outside every timing,
   then writes ``{"ready": true, **info}`` (or ``{"error": ...}`` and exits 1 if setup raised);
3. answers each request line: ``{"op": "exit"}`` stops, any other op goes to ``handler(request)``,
   whose dict is the reply; an exception becomes ``{"error": "<Type>: <message>"}`` and the worker
   keeps serving. The handler times its own generation (``ms``), nothing else.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable

Handler = Callable[[dict], dict]


def _channel():
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # library output (fd 1 included) goes to stderr from now on
    sys.stdout = sys.stderr
    return proto


def _reply(proto, obj: dict[str, Any]) -> None:
    proto.write(json.dumps(obj) + "\n")
    proto.flush()


def serve(setup: Callable[[list[str]], tuple[Handler, dict]]) -> None:
    proto = _channel()
    try:
        handler, info = setup(sys.argv[1:])
    except Exception as exc:  # the parent shows this one line; the traceback goes to stderr
        traceback.print_exc()
        _reply(proto, {"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)
    _reply(proto, {"ready": True, **info})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("op") == "exit":
                break
            reply = handler(request)
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _reply(proto, reply)
