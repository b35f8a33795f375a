"""Clients for vedit predictions: a Triton server (HTTP or gRPC) or the in-process runtime.

Every client has the same methods, sync or asyncio::

    with connect("grpc://localhost:8001") as client:     # or "http://...", or an export dir
        predictions = client.predict(["golden hour"])    # list[vedit.decoding.Prediction]

    async with aconnect("http://localhost:8000") as client:
        predictions = await client.predict(["golden hour"])

``connect`` picks :class:`TritonClient` for a URL and :class:`LocalClient` for an export
directory; both return the runtime's own :class:`~vedit.decoding.Prediction`, so ``to_json()`` is
identical whichever served the answer. Failures are :class:`vedit.errors.ClientError`:
:class:`~vedit.errors.ServerUnavailableError` (nothing answers, after bounded retries, or no answer
in time) and :class:`~vedit.errors.ServerResponseError` (the server refused the request).
"""

from __future__ import annotations

from pathlib import Path

from vedit.client.aio import AsyncTritonClient
from vedit.client.base import DEFAULT_MODEL, TLS, is_url
from vedit.client.local import AsyncLocalClient, LocalClient
from vedit.client.sync import TritonClient

_REMOTE = ("model", "timeout", "retries", "backoff", "concurrency", "tls", "registry")
_LOCAL = ("providers", "threads", "jump_forward")


def _split(target: str | Path, options: dict) -> tuple[bool, dict]:
    remote = isinstance(target, str) and is_url(target)
    allowed, other = (_REMOTE, _LOCAL) if remote else (_LOCAL, _REMOTE)
    wrong = sorted(k for k in options if k not in allowed)
    if wrong:
        where = "a server URL" if remote else "an export directory"
        raise TypeError(f"option(s) {', '.join(wrong)} do not apply to {where}")
    return remote, options


def connect(target: str | Path, **options) -> TritonClient | LocalClient:
    """A blocking client for ``http[s]://``/``grpc[s]://`` URLs or an export directory."""
    remote, options = _split(target, options)
    return TritonClient(str(target), **options) if remote else LocalClient(target, **options)


def aconnect(target: str | Path, **options) -> AsyncTritonClient | AsyncLocalClient:
    """The asyncio twin of :func:`connect` (use ``async with`` or ``await client.close()``)."""
    remote, options = _split(target, options)
    return AsyncTritonClient(str(target), **options) if remote else AsyncLocalClient(target, **options)


__all__ = [
    "AsyncLocalClient",
    "AsyncTritonClient",
    "DEFAULT_MODEL",
    "LocalClient",
    "TLS",
    "TritonClient",
    "aconnect",
    "connect",
]
