"""The Triton model repository: build what ``tritonserver`` loads from an export.

- :func:`build_repository`: export directory + profile -> ``REPO/NAME/{config.pbtxt, 1/model.py,
  1/export/}``; ``config.pbtxt`` is built as Triton's ``ModelConfig`` protobuf and validated;
- :data:`PROFILES`: the serving targets (``l4``, ``a100``, ``cpu``) as data, with their reasoning;
- :mod:`.triton_model` and :mod:`.requests`: the model code the server runs.

Running a server is :mod:`vedit.serving`; cluster manifests are :mod:`vedit.deploy`.
Names are imported lazily: the served ``model.py`` imports :mod:`vedit.triton_repo.requests` inside
Triton's python stub, where neither tritonclient nor protobuf need to be installed.
"""

from __future__ import annotations

from vedit.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_NAME": "vedit.triton_repo.builder",
    "build_repository": "vedit.triton_repo.builder",
    "read_export": "vedit.triton_repo.builder",
    "PROFILES": "vedit.triton_repo.profiles",
    "Profile": "vedit.triton_repo.profiles",
    "get_profile": "vedit.triton_repo.profiles",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
