"""Attacks on a real, default ``TritonServer`` (nginx front, restricted admin APIs) and on one with an
API key and TLS: each was answered by the server before issue 22 and must be refused now.

The attacker here is anyone who reaches the public ports (or, for the restricted APIs, Triton's own
loopback ports) without the per-start admin key: curl-like raw HTTP, tritonclient over gRPC, a web
page's ``fetch`` (a ``text/plain`` POST with a foreign Origin), and a slowloris client.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from vedit.client import TLS, connect
from vedit.errors import ServerResponseError, ServerUnavailableError
from vedit.serving import TritonServer
from vedit.serving.front import FrontTLS, nginx_binary
from vedit.triton_repo import build_repository

pytestmark = [
    pytest.mark.triton,
    pytest.mark.slow,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (bash scripts/system-deps.sh)"),
]

MODEL = "vedit"
TOKEN = "test-token-" + "x" * 24


def _call(url, *, method="GET", body=None, headers=None, context=None):
    """(status, JSON error or body text) of a raw request; a dropped connection is (None, reason)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    headers = dict(headers or {})
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError) as exc:
        return None, str(exc)


def _marker_model(marker) -> tuple[str, dict[str, str]]:
    """A python-backend model whose ``initialize`` writes ``marker``: proof that uploaded code ran."""
    config = {"name": "probe", "backend": "python", "max_batch_size": 0,
              "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
              "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]}
    code = ("class TritonPythonModel:\n"
            f"    def initialize(self, args):\n        open({str(marker)!r}, 'w').write('ran')\n"
            "    def execute(self, requests):\n        return []\n")
    return json.dumps(config), {"file:1/model.py": base64.b64encode(code.encode()).decode()}


def _grpc(url: str, **kwargs) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url.split("://", 1)[1], **kwargs)


def _model_ready(server) -> bool:
    return _call(f"{server.urls['http']}/v2/models/{MODEL}/ready")[0] == 200


# -- the default server (shared with the other serving tests) -------------------------------------
def test_upload_and_run_through_the_repository_api_is_refused(triton_served, tmp_path):
    server = triton_served.server
    marker = tmp_path / "uploaded-code-ran"
    config, files = _marker_model(marker)
    body = {"parameters": {"config": config, **files}}
    code, text = _call(f"{server.urls['http']}/v2/repository/models/probe/load", method="POST", body=body)
    assert code == 403 and "not allowed through the vedit front" in text
    # Triton's own loopback port (reachable by local users, bypassing nginx): the admin key is missing
    code, text = _call(f"{server.triton_http_url}/v2/repository/models/probe/load", method="POST", body=body)
    assert code in (401, 403) and "restricted" in text.lower(), (code, text)
    with pytest.raises(InferenceServerException) as exc:
        _grpc(server.urls["grpc"]).load_model("probe", config=config,
                                              files={k: base64.b64decode(v) for k, v in files.items()})
    assert str(exc.value.status()) == "StatusCode.PERMISSION_DENIED"
    time.sleep(1.5)  # a load would have run initialize within ~1.3 s
    assert not marker.exists()
    assert _call(f"{server.urls['http']}/v2/models/probe/ready")[0] != 200


def test_unload_over_http_and_grpc_is_refused_and_the_model_stays(triton_served):
    server = triton_served.server
    code, _ = _call(f"{server.urls['http']}/v2/repository/models/{MODEL}/unload", method="POST", body={})
    assert code == 403
    with pytest.raises(InferenceServerException) as exc:
        _grpc(server.urls["grpc"]).unload_model(MODEL)
    assert str(exc.value.status()) == "StatusCode.PERMISSION_DENIED"
    assert _call(f"{server.triton_http_url}/v2/repository/models/{MODEL}/unload", method="POST", body={})[0] in (401, 403)
    assert _model_ready(server)


def test_admin_apis_are_refused_health_metadata_config_and_infer_pass(triton_served):
    server = triton_served.server
    base = server.urls["http"]
    refused = [("POST", "/v2/systemsharedmemory/region/vedit_shm/register",
                {"key": "/vedit_shm", "offset": 0, "byte_size": 1024}),
               ("POST", "/v2/cudasharedmemory/region/x/register", {}),
               ("GET", "/v2/systemsharedmemory/status", None),
               ("POST", "/v2/logging", {"log_verbose_level": 1}), ("GET", "/v2/logging", None),
               ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]}),
               ("GET", f"/v2/models/{MODEL}/stats", None), ("POST", "/v2/repository/index", {}),
               ("GET", "/v2", None), ("GET", "/metrics", None), ("DELETE", f"/v2/models/{MODEL}", None),
               ("GET", f"/v2/models/{MODEL}/infer", None), ("POST", f"/v2/models/{MODEL}/config", {})]
    for method, path, body in refused:
        code, text = _call(base + path, method=method, body=body)
        assert code == 403, (method, path, code, text)
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready",
                 f"/v2/models/{MODEL}/config", f"/v2/models/{MODEL}/versions/1/ready"):
        assert _call(base + path)[0] == 200, path
    # gRPC: the same allow-list
    client = _grpc(server.urls["grpc"])
    for call in (lambda: client.register_system_shared_memory("vedit_shm", "/vedit_shm", 1024),
                 lambda: client.get_system_shared_memory_status(), lambda: client.get_inference_statistics(MODEL),
                 lambda: client.update_log_settings({"log_verbose_level": 1}),
                 lambda: client.get_model_repository_index(), lambda: client.get_server_metadata()):
        with pytest.raises(InferenceServerException) as exc:
            call()
        assert str(exc.value.status()) == "StatusCode.PERMISSION_DENIED"
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_model_config(MODEL).config.name == MODEL
    # Triton's own ports without the key: shared memory refused; with the admin key it answers
    code, _ = _call(f"{server.triton_http_url}/v2/systemsharedmemory/status")
    assert code in (401, 403)
    assert _call(f"{server.triton_http_url}/v2/systemsharedmemory/status", headers=server.admin_headers)[0] == 200


def test_cross_origin_post_from_a_web_page_is_refused(triton_served):
    """What ``fetch(url, {method: "POST", body: "..."})`` from another site sends: text/plain, no
    preflight, an Origin; and what DNS rebinding sends: a foreign Host."""
    server = triton_served.server
    url = f"{server.urls['http']}/v2/models/{MODEL}/infer"
    body = json.dumps({"inputs": [{"name": "INTENT", "shape": [1, 1], "datatype": "BYTES",
                                   "data": ["golden hour"]}]}).encode()
    code, text = _call(url, method="POST", body=body,
                       headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example"})
    assert code == 403 and "another origin" in text
    code, text = _call(url, method="POST", body=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert code == 415
    code, _ = _call(url, method="POST", body=body, headers={"Host": "evil.example"})
    assert code is None  # dropped without an answer
    code, text = _call(url, method="POST", body=body)
    assert code == 200 and '"adjust"' in text


def test_slowloris_leaves_legitimate_requests_answered(triton_served):
    """Hundreds of connections that send their headers a byte at a time (each holds a worker
    connection until the header timeout), and, from another address, hundreds that send a body a
    byte at a time (past the per-client limit they get 429): the legitimate client is answered."""
    server = triton_served.server
    host, port = server.urls["http"].split("://")[1].split(":")
    slow_headers: list[socket.socket] = []
    slow_bodies: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(300):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: {host}\r\n".encode())
            slow_headers.append(s)
        for _ in range(300):  # another client address: its limits are its own
            s = socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.2", 0))
            s.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      "Content-Length: 4000\r\n\r\n{".encode())
            slow_bodies.append(s)

        def drip():
            while not stop.wait(0.5):
                for s, data in [*((s, b"X-a: b\r\n") for s in slow_headers), *((s, b" ") for s in slow_bodies)]:
                    try:
                        s.sendall(data)
                    except OSError:
                        pass

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        answered, started = 0, time.monotonic()
        with connect(server.urls["http"], deadline=10.0, timeout=10.0) as client:
            while time.monotonic() - started < 4.0:
                assert len(client.predict([f"slowloris {answered}"])) == 1
                answered += 1
            assert client.stats.retried == 0
        assert answered >= 3
        refused = 0
        for s in slow_bodies:
            s.setblocking(False)
            try:
                refused += s.recv(64).startswith(b"HTTP/1.1 429")
            except OSError:
                pass
        assert refused >= 300 - 128 - 10  # over the per-client limit of requests in progress
    finally:
        stop.set()
        for s in slow_headers + slow_bodies:
            s.close()


# -- a server with an API key and TLS ----------------------------------------------------------
def _certificates(directory):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(key, name):
        path = directory / name
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vedit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
              .issuer_name(ca_name).public_key(client_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    write_key(client_key, "client.key")
    return directory / "ca.pem", directory / "server.pem", write_key(key, "server.key")


CANARY = "VEDIT_SECURITY_TEST_CANARY"


def _tls(ca) -> TLS:
    """The client's side of the keyed server's mutual TLS: the CA bundle and a client certificate."""
    return TLS(ca_certs=str(ca), certfile=str(ca.parent / "client.pem"), keyfile=str(ca.parent / "client.key"))


def _context(ca, client_cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client_cert:
        context.load_cert_chain(ca.parent / "client.pem", ca.parent / "client.key")
    return context


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny_export):
    """An API key, mutual TLS, and (as root) the service user; a secret in the caller's environment."""
    base = tmp_path_factory.mktemp("keyed")
    ca, cert, key = _certificates(base)
    repo = build_repository(tiny_export, profile="cpu", out=base / "repo")
    server = TritonServer(repo, api_keys=(TOKEN,), tls=FrontTLS(cert, key, client_ca=ca), log_path=base / "log")
    os.environ["AWS_SECRET_ACCESS_KEY"] = CANARY
    try:
        server.start()
    finally:
        del os.environ["AWS_SECRET_ACCESS_KEY"]
    try:
        yield server.wait_ready(), ca
    finally:
        server.stop()


def test_no_token_gets_401_and_the_token_works_over_http_and_grpc(keyed):
    server, ca = keyed
    context = _context(ca)
    url = f"{server.urls['http']}/v2/models/{MODEL}/config"
    assert url.startswith("https://")
    code, text = _call(url, context=context)
    assert code == 401 and "API key" in text
    assert _call(url, context=context, headers={"Authorization": "Bearer wrong-token-xxxxxxxxxxxx"})[0] == 401
    assert _call(url, context=context, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert _call(f"{server.urls['http']}/v2/health/ready", context=context)[0] == 200  # probes need no key
    tls = _tls(ca)
    for kind in ("http", "grpc"):
        with pytest.raises(ServerResponseError, match="API key|401|UNAUTHENTICATED|Unauthorized"):
            connect(server.urls[kind], tls=tls, token=None, retries=0).predict(["golden hour"])
        with connect(server.urls[kind], tls=tls, token=TOKEN) as client:
            assert client.predict(["golden hour"])[0].calls


def test_async_client_sends_the_token_too(keyed):
    import asyncio

    from vedit.client import aconnect

    server, ca = keyed

    async def main(kind, token):
        async with aconnect(server.urls[kind], tls=_tls(ca), token=token, retries=0) as client:
            return await client.predict(["golden hour"])

    for kind in ("http", "grpc"):
        with pytest.raises(ServerResponseError):
            asyncio.run(main(kind, None))
        assert asyncio.run(main(kind, TOKEN))[0].calls


def test_vedit_predict_url_takes_a_token_file_and_a_ca_bundle(keyed, tmp_path):
    from click.testing import CliRunner

    from vedit.cli import cli

    server, ca = keyed
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    runner = CliRunner()
    for kind in ("http", "grpc"):
        certs = ["--ca-bundle", str(ca), "--client-cert", str(ca.parent / "client.pem"),
                 "--client-key", str(ca.parent / "client.key")]
        ok = runner.invoke(cli, ["predict", "--url", server.urls[kind], "--token-file", str(token_file), *certs,
                                 "--json", "golden hour"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.output.splitlines()[-1])
        refused = runner.invoke(cli, ["predict", "--url", server.urls[kind], *certs, "golden hour"])
        assert refused.exit_code == 1 and "error:" in refused.output
    secret = server.urls["http"].replace("https://", "https://bob:hunter2@")
    bad = runner.invoke(cli, ["predict", "--url", secret, "--token-file", str(token_file), "golden hour"])
    assert bad.exit_code == 1 and "hunter2" not in bad.output and "credentials in the URL" in bad.output


def test_tls_works_with_the_ca_bundle_and_fails_without(keyed):
    server, ca = keyed
    for kind in ("http", "grpc"):
        with pytest.raises((ServerUnavailableError, ServerResponseError)):
            connect(server.urls[kind], token=TOKEN, retries=1, backoff=0.01, deadline=3.0).predict(["golden hour"])
    with pytest.raises((urllib.error.URLError, ssl.SSLError)):
        urllib.request.urlopen(f"{server.urls['http']}/v2/health/ready", timeout=10)
    plain = server.urls["http"].replace("https://", "http://")
    assert _call(f"{plain}/v2/health/ready")[0] == 400  # plain HTTP to the TLS port: nginx's 400
    # mutual TLS: the CA bundle alone is not enough, the client certificate is needed too (but for health)
    token = {"Authorization": f"Bearer {TOKEN}"}
    code, text = _call(f"{server.urls['http']}/v2/models/{MODEL}/config", context=_context(ca, client_cert=False),
                       headers=token)
    assert code == 403 and "client certificate" in text
    assert _call(f"{server.urls['http']}/v2/models/{MODEL}/config", context=_context(ca), headers=token)[0] == 200
    assert _call(f"{server.urls['http']}/v2/health/ready", context=_context(ca, client_cert=False))[0] == 200
    for kind in ("http", "grpc"):
        with pytest.raises((ServerUnavailableError, ServerResponseError)):
            connect(server.urls[kind], tls=TLS(ca_certs=str(ca)), token=TOKEN, retries=1, backoff=0.01,
                    deadline=3.0).predict(["golden hour"])
        with connect(server.urls[kind], tls=_tls(ca), token=TOKEN) as client:
            assert client.predict(["golden hour"])[0].calls


def test_front_and_its_files_are_private(keyed):
    server, _ = keyed
    d = server.front.directory
    assert d.stat().st_mode & 0o077 == 0o011  # others may only reach the readiness flag
    for name in ("nginx.conf", "error.log", "access.log", "stderr.log"):
        assert (d / name).stat().st_mode & 0o077 == 0, name
    assert TOKEN in (d / "nginx.conf").read_text()


def _status_ids(pid: int) -> tuple[int, int]:
    lines = dict(ln.split(":", 1) for ln in open(f"/proc/{pid}/status").read().splitlines() if ":" in ln)
    return int(lines["Uid"].split()[1]), int(lines["Gid"].split()[1])  # effective ids


def test_tritonserver_and_its_stubs_run_with_least_privilege(keyed):
    from vedit.serving.privilege import SERVICE_USER, reachable
    from vedit.serving.supervise import SHM_DIR, stubs

    server, _ = keyed
    found = stubs(server.pid)
    assert found and all(st.alive for st in found)
    environ = open(f"/proc/{server.pid}/environ", "rb").read()
    assert CANARY.encode() not in environ and b"PATH=" in environ  # the caller's secrets stay out
    for st in found:
        assert CANARY.encode() not in open(f"/proc/{st.pid}/environ", "rb").read()
        assert (SHM_DIR / st.region).stat().st_mode & 0o077 == 0  # intents and answers: private
    if os.geteuid() != 0:
        pytest.skip("the switch to the service user needs root")
    if not reachable(Path(sys.executable).resolve()):
        # this interpreter lives under a private directory (e.g. /root/.pyenv): the stub could not
        # start it as another user, so the server says so and keeps root (see the test below for the switch)
        assert server.account.name == "root"
        pytest.skip(f"{sys.executable} is not reachable by other users; the uid switch is tested without Python")
    user = pwd.getpwnam(SERVICE_USER)
    assert user.pw_uid != 0 and server.account.name == SERVICE_USER
    for pid in (server.pid, *(st.pid for st in found)):
        assert _status_ids(pid) == (user.pw_uid, user.pw_gid), pid
    # the repository was private to root (pytest's tmp dir): it is served from a staged copy
    assert server.repository != server._served_repository
    private = server._served_repository.parent
    assert private.stat().st_uid == user.pw_uid and private.stat().st_mode & 0o077 == 0
    with connect(server.urls["grpc"], tls=_tls(keyed[1]), token=TOKEN) as client:
        assert client.predict(["least privilege"])[0].calls


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_the_service_user_gets_a_private_staged_repository_and_umask_077(tmp_path):
    """What :meth:`TritonServer.spawn` does to its child, on a shell instead of tritonserver: the
    service user (created if missing), no supplementary groups, umask 077, a staged copy of a
    repository it could not reach."""
    from vedit.serving.privilege import SERVICE_USER, drop_to, private_dir, service_account, stage_tree

    account = service_account()
    assert account.name == SERVICE_USER and account.uid != 0
    repo = tmp_path / "private" / "repo"  # pytest's tmp dir is root's alone
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text("name: 'm'")
    (repo / "m" / "1" / "secret.bin").write_bytes(b"weights")
    (repo / "m" / "1" / "secret.bin").chmod(0o600)
    home = private_dir(account)
    try:
        staged = stage_tree(repo, account, home)
        script = (f"id -u; id -g; id -G; umask; cat {repo}/m/config.pbtxt 2>/dev/null || echo unreachable; "
                  f"cat {staged}/m/config.pbtxt; echo; cat {staged}/m/1/secret.bin; echo; touch {home}/made")
        out = subprocess.run(["/bin/sh", "-c", script], preexec_fn=drop_to(account), cwd=home, env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True).stdout.split("\n")
        assert out[:7] == [str(account.uid), str(account.gid), str(account.gid), "0077", "unreachable", "name: 'm'",
                           "weights"]
        made = (home / "made").stat()
        assert made.st_uid == account.uid and made.st_mode & 0o077 == 0
        assert home.stat().st_mode & 0o077 == 0 and staged.stat().st_mode & 0o077 == 0
    finally:
        shutil.rmtree(home)


def test_the_queue_is_bounded_and_its_rejections_are_retried(triton_served):
    """The model's queue is bounded (config.pbtxt ``default_queue_policy``); what Triton answers a
    request it rejects (UNAVAILABLE over gRPC, 503 over HTTP) is a transient failure to the client."""
    from vedit.client.base import classify

    cfg = _grpc(triton_served.server.urls["grpc"]).get_model_config(MODEL, as_json=True)["config"]
    policy = cfg["dynamic_batching"]["default_queue_policy"]
    assert 0 < int(policy["max_queue_size"]) <= 16 * 8 * 2
    assert policy.get("timeout_action", "REJECT") == "REJECT"  # the enum's default is left out of the JSON
    assert 0 < int(policy["default_timeout_microseconds"]) <= 30_000_000
    for status in ("StatusCode.UNAVAILABLE", "503"):
        rejected = InferenceServerException("Exceeds maximum queue size", status=status)
        assert classify(rejected, timeout=30).transient


def test_serve_refuses_an_exposed_server_without_tls_and_a_key(tmp_path):
    from click.testing import CliRunner

    from vedit.cli import cli

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"')
    (tmp_path / "cert.pem").write_text("x")
    runner = CliRunner()
    res = runner.invoke(cli, ["triton", "serve", str(tmp_path), "--host", "0.0.0.0"])
    assert res.exit_code == 1
    assert "give --tls-cert/--tls-key and --api-key-file, or --insecure" in res.output
    res = runner.invoke(cli, ["triton", "serve", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem")])
    assert res.exit_code == 2 and "--tls-cert and --tls-key go together" in res.output
    res = runner.invoke(cli, ["triton", "serve", str(tmp_path), "--no-front", "--api-key-file", str(tmp_path / "cert.pem")])
    assert res.exit_code == 2 and "drop --no-front" in res.output


def test_a_full_queue_rejects_at_once_and_the_client_retries(tiny_export, tmp_path):
    """With the queue bound cut to 1, a burst gets Triton's rejection (UNAVAILABLE over gRPC)
    straight away; the vedit client retries those and answers every intent."""
    import asyncio

    import tritonclient.grpc.aio as grpcaio

    repo = build_repository(tiny_export, profile="cpu", out=tmp_path / "repo")
    cfg = repo / MODEL / "config.pbtxt"
    text = cfg.read_text()
    assert "max_queue_size: 256" in text  # 16 full batches of 8 per instance, 2 instances
    cfg.write_text(text.replace("max_queue_size: 256", "max_queue_size: 1"))

    async def burst(url, n):
        client = grpcaio.InferenceServerClient(url.split("://", 1)[1])

        async def one(i):
            inp = grpcclient.InferInput("INTENT", [1, 1], "BYTES")
            inp.set_data_from_numpy(np.array([[f"queue burst {i}".encode()]], dtype=np.object_))
            try:
                return await client.infer(MODEL, [inp])
            except InferenceServerException as exc:
                return exc

        try:
            return await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await client.close()

    with TritonServer(repo, log_path=tmp_path / "log") as server:
        results = asyncio.run(burst(server.urls["grpc"], 48))
        rejected = [r for r in results if isinstance(r, InferenceServerException)]
        assert rejected, "no request was rejected with a queue of 1"
        assert all(str(r.status()) == "StatusCode.UNAVAILABLE" and "queue" in r.message().lower()
                   for r in rejected), {(str(r.status()), r.message()) for r in rejected}
        with connect(server.urls["grpc"], concurrency=48, deadline=60.0) as client:
            answers = client.predict([f"queue retry {i}" for i in range(48)])
            assert len(answers) == 48 and all(a.calls for a in answers)
            assert client.stats.retried > 0 and client.stats.lost == 0
