"""Keep a tritonserver answering without an operator: restart it when it dies, reload dead instances.

Two faults are handled, both seen on Triton 2.51 here:

- **tritonserver exits** (killed, crashed): it is started again on the same ports, after a backoff
  that doubles while starts keep failing or the server keeps dying soon after starting (1 s, 2 s,
  4 s ... at most ``max_backoff``), and given up after ``max_failed_starts`` starts in a row that
  never became ready.
- **a python-backend stub dies** (OOM killer, a crash in a native library): Triton keeps the
  instance, answers every request routed to it with "Stub process '<instance>' is not healthy",
  and still reports ready. Nothing in Triton restarts it. The supervisor notices within
  ``check_interval`` (each instance's stub process is a child of tritonserver; a dead one is a
  zombie or gone), or, when the stub is alive but hung, at the next probe (real requests with
  fresh intents, so the response cache cannot answer them; every ``probe_interval``, and more of
  them at once when Triton's count of failed requests rose since the last check), and reloads the
  model through the repository API.

A reload is a ``load`` request carrying the model's own configuration with one parameter
(``vedit_reload``) changed: a plain ``load`` of an unchanged model is a no-op in Triton, while a
changed configuration makes Triton build new instances and switch to them once they are ready, so
the healthy instance keeps answering meanwhile. If that fails, ``unload`` then ``load``. While a
reload or restart is under way the front reports not-ready (``/v2/health/ready`` answers 503).

Everything is logged on the ``vedit.serving.supervise`` logger; ``events`` keeps what happened
(for tests and for ``vedit triton serve``'s summary).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vedit.triton_repo.config import INPUT_NAME, parse_config

log = logging.getLogger(__name__)

STUB_COMM = "triton_python_b"  # /proc/PID/comm is cut to 15 characters
SHM_DIR = Path("/dev/shm")
UNHEALTHY = "is not healthy"
RELOAD_PARAM = "vedit_reload"


class Supervised(Protocol):
    """All the supervisor may touch of a server: its process, its admin URL and key, its readiness flag.

    :class:`vedit.serving.server.TritonServer` provides it; keeping the supervisor to this
    interface lets the server change how it starts, fronts or secures Triton without the
    supervisor knowing.
    """

    repository: Path

    @property
    def pid(self) -> int | None:
        """tritonserver's process id, or None before the first start."""

    @property
    def triton_alive(self) -> bool: ...

    @property
    def triton_returncode(self) -> int | None: ...

    @property
    def triton_http_url(self) -> str:
        """Triton's own HTTP endpoint (loopback, behind any front): where probes and reloads go."""

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers that open Triton's restricted APIs (repository, statistics, ...) for the supervisor."""

    @property
    def log_path(self) -> Path | None: ...

    def spawn(self) -> None:
        """Start tritonserver again on the same ports (after it died)."""

    def kill_triton(self) -> None: ...

    def wait_triton_ready(self, timeout: float = 120.0, stop: threading.Event | None = None) -> None: ...

    def set_ready(self, ready: bool) -> None:
        """What the front's ``/v2/health/ready`` says while a restart or reload is under way."""


@dataclass(frozen=True)
class SupervisePolicy:
    backoff: float = 1.0
    """First wait before restarting a dead tritonserver, in seconds; doubles on repeated failures."""
    max_backoff: float = 30.0
    max_failed_starts: int = 5
    """Starts in a row that never became ready before the supervisor gives up."""
    stable_after: float = 60.0
    """A server up this long has earned a reset of the backoff when it next dies."""
    check_interval: float = 0.5
    """How often the process and its stubs are checked (cheap: /proc)."""
    probe_interval: float = 10.0
    """How often real requests probe each model (0: never)."""
    probe_timeout: float = 60.0
    ready_timeout: float = 300.0


@dataclass
class Event:
    at: float
    """time.monotonic() when it happened."""
    kind: str
    """``died``, ``restarted``, ``start-failed``, ``gave-up``, ``stub-lost``, ``probe-failed``,
    ``reloaded``, ``reload-failed``."""
    detail: str = ""
    seconds: float | None = None
    """For ``restarted``/``reloaded``: from noticing the fault until the model answered again."""


@dataclass
class _Model:
    name: str
    input_name: str | None
    instances: set[str] = field(default_factory=set)
    """Instance names that had a live stub when the model was last known good."""
    reloads: int = 0
    failures: int | None = None
    """Triton's count of failed inferences at the last look (``None``: not looked yet)."""


@dataclass(frozen=True)
class Stub:
    """One python-backend stub process: which instance it runs and its shared-memory region."""

    pid: int
    model: str
    instance: str
    region: str
    """Name of its region under /dev/shm (Triton removes it on a clean unload, not after a kill)."""
    alive: bool


def stubs(pid: int) -> list[Stub]:
    """The python-backend stubs that are children of tritonserver ``pid`` (a zombie: alive False)."""
    out = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = _children_by_scan(pid)
    for child in children:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            state = stat[stat.rindex(")") + 2]
            if comm != STUB_COMM:
                continue
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")]
        except (OSError, ValueError, IndexError):
            continue
        if len(argv) < 9:  # a zombie's cmdline is empty
            out.append(Stub(int(child), "?", "?", "", False))
            continue
        out.append(Stub(int(child), Path(argv[1]).parent.parent.name, argv[8], argv[2], state not in "ZX"))
    return out


def _children_by_scan(pid: int) -> list[str]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return kids


def protect_regions(seen: list[Stub]) -> int:
    """Make the stubs' shared-memory regions private (0600): the python backend creates them 0644
    whatever the umask (Boost sets the mode), and they carry every intent and answer. A process
    that opened a region before this ran keeps its mapping: full isolation needs a private
    /dev/shm (a container's own). Returns how many regions were changed."""
    changed = 0
    for st in seen:
        if not st.alive or not st.region:
            continue
        path = SHM_DIR / st.region
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                changed += 1
        except OSError:  # gone meanwhile
            continue
    return changed


def live_instances(pid: int) -> dict[str, set[str]]:
    """model name -> names of its instances whose stub process is alive."""
    out: dict[str, set[str]] = {}
    for stub in stubs(pid):
        if stub.alive:
            out.setdefault(stub.model, set()).add(stub.instance)
    return out


def clean_up(known: dict[int, str], *, kill: bool) -> int:
    """Remove the shared memory of stubs in ``known`` (pid -> region) that are dead; with ``kill``,
    SIGKILL those still running first (their tritonserver is gone: they would linger for good,
    holding ~140 MB each). A pid is killed only while its command line still names its region.
    Returns how many were cleaned up; ``known`` keeps the ones left running."""
    done = 0
    for pid, region in list(known.items()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            running = stat[stat.rindex(")") + 2] not in "ZX" and region.encode() in Path(
                f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            running = False
        if running and kill:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            running = False
        if running:
            continue
        try:
            (SHM_DIR / region).unlink(missing_ok=True)
        except OSError:
            pass
        del known[pid]
        done += 1
    return done


class Supervisor(threading.Thread):
    """Watches one server (:class:`Supervised`); started by :class:`vedit.serving.server.TritonServer`
    when ``supervise=True``."""

    def __init__(self, server: Supervised, policy: SupervisePolicy | None = None) -> None:
        super().__init__(name="vedit-triton-supervisor", daemon=True)
        self.server = server
        self.policy = policy or SupervisePolicy()
        self.events: list[Event] = []
        self.gave_up = False
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._models = self._read_models()
        self._last_probe = time.monotonic()
        self._probe_count = 0
        self._last_hard_probe = 0.0
        self._started_at = time.monotonic()
        self._delay = self.policy.backoff
        self._regions: dict[int, str] = {}
        """pid -> shared-memory region of every stub seen running (cleaned up once it is dead)."""
        self.remember_instances()  # now, not when the thread first runs: a stub may die before that

    # -- public ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(60)

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    def remember_instances(self) -> None:
        """Record the instances alive now as the ones each model should have."""
        pid = self.server.pid
        if pid is None:
            return
        seen = stubs(pid)
        protect_regions(seen)
        self._regions.update({st.pid: st.region for st in seen if st.alive and st.region})
        for model in self._models.values():
            model.instances = {st.instance for st in seen if st.alive and st.model == model.name}

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> None:
        while not self._halt.wait(self.policy.check_interval):
            try:
                self._check()
            except Exception:  # the supervisor must outlive any surprise
                log.exception("supervisor check failed")
            if self.gave_up:
                return

    def _check(self) -> None:
        if not self.server.triton_alive:
            self._restart()
            return
        seen = stubs(self.server.pid)
        if any(st.pid not in self._regions for st in seen if st.alive and st.region):
            protect_regions(seen)  # a new stub (reload)
        self._regions.update({st.pid: st.region for st in seen if st.alive and st.region})
        if len(self._regions) > len(seen):  # some stub we knew is no longer a live child
            self._clean_up(kill=False)
        live: dict[str, set[str]] = {}
        for st in seen:
            if st.alive:
                live.setdefault(st.model, set()).add(st.instance)
        for model in self._models.values():
            lost = sorted(model.instances - live.get(model.name, set()))
            if lost:
                self._record("stub-lost", f"{model.name}: stub of {', '.join(lost)} is gone")
                self._reload(model)
        if not self.policy.probe_interval:
            return
        due = time.monotonic() - self._last_probe >= self.policy.probe_interval
        # at most one hard probe per fifth of the interval: bad intents count as failures too, and
        # a stream of them must not turn the probe into load
        may_dig = time.monotonic() - self._last_hard_probe >= max(1.0, self.policy.probe_interval / 5)
        for model in self._models.values():
            failing = self._failures_rose(model) and may_dig
            if failing:
                self._last_hard_probe = time.monotonic()
            if not (due or failing):
                continue
            # failed requests since the last check (bad intents count too): probe harder, because
            # a hung instance takes few requests and a probe request rarely lands on it
            problem = self._probe(model, per_instance=8 if failing else 2)
            if problem and not self._halt.is_set() and self.server.triton_alive:
                self._record("probe-failed", f"{model.name}: {problem}")
                self._reload(model)
        if due:
            self._last_probe = time.monotonic()

    def _failures_rose(self, model: _Model) -> bool:
        """Whether Triton counted failed inferences for ``model`` since the last look."""
        try:
            stats = _get_json(f"{self.server.triton_http_url}/v2/models/{model.name}/stats", self.server.admin_headers,
                              timeout=5)
            failed = int(stats["model_stats"][0]["inference_stats"]["fail"]["count"])
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
            return False
        rose = model.failures is not None and failed > model.failures
        model.failures = failed
        return rose

    # -- restart -----------------------------------------------------------------------------
    def _restart(self) -> None:
        code = self.server.triton_returncode
        noticed = time.monotonic()
        self._record("died", f"tritonserver exited with {_describe_exit(code)}", level=logging.WARNING)
        self.server.set_ready(False)
        self._clean_up(kill=True)  # its stubs outlive it otherwise
        if time.monotonic() - self._started_at >= self.policy.stable_after:
            self._delay = self.policy.backoff
        failures = 0
        while not self._halt.is_set():
            log.warning("restarting tritonserver in %.1f s", self._delay)
            if self._halt.wait(self._delay):
                return
            self._delay = min(self._delay * 2, self.policy.max_backoff)
            try:
                self.server.spawn()
                self.server.wait_triton_ready(self.policy.ready_timeout, stop=self._halt)
            except Exception as exc:  # noqa: BLE001 - any failure to start counts the same
                if self._halt.is_set():
                    return
                failures += 1
                self._record("start-failed", f"attempt {failures}: {str(exc).splitlines()[0]}",
                             level=logging.ERROR)
                self.server.kill_triton()
                if failures >= self.policy.max_failed_starts:
                    self._record("gave-up", f"{failures} starts in a row failed; see {self.server.log_path}",
                                 level=logging.ERROR)
                    self.gave_up = True
                    return
                continue
            self._started_at = time.monotonic()
            self.remember_instances()
            self.server.set_ready(True)
            self._record("restarted", f"pid {self.server.pid}", seconds=time.monotonic() - noticed,
                         level=logging.WARNING)
            return

    # -- reload ------------------------------------------------------------------------------
    def _reload(self, model: _Model) -> None:
        noticed = time.monotonic()
        self.server.set_ready(False)
        model.reloads += 1
        base, admin = self.server.triton_http_url, self.server.admin_headers
        try:
            try:
                cfg = _get_json(f"{base}/v2/models/{model.name}/config", admin, timeout=10)
                cfg.setdefault("parameters", {})[RELOAD_PARAM] = {"string_value": str(model.reloads)}
                _post(f"{base}/v2/repository/models/{model.name}/load",
                      {"parameters": {"config": json.dumps(cfg)}}, admin, timeout=self.policy.ready_timeout)
                how = "new instances from a changed config"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("reload of %s with a changed config failed (%s); unloading and loading", model.name,
                            exc)
                _post(f"{base}/v2/repository/models/{model.name}/unload", {}, admin, timeout=60)
                self._wait_unloaded(model.name)
                _post(f"{base}/v2/repository/models/{model.name}/load", {}, admin,
                      timeout=self.policy.ready_timeout)
                how = "unload + load"
            self._wait_instances(model)
        except Exception as exc:  # noqa: BLE001
            self._record("reload-failed", f"{model.name}: {exc}", level=logging.ERROR)
            return  # stays not-ready; the next check sees the lost stub again and retries
        self.server.set_ready(True)
        self._last_probe = time.monotonic()
        self._clean_up(kill=False)
        self._record("reloaded", f"{model.name} ({how})", seconds=time.monotonic() - noticed,
                     level=logging.WARNING)

    def _wait_instances(self, model: _Model, timeout: float = 60.0) -> None:
        """After a reload: every instance the model had is alive again (the old stubs may linger)."""
        deadline = time.monotonic() + timeout
        while True:
            live = live_instances(self.server.pid).get(model.name, set())
            if model.instances <= live:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"instances {sorted(model.instances - live)} did not come back")
            time.sleep(0.1)

    def _wait_unloaded(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            index = _post(f"{self.server.triton_http_url}/v2/repository/index", {}, self.server.admin_headers,
                          timeout=10)
            state = next((m.get("state") for m in index if m.get("name") == name), None)
            if state != "UNLOADING":
                return
            time.sleep(0.1)

    # -- probe -------------------------------------------------------------------------------
    def _probe(self, model: _Model, per_instance: int = 2) -> str | None:
        """Fresh intents, one request after another, ``per_instance`` per instance; the first error
        text, or None.

        One after another, not at once: requests sent together are batched into one execution on
        one instance, and a hung instance would be missed round after round. Alone, consecutive
        requests go to the instances in turn (a request to a hung stub fails after Triton's stub
        health check, about a second)."""
        if model.input_name is None:
            return None
        url = f"{self.server.triton_http_url}/v2/models/{model.name}/infer"
        for _ in range(per_instance * max(1, len(model.instances))):
            if self._halt.is_set():
                return None
            self._probe_count += 1
            intent = f"vedit probe {self._probe_count} {time.time():.3f}"
            body = {"inputs": [{"name": model.input_name, "shape": [1, 1], "datatype": "BYTES", "data": [intent]}]}
            try:
                _post(url, body, self.server.admin_headers, timeout=self.policy.probe_timeout)
            except urllib.error.HTTPError as exc:
                return _error_text(exc)
            except (urllib.error.URLError, OSError) as exc:
                return f"no answer: {exc}"
        return None

    # -- helpers -----------------------------------------------------------------------------
    def _clean_up(self, *, kill: bool) -> None:
        n = clean_up(self._regions, kill=kill)
        if n:
            log.info("cleaned up %d dead stub(s) and their shared memory", n)

    def final_clean_up(self) -> None:
        """After tritonserver stopped: stubs it left behind (it was killed) and their regions."""
        self._clean_up(kill=True)

    def _read_models(self) -> dict[str, _Model]:
        models = {}
        for cfg_path in sorted(self.server.repository.glob("*/config.pbtxt")):
            cfg = parse_config(cfg_path.read_text(encoding="utf-8"), source=str(cfg_path))
            name = cfg.name or cfg_path.parent.name
            inputs = [i.name for i in cfg.input]
            models[name] = _Model(name, INPUT_NAME if INPUT_NAME in inputs else None)
        return models

    def _record(self, kind: str, detail: str, *, seconds: float | None = None, level: int = logging.INFO) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), kind, detail, seconds))
        took = f" (back in {seconds:.1f} s)" if seconds is not None else ""
        log.log(level, "%s: %s%s", kind, detail, took)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        import signal

        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _get_json(url: str, headers: dict[str, str], timeout: float):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _post(url: str, body: dict, headers: dict[str, str], timeout: float):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = r.read()
    return json.loads(data) if data else None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("error", str(exc))
    except (ValueError, AttributeError, OSError):
        return str(exc)


__all__ = ["Event", "Stub", "SupervisePolicy", "Supervisor", "clean_up", "live_instances", "protect_regions", "stubs"]
