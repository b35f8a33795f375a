"""What the blocking and the asyncio Triton clients share: their options and state.

Like httpx's ``BaseClient``: :class:`TritonClientBase` holds the endpoints, replicas, retry policy,
counters and the tritonclient module for building requests; :class:`~vedit.client.TritonClient`
and :class:`~vedit.client.AsyncTritonClient` add only their I/O.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from vedit.client import base
from vedit.client.replicas import Replicas, resolve_endpoints
from vedit.client.retry import RetryPolicy
from vedit.errors import ClientError


class TritonClientBase:
    """Options: see :class:`vedit.client.TritonClient`."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        model: str = base.DEFAULT_MODEL,
        timeout: float = 30.0,
        deadline: float = 30.0,
        retries: int = 20,
        backoff: float = 0.1,
        cooldown: float = 5.0,
        concurrency: int = 8,
        tls: base.TLS | None = None,
        registry=None,
        resolve: bool = False,
        token: str | None = None,
    ) -> None:
        endpoints = base.parse_urls(url)
        self.endpoints = resolve_endpoints(endpoints) if resolve else endpoints
        self.replicas = Replicas([ep.url for ep in self.endpoints], cooldown=cooldown)
        self.model = model
        self.timeout = timeout
        self.policy = RetryPolicy(retries=retries, backoff=backoff, max_backoff=max(2.0, backoff), deadline=deadline)
        self.concurrency = max(1, concurrency)
        self.stats = base.ClientStats()
        self._registry = registry
        self._info: base.ModelInfo | None = None
        self._tls = tls or base.TLS()
        self._headers = base.auth_headers(token if token is not None else os.environ.get(base.TOKEN_ENV))
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()  # sync callers share the connections across threads
        self._closed = False
        if self.endpoints[0].protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        self._module = module

    @property
    def endpoint(self) -> base.Endpoint:
        """The first replica (the only one for a single URL)."""
        return self.endpoints[0]

    def _connection(self, k: int) -> Any:
        """Replica ``k``'s tritonclient, created on first use (the aio clients bind to the running
        event loop, so they cannot be made earlier). ``_open`` is each twin's own."""
        if self._closed:
            raise ClientError("the client is closed")
        with self._lock:
            client = self._clients.get(k)
            if client is None:
                client = self._clients[k] = self._open(self.endpoints[k])
            return client

    def _open(self, ep: base.Endpoint) -> Any:
        raise NotImplementedError


__all__ = ["TritonClientBase"]
