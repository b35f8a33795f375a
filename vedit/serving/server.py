"""Run a real ``tritonserver`` on a model repository: the binary bundled in the nvidia-pytriton wheel.

The wheel ships Triton's server, its python backend and the local response cache, but not laid
out as Triton expects: the python backend stub must sit next to ``libtriton_python.so``. So the
first start copies ``bin/``, ``backends/`` and ``caches/`` into ``$VEDIT_HOME/tritonserver/<ver>``
(once, atomically) and puts the stub for this Python in place. The server then runs with:

- ``LD_LIBRARY_PATH`` on the wheel's bundled libraries (``nvidia_pytriton.libs``);
- this interpreter's ``bin`` first on ``PATH``: the stub starts the first ``python3`` it finds and
  imports vedit from there (it ignores ``PYTHONPATH``);
- a local response cache (``--cache-config local,size=...``), which the model's config enables;
- explicit model control (``--model-control-mode=explicit --load-model=NAME`` for every model in
  the repository), so models can be reloaded through Triton's repository API.

- Triton's admin APIs (repository, shared memory, statistics, trace, logging) locked with a
  random per-start key (:attr:`TritonServer.admin_headers`, for the supervisor only), and behind
  the front inference, metadata and config with the front's own key (:meth:`restriction_args`);
- as root, the unprivileged service user, a minimal environment and umask 077
  (:mod:`vedit.serving.privilege`).

By default an nginx front (:mod:`vedit.serving.front`) owns the public HTTP and gRPC ports and
Triton's listen on 127.0.0.1 only: the front passes an allow-list, refuses oversized bodies (Triton
2.51 crashes on HTTP bodies of a few MB) and checks keys, TLS, Host and Origin. Metrics stay
Triton's own (read-only). With ``supervise=True`` a
:class:`~vedit.serving.supervise.Supervisor` restarts a dead tritonserver and reloads models
whose instances died.

Usage::

    with TritonServer(repo) as server:      # free ports unless given; waits until ready
        print(server.urls["http"])
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from vedit import paths
from vedit.atomicio import atomic_dir
from vedit.errors import TritonRepoError
from vedit.serving.front import (
    ADMIN_APIS,
    ADMIN_HEADER,
    FRONT_APIS,
    FRONT_HEADER,
    FrontLimits,
    FrontTLS,
    NginxFront,
    body_limit,
    kill_group,
    nginx_binary,
    stop_process,
)
from vedit.serving.front import server_names as front_server_names
from vedit.serving.privilege import (
    Account,
    drop_to,
    minimal_environment,
    open_to_others,
    private_dir,
    reachable,
    service_account,
    stage_tree,
)
from vedit.serving.supervise import SupervisePolicy, Supervisor, protect_regions, stubs

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_ERROR_LINE = re.compile(r"^E\d{4} ")
#: Error lines Triton prints on every CPU-only start.
_NOISE = ("CudaDriverHelper has not been initialized",)


@dataclass(frozen=True)
class ServerFiles:
    """Where the prepared server lives."""

    binary: Path
    backends: Path
    caches: Path
    libs: Path


def _wheel_dirs() -> tuple[Path, Path, str]:
    try:
        import pytriton
    except ImportError:
        raise TritonRepoError(
            "the Triton server comes with nvidia-pytriton; install it with `pip install vedit[triton]`"
        ) from None
    from importlib.metadata import version

    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return root, libs, version("nvidia-pytriton")


def prepare_server(base: Path | None = None) -> ServerFiles:
    """Lay out the wheel's server under ``base`` (default ``$VEDIT_HOME/tritonserver``), once."""
    root, libs, ver = _wheel_dirs()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonRepoError(f"nvidia-pytriton {ver} has no python backend stub for Python {pyver}")
    target = (base or paths.home() / "tritonserver") / f"{ver}-py{pyver}"
    files = ServerFiles(
        binary=target / "bin" / "tritonserver",
        backends=target / "backends",
        caches=target / "caches",
        libs=libs,
    )
    if (target / ".complete").exists():
        return files
    with atomic_dir(target, first_wins=True) as tmp:  # a server may be running from one made meanwhile
        for sub in ("bin", "backends", "caches"):
            shutil.copytree(root / sub, tmp / sub, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
        (tmp / ".complete").write_text(ver + "\n")
    return files


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started the server dies (Linux),
    so a killed test run or ``vedit triton serve`` never leaves a server holding its ports."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    """One ``tritonserver`` process serving ``repository``; a context manager.

    Ports left as ``None`` are picked free. ``host`` is the address the server binds to; URLs
    use ``127.0.0.1`` when it binds to all addresses. With ``die_with_parent`` (Linux) the server
    gets SIGTERM when the thread that started it ends: start it from a thread that outlives it
    (restarts by the supervisor come from its own thread, which lives until :meth:`stop`).

    ``front``: nginx on the public HTTP port with a body-size limit derived from the repository
    (:func:`~vedit.serving.front.body_limit`); ``False`` exposes Triton's HTTP directly;
    ``None`` (default) uses nginx when it is installed (``vedit triton serve`` insists on it). ``supervise``: restart and reload on faults (see :mod:`vedit.serving.supervise`).
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        log_path: str | Path | None = None,
        log_verbose: int = 0,
        server_dir: str | Path | None = None,
        gpu: bool | None = None,
        die_with_parent: bool = True,
        front: bool | None = None,
        supervise: bool = False,
        policy: SupervisePolicy | None = None,
        api_keys: tuple[str, ...] = (),
        tls: FrontTLS | None = None,
        server_names: tuple[str, ...] = (),
        allowed_origins: tuple[str, ...] = (),
        limits: FrontLimits | None = None,
        user: str | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise TritonRepoError(f"{self.repository}: model repository not found; build one with `vedit triton build`")
        if not any(self.repository.glob("*/config.pbtxt")):
            raise TritonRepoError(f"{self.repository}: no <model>/config.pbtxt inside; not a Triton model repository")
        self.host = host
        self.ports = {
            "http": http_port or free_port(),
            "grpc": grpc_port or free_port(),
            "metrics": metrics_port or free_port(),
        }
        self.cache_bytes = cache_bytes
        self.log_verbose = log_verbose
        self.gpu = _has_gpu() if gpu is None else gpu
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self._server_dir = Path(server_dir) if server_dir else None
        self._log_path = Path(log_path) if log_path else None
        self._log_tmp: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._files: ServerFiles | None = None
        self.front: NginxFront | None = None
        if front is None:
            front = nginx_binary() is not None
            if not front:
                log.warning("nginx not found: Triton's HTTP port is exposed without a request size limit")
        self._admin_key = ""
        self._front_key = ""
        if front:
            limit = body_limit(self.repository)
            self._triton_http_port = free_port("127.0.0.1")
            self._triton_grpc_port = free_port("127.0.0.1")
            self.front = NginxFront(listen_host=host, listen_port=self.ports["http"],
                                    upstream_port=self._triton_http_port, body_limit=limit,
                                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                                    grpc_port=self.ports["grpc"], grpc_upstream_port=self._triton_grpc_port,
                                    api_keys=tuple(api_keys), tls=tls, names=front_server_names(host, tuple(server_names)),
                                    allowed_origins=tuple(allowed_origins), limits=limits or FrontLimits())
        else:
            if api_keys or tls:
                raise TritonRepoError("API keys and TLS are the nginx front's; they need the front (drop --no-front)")
            self._triton_http_port = self.ports["http"]
            self._triton_grpc_port = self.ports["grpc"]
        self.user = user
        self.account: Account | None = None
        """Who tritonserver runs as (set at :meth:`start`; see :mod:`vedit.serving.privilege`)."""
        self._private: Path | None = None
        self._served_repository = self.repository
        self.supervise = supervise
        self.policy = policy or SupervisePolicy()
        self.supervisor: Supervisor | None = None

    # -- endpoints ---------------------------------------------------------------------------
    @property
    def tls(self) -> bool:
        return self.front is not None and self.front.config.tls is not None

    @property
    def urls(self) -> dict[str, str]:
        h = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        s = "s" if self.tls else ""
        return {
            "http": f"http{s}://{h}:{self.ports['http']}",
            "grpc": f"grpc{s}://{h}:{self.ports['grpc']}",
            "metrics": f"http://{h}:{self.ports['metrics']}/metrics",
        }

    @property
    def log_path(self) -> Path | None:
        return self._log_path or self._log_tmp

    @property
    def triton_http_url(self) -> str:
        """Triton's own HTTP endpoint (behind the front when there is one)."""
        h = "127.0.0.1" if self.front or self.host in ("0.0.0.0", "") else self.host
        return f"http://{h}:{self._triton_http_port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers that open Triton's restricted APIs on its own ports (repository, shared memory,
        statistics, trace, logging; and, behind the front, inference, metadata and config).
        Random at every :meth:`start`; only the supervisor (and the front, for its part) has them."""
        headers = {ADMIN_HEADER: self._admin_key}
        if self._front_key:
            headers[FRONT_HEADER] = self._front_key
        return headers

    @property
    def body_limit(self) -> int | None:
        return self.front.config.body_limit if self.front else None

    @property
    def running(self) -> bool:
        """The server is up, or down for a moment while its supervisor restarts it."""
        if self.supervisor is not None and self.supervisor.is_alive() and not self.supervisor.gave_up:
            return True
        return self.triton_alive

    @property
    def triton_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def triton_returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self, files: ServerFiles) -> list[str]:
        cmd = [
            str(files.binary),
            f"--model-repository={self._served_repository}",
            f"--backend-directory={files.backends}",
            f"--cache-directory={files.caches}",
            f"--http-address={'127.0.0.1' if self.front else self.host}",
            f"--grpc-address={'127.0.0.1' if self.front else self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self._triton_http_port}",
            f"--grpc-port={self._triton_grpc_port}",
            f"--metrics-port={self.ports['metrics']}",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.log_verbose}",
            "--model-control-mode=explicit",
            *self.restriction_args(),
        ]
        if self.cache_bytes:  # 0: no response cache (the model's config asks for one; Triton warns)
            cmd.insert(4, f"--cache-config=local,size={self.cache_bytes}")
        cmd += [f"--load-model={name}" for name in self.model_names()]
        if not self.gpu:
            cmd += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
        return cmd

    def restriction_args(self) -> list[str]:
        """Triton's own locks (form ``apis:key=value``; gRPC clients send ``triton-grpc-protocol-key``).

        The admin APIs need the per-start admin key. Behind the front, inference, metadata and config
        need the front's key too, which nginx adds to what it passes: Triton's loopback ports then
        answer health alone to anyone else. Both keys show in this host's process list (tritonserver
        takes them only as arguments): they keep out what reaches the ports, not local users who can
        read /proc (run the server as its own user in a container or VM for that; see SECURITY.md)."""
        groups = [(ADMIN_APIS, ADMIN_HEADER, self._admin_key)]
        if self._front_key:
            groups.append((FRONT_APIS, FRONT_HEADER, self._front_key))
        args = []
        for apis, header, key in groups:
            args += [f"--http-restricted-api={','.join(apis)}:{header}={key}",
                     f"--grpc-restricted-protocol={','.join(apis)}:{header}={key}"]
        return args

    def environment(self, files: ServerFiles) -> dict[str, str]:
        """A minimal environment: the model code sees none of the caller's tokens or credentials."""
        ld = os.pathsep.join(filter(None, [str(files.libs), os.environ.get("LD_LIBRARY_PATH")]))
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        home = str(self._private) if self._private else os.environ.get("HOME", "/nonexistent")
        return minimal_environment(path, ld, home)

    def _stage(self, files: ServerFiles) -> ServerFiles:
        """As another user: the repository and server files in place when it can read them, else
        staged again (at every start: a restart sees the repository as it is now)."""
        account = self.account
        if account is None or not account.switches:
            self._served_repository = self.repository
            return files
        for needed in (Path(sys.executable).resolve(), files.libs):
            if reachable(needed):
                continue
            why = (f"{needed}: user {account.name} cannot reach it (a directory above it is private); install "
                   "Python and vedit where other users can read them (e.g. /opt or /usr/local)")
            if self.user is not None:
                raise TritonRepoError(f"{why}, or pass --user root")
            log.warning("tritonserver and the model code run as root: %s", why)
            self.account = Account("root", None, None)
            self._served_repository = self.repository
            return files
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
        self._private = private_dir(account)
        repo = self.repository
        self._served_repository = repo if open_to_others(repo) else stage_tree(repo, account, self._private)
        root = files.binary.parent.parent
        if open_to_others(root):
            return files
        staged = stage_tree(root, account, self._private)
        return ServerFiles(binary=staged / "bin" / files.binary.name, backends=staged / "backends",
                           caches=staged / "caches", libs=files.libs)

    def model_names(self) -> list[str]:
        return sorted(p.parent.name for p in self.repository.glob("*/config.pbtxt"))

    def start(self) -> "TritonServer":
        if self.running:
            raise TritonRepoError("the server is already running")
        self._files = prepare_server(self._server_dir)
        self.account = service_account(self.user)
        self._admin_key = secrets.token_urlsafe(32)
        if self.front is not None:
            self._front_key = secrets.token_urlsafe(32)
            self.front.config = replace(self.front.config, front_key=self._front_key)
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self._log_tmp = Path(name)
        self.spawn()
        if self.front is not None:
            try:
                self.front.start()
            except BaseException:
                self.kill_triton()
                raise
        return self

    def spawn(self) -> None:
        """Start the tritonserver process (again, for the supervisor) on the same ports and log."""
        files = self._stage(self._files or prepare_server(self._server_dir))
        drop = drop_to(self.account or Account("", None, None))

        def child() -> None:
            drop()
            if self.die_with_parent:  # after the switch: changing credentials clears it
                _die_with_parent()

        log = open(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self.command(files),
                env=self.environment(files),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, not the server; we stop it in order
                preexec_fn=child,
                cwd=self._private or None,
            )
        finally:
            log.close()

    def kill_triton(self) -> None:
        """SIGKILL the tritonserver process group (a failed start; never a running service)."""
        if self._proc is not None:
            kill_group(self._proc)

    def set_ready(self, ready: bool) -> None:
        """What the front reports on the readiness endpoints (Triton's own answer counts when True)."""
        if self.front is not None:
            self.front.set_ready(ready)

    def wait_ready(self, timeout: float = 120.0) -> "TritonServer":
        """Block until ``/v2/health/ready`` answers 200 (all models loaded and warmed up) through the
        public HTTP port; then start the supervisor if one was asked for."""
        if self._proc is None:
            raise TritonRepoError("the server was not started; call start() first")
        start = time.monotonic()
        self.wait_triton_ready(timeout)
        if self.front is not None:
            self.front.set_ready(True)
            while not self.is_ready():
                if not self.front.running:
                    report = f"nginx exited: {self.front.error_tail()}"
                    self.stop()
                    raise TritonRepoError(report)
                if time.monotonic() - start > timeout:
                    report = self.front.error_tail()
                    self.stop()
                    raise TritonRepoError(f"the HTTP front at {self.urls['http']} is not answering: {report}")
                time.sleep(0.1)
        if self.supervise and self.supervisor is None:
            self.supervisor = Supervisor(self, self.policy)
            self.supervisor.start()
        return self

    def wait_triton_ready(self, timeout: float = 120.0, stop=None) -> None:
        """Block until tritonserver itself reports ready on its own HTTP port."""
        url = self.triton_http_url + "/v2/health/ready"
        deadline = time.monotonic() + timeout
        while True:
            if stop is not None and stop.is_set():
                raise TritonRepoError("stopped while waiting for tritonserver")
            code = self._proc.poll()
            if code is not None:
                raise TritonRepoError(f"tritonserver exited with code {code} before it was ready:\n"
                                      f"{self.failure_report()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        protect_regions(stubs(self._proc.pid))
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                report = self.failure_report()
                if stop is None:
                    self.stop()
                raise TritonRepoError(f"tritonserver not ready after {timeout:.0f} s:\n{report}")
            time.sleep(0.2)

    def is_ready(self) -> bool:
        """Whether the public HTTP port answers ready (through the front, as a load balancer sees it)."""
        # our own server on loopback: readiness is read, nothing is sent, so the certificate's name
        # (often a public host name) need not match 127.0.0.1
        context = ssl._create_unverified_context() if self.tls else None  # noqa: S323
        try:
            with urllib.request.urlopen(self.urls["http"] + "/v2/health/ready", timeout=2, context=context) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """Supervisor first (no restarts from here on), then the front (in-flight HTTP requests
        finish), then tritonserver (SIGTERM: Triton drains in-flight gRPC requests; SIGKILL to its
        process group after ``timeout``)."""
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            supervisor.stop()
        if self.front is not None:
            self.front.stop(timeout)  # first: Triton's shutdown waits for nginx's keep-alive connections
        code = self._stop_triton(timeout)
        if supervisor is not None:
            supervisor.final_clean_up()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        return code

    def _stop_triton(self, timeout: float) -> int | None:
        proc, self._proc = self._proc, None
        return None if proc is None else stop_process(proc, signal.SIGTERM, timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log_lines()[-lines:]) or "(no server log)"

    def failure_report(self) -> str:
        """Triton's error lines (the reason a model did not load) and its last words, deduplicated."""
        lines = self._log_lines()
        errors = [ln for ln in lines if _ERROR_LINE.match(ln) and not any(n in ln for n in _NOISE)]
        picked: list[str] = []
        for line in errors + lines[-3:]:
            line = line.replace("\\n", " ").strip()[:600]
            if line and line not in picked:
                picked.append(line)
        return "\n".join(picked) + f"\n(full log: {self.log_path})"

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines() if self.log_path else []
        except OSError:
            return []

    def __enter__(self) -> "TritonServer":
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._log_tmp is not None:
            self._log_tmp.unlink(missing_ok=True)
            self._log_tmp = None


__all__ = ["ServerFiles", "TritonServer", "free_port", "prepare_server"]
