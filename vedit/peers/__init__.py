"""Peer engines: what a user would run instead of vedit, measured side by side with it.

``peer_paths(family, student_dir=..., exports=..., scripts=..., threads=...)`` returns latency
paths (:data:`vedit.workload.cost.Call`, each with an ``info`` line) from every peer module of the
family: T5 -> :mod:`.optimum_ort`, :mod:`.ctranslate2_peer`; Llama -> ``ortgenai``, ``llamacpp``.
Each module exposes ``paths(*, student_dir, exports, scripts, threads) -> dict[str, Call]``.
A peer whose environment cannot be built (or whose module is absent) is skipped with a logged
warning; the reason is kept in the result's ``skipped`` mapping for the report's notes, so one
broken peer never costs the rest of the run. Peers with their own Python environment use
:func:`.env.peer_env` and :class:`.worker.Worker`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vedit.errors import VeditError

if TYPE_CHECKING:
    from vedit.workload.scripted import Script

log = logging.getLogger(__name__)

#: family -> peer modules (in vedit.peers), in report order
PEERS: dict[str, tuple[str, ...]] = {
    "t5": ("optimum_ort", "ctranslate2_peer"),
    "llama": ("ortgenai", "llamacpp"),
}


class PeerPaths(dict):
    """``{row name: Call}`` plus ``skipped``: ``{peer module: one-line reason}`` for the report's notes."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}

    def notes(self) -> list[str]:
        return [f"peer {name} skipped: {why}" for name, why in self.skipped.items()]


def failure_reason(exc: BaseException) -> str:
    """One line for the report's notes: vedit's own errors and missing imports as they read, anything
    else (an engine's own exception) with its type in front."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return reason if isinstance(exc, (VeditError, ImportError)) else f"{type(exc).__name__}: {reason}"


def peer_paths(family: str, *, student_dir: Path, exports: dict[str, Path], scripts: dict[str, "Script"],
               threads: int, only: tuple[str, ...] | None = None) -> PeerPaths:
    """Every available peer of ``family`` (``only``: a subset of :data:`PEERS` module names)."""
    if family not in PEERS:
        raise VeditError(f"no peers for family {family!r}; known: {', '.join(PEERS)}")
    out = PeerPaths()
    for name in PEERS[family]:
        if only is not None and name not in only:
            continue
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            out.skipped[name] = "not available in this vedit"
            log.warning(f"peer {name}: not available in this vedit; skipped")
            continue
        try:
            out.update(module.paths(student_dir=student_dir, exports=exports, scripts=scripts, threads=threads))
        except Exception as exc:  # noqa: BLE001 -- a third-party engine failing to start costs only its rows
            reason = failure_reason(exc)
            out.skipped[name] = reason
            log.warning(f"peer {name} skipped: {reason}")
    return out


__all__ = ["PEERS", "PeerPaths", "failure_reason", "peer_paths"]
