"""Triton Inference Server: the model repository builder and a local ``tritonserver``.

- :func:`build_repository`: export directory + profile -> ``REPO/NAME/{config.pbtxt, 1/model.py,
  1/export/}``; ``config.pbtxt`` is built as Triton's ``ModelConfig`` protobuf and validated;
- :data:`PROFILES`: the serving targets (``l4``, ``a100``, ``cpu``) as data, with their reasoning;
- :class:`TritonServer`: runs the ``tritonserver`` bundled in the nvidia-pytriton wheel on a
  repository (context manager: start, wait until ready, stop).
"""

from vedit.triton_repo.builder import DEFAULT_NAME, build_repository, read_export
from vedit.triton_repo.profiles import PROFILES, Profile, get_profile
from vedit.triton_repo.server import TritonServer

__all__ = ["DEFAULT_NAME", "PROFILES", "Profile", "TritonServer", "build_repository", "get_profile", "read_export"]
