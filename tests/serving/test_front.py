"""The nginx front on its own: the derived body limit, a config nginx accepts, 413 and readiness.

Triton is replaced here by nothing at all (the upstream port is closed) or by a tiny loopback HTTP
server, so these run in a second; the front in front of a real tritonserver is tested in
test_chaos.py and by every HTTP test through the shared server.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from vedit.errors import TritonRepoError
from vedit.triton_repo import build_repository
from vedit.triton_repo.config import MAX_INTENT_BYTES
from vedit.serving.front import JSON_OVERHEAD_BYTES, NginxFront, body_limit, nginx_binary
from vedit.triton_repo.profiles import PROFILES
from vedit.serving.server import free_port

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (scripts/system-deps.sh)")


@pytest.mark.parametrize("profile", ["cpu", "l4", "a100"])
def test_body_limit_is_batch_times_intent_escaped_plus_overhead(tiny_export, tmp_path, profile):
    repo = build_repository(tiny_export, profile=profile, out=tmp_path / "repo")
    expected = PROFILES[profile].max_batch_size * MAX_INTENT_BYTES * 6 + JSON_OVERHEAD_BYTES
    assert body_limit(repo) == expected
    assert expected < 1024 * 1024  # far below the few MB that crash Triton 2.51's HTTP server


def test_body_limit_refuses_a_config_that_needs_megabytes(tiny_export, tmp_path):
    repo = build_repository(tiny_export, out=tmp_path / "repo")
    cfg = repo / "vedit" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('string_value: "1024"', 'string_value: "100000"'))
    with pytest.raises(TritonRepoError, match="over the 1048576-byte front limit"):
        body_limit(repo)


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self._answer()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _request(url, data=None, headers=None):
    headers = {"Content-Type": "application/json", **(headers or {})} if data else (headers or {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                                           headers=headers), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def _front_over_upstream(**front_options) -> Iterator[tuple[NginxFront, ThreadingHTTPServer, int]]:
    """A started front (body limit 4096, plus ``front_options``) over a loopback echo upstream, and
    its port; both stopped afterwards (a test may shut the upstream down earlier)."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    front = NginxFront(listen_host="127.0.0.1", listen_port=port, upstream_port=upstream.server_port,
                       body_limit=4096, **front_options)
    try:
        front.start()
        yield front, upstream, port
    finally:
        front.stop()
        upstream.shutdown()
        upstream.server_close()


@needs_nginx
def test_front_limits_bodies_proxies_the_rest_and_owns_readiness():
    with _front_over_upstream() as (front, upstream, port):
        base = f"http://127.0.0.1:{port}"
        assert _request(base + "/v2/models/m/infer", b"x" * 4096) == (200, b'{"path": "/v2/models/m/infer"}')
        code, body = _request(base + "/v2/models/m/infer", b"x" * 4097)
        assert code == 413 and "over 4096 bytes" in json.loads(body)["error"]
        assert _request(base + "/v2/health/ready")[0] == 200
        front.set_ready(False)
        assert _request(base + "/v2/health/ready")[0] == 503
        assert _request(base + "/v2/models/m/ready")[0] == 503
        assert _request(base + "/v2/models/m/versions/1/ready")[0] == 503
        assert _request(base + "/v2/health/live")[0] == 200  # alive, just not ready
        front.set_ready(True)
        assert _request(base + "/v2/health/ready")[0] == 200
        upstream.shutdown()
        upstream.server_close()
        code, body = _request(base + "/v2/models/m/infer", b"{}")
        assert code == 503 and "not answering" in json.loads(body)["error"]
    assert not front.running
    assert not front.directory.exists()  # its private directory goes with it


def test_missing_nginx_is_one_clear_line(monkeypatch):
    import vedit.serving.front as front_mod

    monkeypatch.setattr(front_mod, "nginx_binary", lambda: None)
    with pytest.raises(TritonRepoError) as exc:
        NginxFront(listen_host="127.0.0.1", listen_port=1, upstream_port=2, body_limit=1)
    assert "\n" not in str(exc.value)
    assert "apt-get install -y nginx" in str(exc.value) and "--no-front" in str(exc.value)


@needs_nginx
def test_a_taken_port_is_an_error_not_someone_elses_listener():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        front = NginxFront(listen_host="127.0.0.1", listen_port=taken.getsockname()[1], upstream_port=1,
                           body_limit=1024)
        with pytest.raises(TritonRepoError, match="Address already in use"):
            front.start()
    assert not front.running and not front.directory.exists()


def _raw(port, request: bytes) -> bytes:
    """Send ``request`` as it is; the answer's bytes (b"" when nginx drops the connection: 444)."""
    import socket

    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


@needs_nginx
def test_front_passes_only_its_allow_list_and_checks_host_origin_type_and_key():
    key = {"Authorization": "Bearer " + "k" * 20}
    with _front_over_upstream(api_keys=("k" * 20,), allowed_origins=("https://ok.example",)) as (front, _, port):
        base = f"http://127.0.0.1:{port}"
        # health without a key; everything else needs it
        assert _request(base + "/v2/health/live")[0] == 200
        code, body = _request(base + "/v2/models/m/config")
        assert code == 401 and "API key" in json.loads(body)["error"]
        assert _request(base + "/v2/models/m/infer", b"{}", {"Authorization": "Bearer wrong"})[0] == 401
        for path in ("/v2/models/m", "/v2/models/m/config", "/v2/models/m/ready", "/v2/models/m/versions/2/ready"):
            assert _request(base + path, headers=key) == (200, json.dumps({"path": path}).encode()), path
        assert _request(base + "/v2/models/m/versions/1/infer", b"{}", key)[0] == 200
        # not on the list, or the wrong method: 403 (the upstream never sees it)
        for path, data in (("/v2/repository/models/m/load", b"{}"), ("/v2/repository/index", b"{}"),
                           ("/v2/systemsharedmemory/region/r/register", b"{}"), ("/v2/logging", b"{}"),
                           ("/v2/trace/setting", b"{}"), ("/v2/models/m/stats", None), ("/v2", None),
                           ("/v2/models/m/infer", None), ("/v2/models/m/config", b"{}"), ("/v2/models/m/x/infer", b"{}")):
            code, body = _request(base + path, data, key)
            assert code == 403 and b"path" not in body, (path, code, body)
        # content types a web page can send without a preflight: refused; JSON, binary or none: passed
        for ctype, expected in (("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                                ("multipart/form-data; boundary=x", 415), ("application/json; charset=utf-8", 200),
                                ("application/octet-stream", 200)):
            assert _request(base + "/v2/models/m/infer", b"{}", {**key, "Content-Type": ctype})[0] == expected, ctype
        none = _raw(port, b"POST /v2/models/m/infer HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                    + b"k" * 20 + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert none.startswith(b"HTTP/1.1 200")
        # a foreign Origin is refused, an allowed one passes; a foreign Host is dropped unanswered
        assert _request(base + "/v2/models/m/infer", b"{}", {**key, "Origin": "https://evil.example"})[0] == 403
        assert _request(base + "/v2/models/m/infer", b"{}", {**key, "Origin": "https://ok.example"})[0] == 200
        assert _raw(port, b"GET /v2/health/live HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n") == b""
        assert _raw(port, b"GET /v2/health/live HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n"
                    ).startswith(b"HTTP/1.1 200")
        conf = (front.directory / "nginx.conf")
        assert conf.stat().st_mode & 0o077 == 0 and "k" * 20 in conf.read_text()


def test_binding_beyond_loopback_needs_tls_and_a_key_or_insecure():
    from vedit.serving.front import check_exposure

    check_exposure("127.0.0.1", tls=False, api_key=False, insecure=False)
    check_exposure("::1", tls=False, api_key=False, insecure=False)
    check_exposure("0.0.0.0", tls=True, api_key=True, insecure=False)
    check_exposure("0.0.0.0", tls=False, api_key=False, insecure=True)
    with pytest.raises(TritonRepoError, match="give --tls-cert/--tls-key and --api-key-file, or --insecure"):
        check_exposure("0.0.0.0", tls=False, api_key=False, insecure=False)
    with pytest.raises(TritonRepoError, match="give --api-key-file, or --insecure"):
        check_exposure("10.1.2.3", tls=True, api_key=False, insecure=False)


def test_api_key_file_is_checked(tmp_path):
    from vedit.serving.front import read_api_keys

    f = tmp_path / "keys"
    f.write_text("# rotation: old, then new\n" + "a" * 16 + "\n\n" + "B-c_d.e~f+g/h=" * 2 + "\n")
    assert read_api_keys(f) == ("a" * 16, "B-c_d.e~f+g/h=" * 2)
    for bad in ("", "# only a comment\n", "short\n", 'has"quote-' + "x" * 16):
        f.write_text(bad)
        with pytest.raises(TritonRepoError) as exc:
            read_api_keys(f)
        assert "\n" not in str(exc.value)
