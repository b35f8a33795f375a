"""A Python environment per peer engine, built once and cached under ``<VEDIT_HOME>/peers``.

Why separate environments: a peer's pins can clash with vedit's (onnxruntime-genai's model builder
wants transformers 5, the main venv holds transformers <4.58), and a peer must never change the
main venv. Each environment is a plain ``venv`` named ``<name>-<hash of its requirements>``, so a
changed requirement list builds a new one beside the old.

Why in place with a marker rather than a temp dir renamed: pip writes the venv's absolute path into
every console script's shebang (``ct2-transformers-converter`` among them), so a venv built at a
temp path and renamed has broken scripts. The venv is built at its final path under an exclusive
file lock, and :data:`MARKER` is written last: a directory without it is a half-built leftover
(crash, full disk, killed run) and is removed and built again. Readers trust the marker only.

torch is special: any torch other than the local CPU wheel drags in gigabytes of CUDA packages.
Every install here runs with a constraints file pinning :data:`TORCH_PIN`, so a peer that needs
torch (directly or through a dependency) gets that wheel and nothing else.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from vedit import paths
from vedit.atomicio import sha256_file
from vedit.errors import PeerError

log = logging.getLogger(__name__)

#: the only torch a peer environment may hold (the CPU wheel on this machine's disk)
TORCH_PIN = "torch==2.13.0"
#: written last into a finished environment; its content records what was installed
MARKER = ".vedit-peer-env.json"
#: bump to rebuild every cached environment (layout or build recipe changed)
RECIPE = 1


def peers_dir() -> Path:
    """Where peer environments and converted peer models live."""
    return paths.home() / "peers"


def models_dir() -> Path:
    """Where peers keep their own conversions of a student (optimum's export, CTranslate2's model)."""
    return peers_dir() / "models"


def student_key(student_dir: Path) -> str:
    """Content key of a student (config and weights): a rebuilt student gets new conversions.

    Hashed once per process for files of the same size and modification time (every peer of a run
    asks for it, and a 1.1B student's weights are gigabytes)."""
    d = Path(student_dir)
    files = [d / "config.json", *sorted(d.glob("*.safetensors"))]
    return _content_key(tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _content_key(files: tuple[tuple[str, int, int], ...]) -> str:
    config, *weights = (Path(f[0]) for f in files)
    h = hashlib.sha256(config.read_bytes())
    for w in weights:
        h.update(sha256_file(w).encode())
    return h.hexdigest()[:12]


def last_line(output: str) -> str:
    """A failed command's last line of output (its error, as a rule) for a one-line message."""
    return (output.strip().splitlines() or ["(no output)"])[-1]


def run_or_raise(cmd: Sequence[object], failure: str, *, env: Mapping[str, str] | None = None) -> None:
    """Run ``cmd`` with its output captured; if it fails, :class:`PeerError` ``"<failure>: <last line>"``."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise PeerError(f"{failure}: {last_line(done.stderr)}")


def child_env(*, offline: bool = True) -> dict[str, str]:
    """This process's environment for a peer's own interpreter: without the variables that would point
    it at vedit's venv, and (``offline``) with the Hugging Face libraries kept off the network."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def env_key(name: str, requirements: Sequence[str]) -> str:
    """``<name>-<12 hex>``: the hash covers the requirements, the Python version and the recipe."""
    if not name or "/" in name or name.startswith("."):
        raise PeerError(f"peer env name {name!r} must be a plain, non-empty file name")
    spec = {"requirements": sorted(requirements), "python": list(sys.version_info[:2]), "recipe": RECIPE,
            "constraints": [TORCH_PIN]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{name}-{digest}"


def venv_python(env_dir: Path) -> Path:
    """The interpreter of a peer environment (run scripts with it; never activate into this process)."""
    return Path(env_dir) / "bin" / "python"


def is_ready(env_dir: Path) -> bool:
    """Whether ``env_dir`` is a finished peer environment (marker present, interpreter there)."""
    return (Path(env_dir) / MARKER).is_file() and venv_python(env_dir).exists()


def env_path(name: str, requirements: Sequence[str]) -> Path:
    """Where :func:`peer_env` keeps (or would build) this environment; builds nothing."""
    return peers_dir() / env_key(name, requirements)


def peer_env(name: str, requirements: Sequence[str], *, env: Mapping[str, str] | None = None,
             timeout: float = 3600.0) -> Path:
    """The venv directory of peer ``name`` with ``requirements`` installed, built on first use.

    ``env``: extra environment variables for pip (e.g. ``CMAKE_ARGS`` for a source build).
    ``timeout``: seconds the whole pip install may take. A failed install raises :class:`PeerError`
    with pip's own error line and the path of the full log; nothing half-built is left for later runs.
    """
    reqs = [str(r).strip() for r in requirements if str(r).strip()]
    if not reqs:
        raise PeerError(f"peer env {name!r}: no requirements given")
    target = env_path(name, reqs)
    if is_ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same env: wait for it
        if is_ready(target):
            return target
        if target.exists():
            log.info(f"peer env {name}: removing a half-built environment at {target}")
            shutil.rmtree(target)
        try:
            _build(name, target, reqs, env or {}, timeout)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def _build(name: str, target: Path, reqs: list[str], extra_env: Mapping[str, str], timeout: float) -> None:
    began = time.monotonic()
    log.info(f"peer env {name}: creating {target}")
    base = getattr(sys, "_base_executable", sys.executable)
    run_or_raise([base, "-m", "venv", target], f"peer env {name}: python -m venv failed")
    constraints = target / "vedit-constraints.txt"
    constraints.write_text(TORCH_PIN + "\n", encoding="utf-8")
    log_path = target.parent / f"{target.name}.pip.log"
    cmd = [str(venv_python(target)), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off", "-c", str(constraints), *reqs]
    log.info(f"peer env {name}: pip install {' '.join(reqs)} (log: {log_path})")
    _pip(name, cmd, log_path, extra_env, timeout)
    marker = {"name": name, "requirements": reqs, "python": sys.version.split()[0],
              "seconds": round(time.monotonic() - began, 1), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = target / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target / MARKER)
    log.info(f"peer env {name}: ready in {marker['seconds']:.0f} s")


def _pip(name: str, cmd: list[str], log_path: Path, extra_env: Mapping[str, str], timeout: float) -> None:
    """Run pip, logging its progress lines as they come and keeping the whole output in ``log_path``."""
    env = child_env(offline=False)
    env.update(extra_env)
    tail: deque[str] = deque(maxlen=40)
    began = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1)
        assert proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill)  # a silent, hung pip is stopped too
        timer.start()
        try:
            for line in proc.stdout:
                out.write(line)
                line = line.rstrip()
                tail.append(line)
                if line.lstrip().startswith(("Collecting", "Building", "Installing", "Successfully", "ERROR")):
                    log.info(f"peer env {name}: {line.strip()}")
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc < 0 and time.monotonic() - began >= timeout:
        raise PeerError(f"peer env {name}: pip install took over {timeout:.0f} s and was stopped; log: {log_path}")
    if rc != 0:
        errors = [t.strip() for t in tail if t.strip().startswith("ERROR")]
        reason = errors[0] if errors else next((t.strip() for t in reversed(tail) if t.strip()), "no output")
        raise PeerError(f"peer env {name}: pip install failed (exit {rc}): {reason}; full log: {log_path}")


__all__ = ["MARKER", "TORCH_PIN", "child_env", "env_key", "env_path", "is_ready", "last_line", "models_dir", "peer_env", "peers_dir",
           "run_or_raise", "student_key", "venv_python"]
