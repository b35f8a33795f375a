"""An nginx front for tritonserver's HTTP and gRPC ports: an allow-list, size limits, keys, TLS.

Why a front at all: Triton 2.51 answers every API to whoever reaches it (its repository API loads
uploaded python code; shared-memory, logging, trace, statistics), its HTTP frontend dies (signal 11)
on request bodies of a few MB (triton-inference-server/server issue 5840) and neither of its
ports limits sizes. nginx listens on the public ports and passes only what a client of a vedit
model needs (:data:`HTTP_ALLOW`, :data:`GRPC_OPEN` + :data:`GRPC_ALLOW`); everything else gets 403
(gRPC: PERMISSION_DENIED). It answers 413 (gRPC: INVALID_ARGUMENT) to any body over the limit
before Triton reads a byte of it, and proxies the rest to Triton's ports on 127.0.0.1, adding the
front's key that Triton requires there (see ``TritonServer.restriction_args``).

The limit comes from the model configuration, not from a guess: a request carries at most
``max_batch_size`` intents of at most ``max_intent_bytes`` each, and JSON may escape a byte into
six (``\\u0001``), plus a fixed allowance for the JSON around them. That is 65 KiB for the cpu
profile and about 210 KiB for a100, far under the sizes that crash Triton; gRPC carries the bytes
unescaped (:func:`grpc_message_limit`).

What else it checks, and why (:class:`FrontConfig`): the Host (``server_name``; a default server
drops other names: DNS rebinding), the Origin (a web page in the operator's browser must not drive
the server), the POST content type (what a page can send without a CORS preflight is refused),
an API key (``Authorization: Bearer``; health needs none), TLS, and per-client limits and timeouts
(:class:`FrontLimits`: a slow or flooding client cannot starve the others).

The front also owns readiness: while the supervisor reloads a model, or when the model failed its
probe, a flag file exists and ``/v2/health/ready`` (and each model's ``/ready``) answer 503, so a
load balancer stops sending traffic. When tritonserver itself is down, nginx's 502/504 become a 503
with a JSON error that Triton's clients can read (gRPC: UNAVAILABLE).

nginx runs as an ordinary child process with its own config, pid, logs and temp dirs in a private
directory (``nginx -p DIR -c DIR/nginx.conf``, files 0600: the config holds the keys): nothing
under /etc/nginx is read or changed. ``vedit.deploy`` can render the same policy for a sidecar
with ``FrontConfig(...).render()`` (or read :data:`HTTP_ALLOW`, :data:`GRPC_ALLOW` and
:class:`FrontLimits` directly).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from vedit.errors import TritonRepoError
from vedit.triton_repo.config import PARAM_MAX_INTENT_BYTES, parse_config

#: JSON may write one byte of an intent as six (a control character becomes ``\u0001``).
JSON_ESCAPE_FACTOR = 6
#: The JSON around the intents: input name, shape, datatype, requested outputs, parameters.
JSON_OVERHEAD_BYTES = 16 * 1024
#: Used for a model that does not say how long its inputs may be (not a vedit model).
DEFAULT_BODY_LIMIT = 256 * 1024
#: Triton 2.51 crashes on bodies of a few MB; no derived limit may come near that.
MAX_BODY_LIMIT = 1024 * 1024

NOT_READY_FILE = "not-ready"
INSTALL_HINT = "install it with `apt-get install -y nginx` (or bash scripts/system-deps.sh), or pass --no-front"


def nginx_binary() -> str | None:
    """Path of the nginx binary, or ``None`` (Debian puts it in /usr/sbin, often not on PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin")


def body_limit(repository: str | Path) -> int:
    """The largest request body any model in ``repository`` can legitimately need, in bytes."""
    limits = []
    for cfg_path in sorted(Path(repository).glob("*/config.pbtxt")):
        cfg = parse_config(cfg_path.read_text(encoding="utf-8"), source=str(cfg_path))
        param = cfg.parameters.get(PARAM_MAX_INTENT_BYTES)
        if param is None or not param.string_value.isdigit():
            limits.append(DEFAULT_BODY_LIMIT)
            continue
        rows = max(1, cfg.max_batch_size)
        limits.append(rows * int(param.string_value) * JSON_ESCAPE_FACTOR + JSON_OVERHEAD_BYTES)
    limit = max(limits, default=DEFAULT_BODY_LIMIT)
    if limit > MAX_BODY_LIMIT:
        raise TritonRepoError(
            f"{repository}: requests may need {limit} bytes, over the {MAX_BODY_LIMIT}-byte front limit "
            "(Triton 2.51's HTTP server crashes on bodies of a few MB); lower max_batch_size or max_intent_bytes"
        )
    return limit


@dataclass(frozen=True)
class Route:
    """One kind of request the front passes to Triton's HTTP port."""

    method: str
    """``GET`` (HEAD goes with it) or ``POST``; any other method on the path gets 403."""
    path: str
    """An nginx (PCRE) regex for the whole path."""
    needs_key: bool = True
    """Whether the API key is required (when the server has one)."""
    readiness: bool = False
    """Answers 503 while the supervisor says not ready (a reload or restart is under way)."""


#: What the front lets through over HTTP; everything else gets 403. Health answers without a key
#: (load balancers and kubelets probe it).
HTTP_ALLOW: tuple[Route, ...] = (
    Route("GET", r"^/v2/health/live$", needs_key=False),
    Route("GET", r"^/v2/health/ready$", needs_key=False, readiness=True),
    Route("GET", r"^/v2/models/[^/]+(/versions/[0-9]+)?/ready$", readiness=True),
    Route("GET", r"^/v2/models/[^/]+(/versions/[0-9]+)?(/config)?$"),
    Route("POST", r"^/v2/models/[^/]+(/versions/[0-9]+)?/infer$"),
)
#: The gRPC methods of ``inference.GRPCInferenceService`` the front passes; every other one is
#: refused with PERMISSION_DENIED (repository, shared memory, statistics, trace, logging, ...).
GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_OPEN = ("ServerLive", "ServerReady")
GRPC_ALLOW = ("ModelReady", "ModelMetadata", "ModelConfig", "ModelInfer")
#: Triton's own restriction groups (``--http-restricted-api``/``--grpc-restricted-protocol``):
#: the admin ones need the supervisor's key; the ones the front passes need the front's key, so a
#: local user who reaches Triton's loopback ports directly gets health only.
ADMIN_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
FRONT_APIS = ("metadata", "inference", "model-config")
ADMIN_HEADER = "vedit-admin"
FRONT_HEADER = "vedit-front"
#: Characters allowed in API keys (they go into nginx's config verbatim).
API_KEY_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{16,512}")


@dataclass(frozen=True)
class FrontLimits:
    """Per-client limits and timeouts of the front: small enough that slow or flooding clients
    cannot starve the others, large enough for the vedit client (8 requests in flight per call).

    Slowloris sockets never finish their headers, so ``limit_conn`` (counted after the headers)
    does not see them: ``worker_connections`` gives them room and ``header_timeout`` closes them."""

    worker_connections: int = 8192
    conn_per_client: int = 128
    """Requests in progress per client address (HTTP/2: per stream), health probes not counted;
    over it: 429 (the client retries). Slow bodies count: one address cannot hold more."""
    rate_per_client: int = 1000
    """Requests per second per client address, with a burst of twice that; over it: 429."""
    header_timeout_s: int = 5
    body_timeout_s: int = 5
    keepalive_timeout_s: int = 30
    upstream_timeout_s: int = 120
    """How long an answer from Triton may take (the client's own timeout is 30 s by default)."""


def grpc_message_limit(http_limit: int) -> int:
    """The gRPC request limit: the same rows and bytes as the HTTP one, but protobuf carries an
    intent's bytes as they are (a 4-byte length, no JSON escaping)."""
    rows_bytes = (http_limit - JSON_OVERHEAD_BYTES) // JSON_ESCAPE_FACTOR
    return rows_bytes + 4 * 64 + JSON_OVERHEAD_BYTES


@dataclass(frozen=True)
class FrontTLS:
    """The front's certificate and key (PEM files); clients then use https:// and grpcs://.
    ``client_ca``: require a client certificate signed by these CAs (mutual TLS) on both ports, for
    every request but health (load balancers' and kubelets' probes carry none)."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None


def read_api_keys(path: str | Path) -> tuple[str, ...]:
    """API keys from a file, one per line (several: rotation); blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TritonRepoError(f"{path}: cannot read the API key file ({exc})") from None
    keys = tuple(ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#"))
    if not keys:
        raise TritonRepoError(f"{path}: no API key in the file; put one random token per line "
                              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    for number, key in enumerate(keys, 1):
        if not API_KEY_PATTERN.fullmatch(key):
            raise TritonRepoError(f"{path}: key {number} must be 16-512 characters of A-Z a-z 0-9 . _ ~ + / = - "
                                  "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return keys


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(host: str, *, tls: bool, api_key: bool, insecure: bool) -> None:
    """Refuse to listen beyond loopback without TLS and an API key, unless told ``insecure``."""
    if is_loopback(host) or insecure or (tls and api_key):
        return
    missing = " and ".join(n for n, ok in (("--tls-cert/--tls-key", tls), ("--api-key-file", api_key)) if not ok)
    raise TritonRepoError(f"--host {host} accepts connections from other machines: give {missing}, "
                          "or --insecure if the network around it is trusted")


def server_names(listen_host: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Host names the front answers to: loopback names, the bound address, this machine's names
    when it binds every address, and ``extra``. Any other Host is dropped (DNS rebinding, a web
    page driving a local server)."""
    names = ["localhost", "127.0.0.1", "[::1]"]
    if listen_host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(f"[{listen_host}]" if ":" in listen_host else listen_host)
    names += list(extra)
    return tuple(dict.fromkeys(n.lower() for n in names if n))


def _grpc_status(code: int, message: str) -> str:
    """nginx lines that answer a gRPC call with ``code`` (a trailers-only response)."""
    return f"add_header grpc-status {code} always; add_header grpc-message \"{message}\" always; return 204;"


@dataclass(frozen=True)
class FrontConfig:
    """Everything nginx.conf says; :meth:`render` writes it (``vedit.deploy`` may render its own).

    ``upstream_port``/``grpc_upstream_port``: Triton's loopback HTTP and gRPC ports (``grpc_port``
    0: no gRPC front). ``front_key``: sent to Triton with every request it passes (Triton refuses
    inference, metadata and config without it)."""

    listen_host: str
    listen_port: int
    upstream_port: int
    body_limit: int
    directory: Path
    worker_user: str | None = None
    """``user`` directive: only meaningful when nginx starts as root (workers drop to it)."""
    grpc_port: int = 0
    grpc_upstream_port: int = 0
    front_key: str = ""
    api_keys: tuple[str, ...] = ()
    tls: FrontTLS | None = None
    names: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    limits: FrontLimits = FrontLimits()

    def render(self) -> str:
        """The whole nginx.conf: nothing is inherited from /etc/nginx."""
        d = self.directory
        lim = self.limits
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        names = " ".join(self.names or server_names(self.listen_host))
        user = f"user {self.worker_user};\n" if self.worker_user else ""
        ssl = " ssl" if self.tls else ""
        tls = (f"    ssl_certificate {self.tls.certfile};\n    ssl_certificate_key {self.tls.keyfile};\n"
               "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_prefer_server_ciphers on;\n" if self.tls else "")
        mtls = bool(self.tls and self.tls.client_ca)
        if mtls:  # optional at the handshake, required below for all but health (probes carry none)
            tls += f"    ssl_client_certificate {self.tls.client_ca};\n    ssl_verify_client optional;\n"
        keys = "".join(f'        "Bearer {k}" 1;\n' for k in self.api_keys)
        origins = "".join(f'        "{o}" 1;\n' for o in self.allowed_origins)
        token_default = 0 if self.api_keys else 1
        front_header = (f"        proxy_set_header {FRONT_HEADER} \"{self.front_key}\";\n" if self.front_key else "")
        grpc_header = 'grpc_set_header authorization ""; ' + (
            f"grpc_set_header triton-grpc-protocol-{FRONT_HEADER} \"{self.front_key}\"; " if self.front_key else "")
        too_large = (f'{{"error":"request body over {self.body_limit} bytes: the most a request to this '
                     f'server can need (max_batch_size x max_intent_bytes)"}}')
        http_locations = []
        for route in HTTP_ALLOW:
            lines = [f"        location ~ {route.path} {{"]
            if route.needs_key:  # health is exempt: a load balancer's probe shares no quota with anyone
                lines.append(f"            limit_conn vedit_conn {lim.conn_per_client};")
                if mtls:
                    lines.append("            if ($ssl_client_verify != SUCCESS) { return 403 '{\"error\":\"a client "
                                 "certificate signed by the client CA of this server is required\"}'; }")
                lines.append("            if ($vedit_token_ok = 0) { add_header WWW-Authenticate 'Bearer realm=\"vedit\"' "
                             "always; return 401 '{\"error\":\"missing or wrong API key: send Authorization: Bearer "
                             "TOKEN\"}'; }")
            lines.append(f"            limit_except {route.method} {{ deny all; }}")
            if route.method == "POST":
                lines.append("            if ($vedit_type_ok = 0) { return 415 '{\"error\":\"POST takes Content-Type: "
                             "application/json, application/octet-stream or none\"}'; }")
                lines.append(f"            limit_req zone=vedit_req burst={2 * lim.rate_per_client} nodelay;")
            if route.readiness:
                lines.append(f"            if (-f {d}/{NOT_READY_FILE}) {{ return 503 '{{\"error\":\"not ready\"}}'; }}")
            lines.append("            proxy_pass http://triton;")
            lines.append("        }")
            http_locations.append("\n".join(lines))
        http_locations_text = "\n".join(http_locations)
        grpc_server = ""
        if self.grpc_port:
            grpc_limit = grpc_message_limit(self.body_limit)
            open_methods = "|".join(GRPC_OPEN)
            client_cert_check = (
                f"            if ($ssl_client_verify != SUCCESS) {{ {_grpc_status(16, 'a client certificate is required')} }}\n"
                if mtls else "")
            keyed_methods = "|".join(GRPC_ALLOW)
            grpc_server = f"""
    upstream triton_grpc {{
        server 127.0.0.1:{self.grpc_upstream_port};
        keepalive 32;
    }}
    server {{
        listen {host}:{self.grpc_port}{ssl} http2 default_server;
        server_name _;
{tls}        return 444;
    }}
    server {{
        listen {host}:{self.grpc_port}{ssl} http2;
        server_name {names};
{tls}        default_type application/grpc;
        client_max_body_size {grpc_limit};
        client_body_buffer_size {grpc_limit};
        grpc_read_timeout {lim.upstream_timeout_s}s;
        grpc_send_timeout {lim.upstream_timeout_s}s;
        error_page 413 = @grpc_too_large;
        error_page 502 504 = @grpc_unavailable;
        location @grpc_too_large {{ {_grpc_status(3, f"request over {grpc_limit} bytes: more than any valid request needs")} }}
        location @grpc_unavailable {{ {_grpc_status(14, "tritonserver is not answering (restarting?); retry shortly")} }}
        location ~ ^/{GRPC_SERVICE.replace(".", "[.]")}/({open_methods})$ {{
            {grpc_header}grpc_pass grpc://triton_grpc;
        }}
        location ~ ^/{GRPC_SERVICE.replace(".", "[.]")}/({keyed_methods})$ {{
            limit_conn vedit_conn {lim.conn_per_client};
            if ($vedit_origin_ok = 0) {{ {_grpc_status(7, "requests from web pages of another origin are refused")} }}
            if ($vedit_token_ok = 0) {{ {_grpc_status(16, "missing or wrong API key: send authorization: Bearer TOKEN")} }}
{client_cert_check}            limit_req zone=vedit_req burst={2 * lim.rate_per_client} nodelay;
            {grpc_header}grpc_pass grpc://triton_grpc;
        }}
        location / {{ {_grpc_status(7, "not allowed through the vedit front")} }}
    }}
"""
        return f"""# written by vedit.serving.front; regenerated at every start
daemon off;
worker_processes 1;
worker_rlimit_nofile {2 * lim.worker_connections + 64};
{user}pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {lim.worker_connections}; }}
http {{
    log_format front '$remote_addr "$request" $status $request_length $upstream_status $request_time';
    access_log {d}/access.log front;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server_tokens off;
    default_type application/json;
    client_max_body_size {self.body_limit};
    client_body_buffer_size {self.body_limit};
    client_header_timeout {lim.header_timeout_s}s;
    client_body_timeout {lim.body_timeout_s}s;
    send_timeout {lim.upstream_timeout_s}s;
    keepalive_timeout {lim.keepalive_timeout_s}s;
    reset_timedout_connection on;
    large_client_header_buffers 4 8k;
    limit_conn_zone $binary_remote_addr zone=vedit_conn:1m;
    limit_req_zone $binary_remote_addr zone=vedit_req:1m rate={lim.rate_per_client}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    map $http_authorization $vedit_token_ok {{
        default {token_default};
{keys}    }}
    map $http_origin $vedit_origin_ok {{
        default 0;
        "" 1;
{origins}    }}
    map "$request_method:$content_type" $vedit_type_ok {{
        default 0;
        "~^(GET|HEAD):" 1;
        "~*^POST:application/(json|octet-stream)\\s*(;.*)?$" 1;
        "POST:" 1;
    }}
    upstream triton {{
        server 127.0.0.1:{self.upstream_port};
        keepalive 32;
    }}
    server {{
        listen {host}:{self.listen_port}{ssl} default_server;
        server_name _;
{tls}        return 444;
    }}
    server {{
        listen {host}:{self.listen_port}{ssl};
        server_name {names};
{tls}        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization "";
{front_header}        proxy_read_timeout {lim.upstream_timeout_s}s;
        proxy_send_timeout {lim.upstream_timeout_s}s;
        error_page 413 @too_large;
        error_page 502 504 =503 @unavailable;
        if ($vedit_origin_ok = 0) {{
            return 403 '{{"error":"requests from web pages of another origin are refused"}}';
        }}
        location @too_large {{
            return 413 '{too_large}';
        }}
        location @unavailable {{
            return 503 '{{"error":"tritonserver is not answering (restarting?); retry shortly"}}';
        }}
{http_locations_text}
        location / {{
            return 403 '{{"error":"not allowed through the vedit front: only health, model ready/metadata/config and infer"}}';
        }}
    }}{grpc_server}
}}
"""


def pod_front_conf(*, body_limit: int, listen_port: int, upstream_port: int, directory: str,
                   names: tuple[str, ...] = ()) -> str:
    """nginx.conf of the front as a sidecar in a Kubernetes pod (``vedit triton deploy``).

    The same :meth:`FrontConfig.render` as the local front, so the pod gets the same allow-list,
    limits and readiness handling; only where nginx writes differs: logs to the container's
    stdout/stderr, pid and temp files under ``directory`` (an emptyDir: the root filesystem is
    read-only). nginx runs as the container's non-root user, so no ``user`` directive.
    ``names``: the Host names the pod answers to (the Ingress host, the Service's DNS names,
    ``localhost`` for the kubelet's probes); the front drops requests for any other host.
    """
    d = Path(directory)
    text = FrontConfig("0.0.0.0", listen_port, upstream_port, body_limit, d, names=tuple(names)).render()
    return text.replace(f"{d}/access.log", "/dev/stdout").replace(f"{d}/error.log", "/dev/stderr")


def _worker_user() -> str | None:
    """Workers started by root drop to ``nobody`` and its own group (Debian has no group "nobody",
    which nginx would assume)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("nobody")
        return f"nobody {grp.getgrgid(pw.pw_gid).gr_name}"
    except KeyError:
        return None


def _others_can_enter(path: Path) -> bool:
    """Whether every directory down to ``path`` is searchable by other users (o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))



def stop_process(proc: subprocess.Popen, sig: int, timeout: float) -> int:
    """Ask a server process to stop with ``sig``; SIGKILL its process group after ``timeout`` s.

    Servers here run in their own session (``start_new_session``), so the group is theirs alone:
    nginx's workers and tritonserver's backend stubs go with it. Returns the exit code.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
    return proc.returncode


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()

class NginxFront:
    """One nginx process proxying ``listen_host:listen_port`` to Triton's HTTP on 127.0.0.1."""

    def __init__(self, *, listen_host: str, listen_port: int, upstream_port: int, body_limit: int,
                 directory: str | Path | None = None, preexec_fn=None, **options) -> None:
        """``options``: the other :class:`FrontConfig` fields (gRPC ports, keys, TLS, names, limits)."""
        self.binary = nginx_binary()
        if self.binary is None:
            raise TritonRepoError(f"nginx not found (the HTTP front that limits request sizes); {INSTALL_HINT}")
        self._own_dir = directory is None  # then a fresh one under /tmp at each start, removed at stop
        d = Path(directory) if directory else Path(tempfile.gettempdir()) / "vedit-front-(not started)"
        self.config = FrontConfig(listen_host, listen_port, upstream_port, body_limit, d, _worker_user(), **options)
        self._preexec_fn = preexec_fn
        self._proc: subprocess.Popen | None = None

    @property
    def directory(self) -> Path:
        return self.config.directory

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The nginx master's pid (its workers are its children)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> "NginxFront":
        if self._own_dir:
            self.config = replace(self.config, directory=Path(tempfile.mkdtemp(prefix="vedit-front-")))
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o711)  # workers (nobody) must see the readiness flag file; nobody may list or read the rest
        if self.config.worker_user and not _others_can_enter(d):
            raise TritonRepoError(f"{d}: nginx workers run as {self.config.worker_user.split()[0]} and cannot reach "
                                  "this directory (a parent is not world-searchable); use a directory under /tmp")
        (d / NOT_READY_FILE).unlink(missing_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
            if self.config.worker_user:
                pw = pwd.getpwnam(self.config.worker_user.split()[0])
                os.chown(d / "tmp" / sub, pw.pw_uid, pw.pw_gid)
            (d / "tmp" / sub).chmod(0o700)
        (d / "tmp").chmod(0o711)
        conf = d / "nginx.conf"  # it holds the API keys and the key Triton expects from the front
        for name in ("nginx.conf", "error.log", "access.log", "stderr.log"):
            (d / name).touch(mode=0o600)
            (d / name).chmod(0o600)
        conf.write_text(self.config.render(), encoding="utf-8")
        args = ["-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]  # -e: never /var/log/nginx
        test = subprocess.run([self.binary, "-t", "-q", *args], capture_output=True, text=True)
        if test.returncode != 0:
            reason = next((ln for ln in test.stderr.splitlines() if "[emerg]" in ln), test.stderr.strip())
            self.stop()
            raise TritonRepoError(f"nginx refused its config: {reason}")
        with open(os.open(d / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as err:
            self._proc = subprocess.Popen(
                [self.binary, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, preexec_fn=self._child_setup,
            )
        deadline = time.monotonic() + timeout
        # nginx writes its pid file only once it holds the port: someone else's listener on the port
        # must not pass for ours
        while not (self._pid_written() and self._accepting()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                reason = self.error_tail()
                self.stop()
                raise TritonRepoError(f"nginx did not start on {self.config.listen_host}:{self.config.listen_port}: "
                                      f"{reason}")
            time.sleep(0.05)
        return self

    def _child_setup(self) -> None:
        os.umask(0o077)  # logs and pid file: the operator's only
        if self._preexec_fn is not None:
            self._preexec_fn()

    def _pid_written(self) -> bool:
        try:
            return int((self.directory / "nginx.pid").read_text().strip() or 0) == self._proc.pid
        except (OSError, ValueError):
            return False

    def _accepting(self) -> bool:
        host = "127.0.0.1" if self.config.listen_host in ("0.0.0.0", "") else self.config.listen_host
        try:
            with socket.create_connection((host, self.config.listen_port), timeout=1):
                return True
        except OSError:
            return False

    def set_ready(self, ready: bool) -> None:
        """Readiness as the front reports it; Triton's own answer counts only when this is True."""
        flag = self.directory / NOT_READY_FILE
        if ready:
            flag.unlink(missing_ok=True)
        else:
            flag.touch()

    @property
    def ready_flag(self) -> bool:
        return not (self.directory / NOT_READY_FILE).exists()

    def error_tail(self, lines: int = 3) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            try:
                text += (self.directory / name).read_text(errors="replace")
            except OSError:
                pass
        tail = [ln.split("] ", 1)[-1] for ln in text.strip().splitlines()]  # without time and pid
        return " | ".join(dict.fromkeys(tail[-lines:])) or "(nginx wrote nothing)"

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful (SIGQUIT): in-flight requests finish, idle keep-alive connections to Triton close
        (Triton's own shutdown waits for open HTTP connections); SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, signal.SIGQUIT, timeout)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


__all__ = [
    "ADMIN_APIS",
    "ADMIN_HEADER",
    "FRONT_APIS",
    "FRONT_HEADER",
    "GRPC_ALLOW",
    "GRPC_OPEN",
    "HTTP_ALLOW",
    "FrontConfig",
    "FrontLimits",
    "FrontTLS",
    "NginxFront",
    "Route",
    "body_limit",
    "check_exposure",
    "grpc_message_limit",
    "is_loopback",
    "kill_group",
    "nginx_binary",
    "pod_front_conf",
    "read_api_keys",
    "server_names",
    "stop_process",
]
