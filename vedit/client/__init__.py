"""Clients for vedit predictions: a Triton server (HTTP or gRPC) or the in-process runtime.

Every client has the same methods, sync or asyncio::

    with connect("grpc://localhost:8001") as client:     # or "http://...", or an export dir
        predictions = client.predict(["golden hour"])    # list[vedit.decoding.Prediction]

    with connect(["grpc://a:8001", "grpc://b:8001"]) as client:   # or "grpc://a:8001,grpc://b:8001"
        predictions = client.predict(intents)            # round-robin; a failing replica is skipped
        print(client.stats.as_dict())                    # sent / answered / retried / failovers / lost

    async with aconnect("http://localhost:8000") as client:
        predictions = await client.predict(["golden hour"])

``connect`` picks :class:`TritonClient` for a URL and :class:`LocalClient` for an export
directory; both return the runtime's own :class:`~vedit.decoding.Prediction`, so ``to_json()`` is
identical whichever served the answer. Predictions are idempotent, so transient failures (refused
or reset connections, UNAVAILABLE, 5xx, a model stub that died, timeouts) are retried with tenacity,
on another replica when there is one, within the deadline (:mod:`vedit.client.retry`). Failures
are :class:`vedit.errors.ClientError`: :class:`~vedit.errors.ServerUnavailableError` (no replica
answered before the retries ran out) and :class:`~vedit.errors.ServerResponseError` (the request
was refused: failed at once, never retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vedit.client.aio import AsyncTritonClient
from vedit.client.base import DEFAULT_MODEL, TLS, ClientStats, is_url, parse_urls
from vedit.client.local import AsyncLocalClient, LocalClient, LocalStats
from vedit.client.sync import TritonClient

_REMOTE = ("model", "timeout", "deadline", "retries", "backoff", "cooldown", "concurrency", "tls", "registry",
           "resolve", "token")
_LOCAL = ("providers", "threads", "jump_forward", "max_intent_bytes", "batch", "max_batch", "batch_window_ms",
          "cache_size", "workers", "draft")


Target = str | Path | Sequence[str]


def _split(target: Target, options: dict) -> tuple[bool, dict]:
    if isinstance(target, (list, tuple)):
        parse_urls(target)  # a list is replicas: a clear error for the one that is not a URL
    remote = is_url(target)
    allowed, other = (_REMOTE, _LOCAL) if remote else (_LOCAL, _REMOTE)
    wrong = sorted(k for k in options if k not in allowed)
    if wrong:
        where = "a server URL" if remote else "an export directory"
        raise TypeError(f"option(s) {', '.join(wrong)} do not apply to {where}")
    return remote, options


def connect(target: Target, **options) -> TritonClient | LocalClient:
    """A blocking client for ``http[s]://``/``grpc[s]://`` URLs (one, a list, or ``"URL,URL"``)
    or an export directory."""
    remote, options = _split(target, options)
    return TritonClient(target, **options) if remote else LocalClient(target, **options)


def aconnect(target: Target, **options) -> AsyncTritonClient | AsyncLocalClient:
    """The asyncio twin of :func:`connect` (use ``async with`` or ``await client.close()``)."""
    remote, options = _split(target, options)
    return AsyncTritonClient(target, **options) if remote else AsyncLocalClient(target, **options)


__all__ = [
    "AsyncLocalClient",
    "AsyncTritonClient",
    "ClientStats",
    "DEFAULT_MODEL",
    "LocalClient",
    "LocalStats",
    "TLS",
    "TritonClient",
    "aconnect",
    "connect",
]
