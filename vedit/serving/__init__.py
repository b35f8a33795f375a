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

from vedit.lazy import lazy_exports

_EXPORTS = {
    "TritonServer": "vedit.serving.server",
    "free_port": "vedit.serving.server",
    "NginxFront": "vedit.serving.front",
    "SupervisePolicy": "vedit.serving.supervise",
    "Supervisor": "vedit.serving.supervise",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
