"""Run a Triton repository: ``tritonserver``, its nginx front and a supervisor.

- :class:`TritonServer` (:mod:`.server`): the ``tritonserver`` bundled in the nvidia-pytriton wheel
  on a repository (context manager: start, wait until ready, stop);
- :class:`NginxFront` (:mod:`.front`): the HTTP front that refuses oversized bodies before Triton
  reads them;
- :class:`Supervisor` (:mod:`.supervise`): restarts a dead server and reloads dead model instances,
  through the small :class:`~.supervise.Supervised` interface the server offers it.

Building the repository is :mod:`vedit.triton_repo`; cluster manifests are :mod:`vedit.deploy`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TritonServer": "vedit.serving.server",
    "free_port": "vedit.serving.server",
    "NginxFront": "vedit.serving.front",
    "SupervisePolicy": "vedit.serving.supervise",
    "Supervisor": "vedit.serving.supervise",
}


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'vedit.serving' has no attribute {name!r}") from None
    return getattr(import_module(module), name)


__all__ = sorted(_EXPORTS)
