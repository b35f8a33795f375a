"""``vedit playground``: a small local page to try a student: type an intent, see the edit.

The page (one HTML file, no external resources) sends the intent and, optionally, a photo of the
user's own to ``POST /api/edit``; the server asks the model through the same client as everything
else (:func:`vedit.client.connect`: an export directory in-process or a Triton URL), draws the
answer (:mod:`vedit.render`) and returns the tool calls (JSON), the before/after photos (PNG data
URLs) and the latency. Uploads are read into memory, bounded (:data:`MAX_UPLOAD_BYTES`) and never
written anywhere. Every failure is one line on the page (``{"error": ...}``), never a traceback.
It binds 127.0.0.1 unless told otherwise, and then answers only requests addressed to a loopback
name (the Host header), so a web page elsewhere cannot reach it through DNS rebinding. It uses only
the standard library's ``http.server``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from vedit.errors import RenderError, VeditError
from vedit.intents import intent_problem

log = logging.getLogger(__name__)

#: Largest photo accepted from the page, in bytes.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Longest side the page shows (the edit is drawn at this size).
PLAYGROUND_SIDE = 768
#: Host names a loopback-bound page answers to.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Playground:
    """The state behind the page: one client, the renderer, the sample photos (loaded once)."""

    client: object  # vedit.client LocalClient / TritonClient
    max_upload: int = MAX_UPLOAD_BYTES
    loopback_only: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    _samples: dict | None = None

    def samples(self) -> dict:
        if self._samples is None:
            from vedit.render.samples import sample_photos

            self._samples = {p.name: p for p in sample_photos(max_side=PLAYGROUND_SIDE)}
        return self._samples

    def warm(self) -> None:
        """Load the sample photos and the colour libraries now, not on the first request."""
        import colour  # noqa: F401 - importing colour-science takes seconds
        import skimage.color  # noqa: F401

        self.samples()

    def edit(self, intent: str, upload: bytes | None, sample: str | None) -> dict:
        """Answer ``intent`` and draw it on the upload (or a sample photo); the page's JSON."""
        from vedit.render.engine import Renderer
        from vedit.render.photo import encode_png, load_photo

        problem = intent_problem(intent)
        if problem:
            raise RenderError(f"intent: {problem}; type a look, e.g. golden hour")
        if upload:
            photo = load_photo(upload, max_side=PLAYGROUND_SIDE, name="your photo")
        else:
            samples = self.samples()
            sample = sample or next(iter(samples))
            if sample not in samples:
                raise RenderError(f"unknown sample photo {sample!r}; pick one of {', '.join(samples)}")
            photo = samples[sample]
        with self.lock:  # one model call at a time: the page is for one person
            start = time.perf_counter()
            (prediction,) = self.client.predict([intent])
            latency_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        after, skipped = Renderer.default().render(photo.pixels, prediction.calls)
        render_ms = (time.perf_counter() - start) * 1000
        png = {k: "data:image/png;base64," + base64.b64encode(encode_png(v)).decode("ascii")
               for k, v in (("before", photo.pixels), ("after", after))}
        return {"intent": intent, "calls": {k: c.as_value() for k, c in prediction.calls.items()},
                "latency_ms": round(latency_ms, 1), "render_ms": round(render_ms, 1), "skipped": skipped,
                "size": list(photo.size), **png}


def page() -> bytes:
    return resources.files("vedit.render").joinpath("playground.html").read_bytes()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, VeditError):
        return " ".join(str(exc).split())
    return f"internal error ({type(exc).__name__}); see the server's log"


def make_handler(playground: Playground) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vedit-playground"

        def log_message(self, fmt: str, *args) -> None:  # one line per request, through logging
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def _discard(self, length: int) -> None:
            """Read a refused body in chunks, kept nowhere, so the sender can read the answer;
            beyond twice the limit, stop reading and close the connection instead."""
            if length > 2 * playground.max_upload:
                self.close_connection = True
                return
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)

        def _foreign_host(self) -> bool:
            """On a loopback address, a request whose Host is not a loopback name is refused."""
            if not playground.loopback_only:
                return False
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
            if host in LOOPBACK_NAMES:
                return False
            self._json(HTTPStatus.FORBIDDEN, {"error": f"host {host!r} refused: open the page at 127.0.0.1"})
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self._foreign_host():
                return
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
            elif path == "/api/samples":
                from vedit.render.samples import SAMPLES

                self._json(HTTPStatus.OK, {"samples": SAMPLES, "max_upload": playground.max_upload})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page at {path}; open /"})

        def do_POST(self) -> None:  # noqa: N802
            if self._foreign_host():
                return
            url = urlsplit(self.path)
            if url.path != "/api/edit":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint at {url.path}; POST /api/edit"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
                return
            if length > playground.max_upload:
                self._discard(length)
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {
                    "error": f"photo of {length / 1e6:.1f} MB is over the limit of {playground.max_upload / 1e6:.0f} MB; "
                             "pick a smaller one"})
                return
            body = self.rfile.read(length) if length else b""
            query = parse_qs(url.query)
            try:
                answer = playground.edit(query.get("intent", [""])[0], body or None, query.get("sample", [None])[0])
            except Exception as exc:  # noqa: BLE001 - the page shows one line, the log names the cause
                status = HTTPStatus.BAD_REQUEST if isinstance(exc, VeditError) else HTTPStatus.INTERNAL_SERVER_ERROR
                log.warning("edit failed: %s", _one_line(exc) if status == HTTPStatus.BAD_REQUEST else repr(exc))
                self._json(status, {"error": _one_line(exc)})
                return
            self._json(HTTPStatus.OK, answer)

    return Handler


def make_server(client, host: str = "127.0.0.1", port: int = 0, max_upload: int = MAX_UPLOAD_BYTES
                ) -> ThreadingHTTPServer:
    """A server for the page (``port=0``: a free port; ``server.server_address`` says which)."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    state = Playground(client, max_upload, loopback_only=loopback)
    state.warm()
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


__all__ = ["MAX_UPLOAD_BYTES", "PLAYGROUND_SIDE", "Playground", "make_server", "page", "url_of"]
