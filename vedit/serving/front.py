"""An nginx front for tritonserver's HTTP port: a body-size limit and readiness that tells the truth.

Why a front at all: Triton 2.51's HTTP frontend dies (signal 11) on request bodies of a few MB
(triton-inference-server/server issue 5840) and has no option to limit them, so one hostile request
could stop the server. nginx listens on the public HTTP port, answers 413 to any body over the limit
before Triton reads a byte of it, and proxies everything else to Triton's HTTP port on 127.0.0.1.

The limit comes from the model configuration, not from a guess: a request carries at most
``max_batch_size`` intents of at most ``max_intent_bytes`` each, and JSON may escape a byte into
six (``\\u0001``), plus a fixed allowance for the JSON around them. That is 65 KiB for the cpu
profile and about 210 KiB for a100, far under the sizes that crash Triton.

The front also owns readiness: while the supervisor reloads a model, or when the model failed its
probe, a flag file exists and ``/v2/health/ready`` (and each model's ``/ready``) answer 503, so a
load balancer stops sending traffic. When tritonserver itself is down, nginx's 502/504 become a 503
with a JSON error that Triton's clients can read.

nginx runs as an ordinary child process with its own config, pid, logs and temp dirs in a private
directory (``nginx -p DIR -c DIR/nginx.conf``): nothing under /etc/nginx is read or changed.
"""

from __future__ import annotations

import grp
import os
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
class FrontConfig:
    listen_host: str
    listen_port: int
    upstream_port: int
    body_limit: int
    directory: Path
    worker_user: str | None = None
    """``user`` directive: only meaningful when nginx starts as root (workers drop to it)."""

    def render(self) -> str:
        """The whole nginx.conf: nothing is inherited from /etc/nginx."""
        d = self.directory
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        too_large = (f'{{"error":"request body over {self.body_limit} bytes: the most a request to this '
                     f'server can need (max_batch_size x max_intent_bytes)"}}')
        user = f"user {self.worker_user};\n" if self.worker_user else ""
        return f"""# written by vedit.serving.front; regenerated at every start
daemon off;
worker_processes 1;
{user}pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format front '$remote_addr "$request" $status $request_length $upstream_status $request_time';
    access_log {d}/access.log front;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server_tokens off;
    client_max_body_size {self.body_limit};
    client_body_buffer_size {self.body_limit};
    upstream triton {{
        server 127.0.0.1:{self.upstream_port};
        keepalive 32;
    }}
    server {{
        listen {host}:{self.listen_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 600s;
        proxy_send_timeout 600s;
        error_page 413 @too_large;
        error_page 502 504 =503 @unavailable;
        location @too_large {{
            default_type application/json;
            return 413 '{too_large}';
        }}
        location @unavailable {{
            default_type application/json;
            return 503 '{{"error":"tritonserver is not answering (restarting?); retry shortly"}}';
        }}
        location ~ ^/v2/(health/ready|models/[^/]+(/versions/[^/]+)?/ready)$ {{
            if (-f {d}/{NOT_READY_FILE}) {{
                return 503;
            }}
            proxy_pass http://triton;
        }}
        location / {{
            proxy_pass http://triton;
        }}
    }}
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
    ``localhost`` for the kubelet's probes), for a front that drops other hosts; this front does
    not check Host yet, so they are not used here.
    """
    d = Path(directory)
    text = FrontConfig("0.0.0.0", listen_port, upstream_port, body_limit, d).render()
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
                 directory: str | Path | None = None, preexec_fn=None) -> None:
        self.binary = nginx_binary()
        if self.binary is None:
            raise TritonRepoError(f"nginx not found (the HTTP front that limits request sizes); {INSTALL_HINT}")
        self._own_dir = directory is None  # then a fresh one under /tmp at each start, removed at stop
        d = Path(directory) if directory else Path(tempfile.gettempdir()) / "vedit-front-(not started)"
        self.config = FrontConfig(listen_host, listen_port, upstream_port, body_limit, d, _worker_user())
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
        d.chmod(0o755)  # workers (nobody) must see the readiness flag file
        if self.config.worker_user and not _others_can_enter(d):
            raise TritonRepoError(f"{d}: nginx workers run as {self.config.worker_user.split()[0]} and cannot reach "
                                  "this directory (a parent is not world-searchable); use a directory under /tmp")
        (d / NOT_READY_FILE).unlink(missing_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
            if self.config.worker_user:
                pw = pwd.getpwnam(self.config.worker_user.split()[0])
                os.chown(d / "tmp" / sub, pw.pw_uid, pw.pw_gid)
        conf = d / "nginx.conf"
        conf.write_text(self.config.render(), encoding="utf-8")
        args = ["-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]  # -e: never /var/log/nginx
        test = subprocess.run([self.binary, "-t", "-q", *args], capture_output=True, text=True)
        if test.returncode != 0:
            reason = next((ln for ln in test.stderr.splitlines() if "[emerg]" in ln), test.stderr.strip())
            self.stop()
            raise TritonRepoError(f"nginx refused its config: {reason}")
        with open(d / "stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [self.binary, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, preexec_fn=self._preexec_fn,
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


__all__ = ["FrontConfig", "NginxFront", "body_limit", "kill_group", "nginx_binary", "pod_front_conf", "stop_process"]
