"""Kubernetes and KServe manifests for a built Triton repository, derived and checked offline.

- :mod:`.manifests`: every object derived from the repository's ``config.pbtxt`` and profile;
- :mod:`.validate`: Kubernetes' and KServe's own schemas, before anything is written;
- :mod:`.cli`: ``vedit triton deploy``.
"""
