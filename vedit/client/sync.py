"""Blocking Triton client: only I/O here, the logic is in :mod:`vedit.client.base`.

The intents of one ``predict`` are sent as concurrent single-intent requests (HTTP: the client's
greenlet pool; gRPC: callbacks), so Triton batches them on the server.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vedit.client import base
from vedit.errors import ClientError


class TritonClient:
    """``predict(intents)`` against a Triton server serving a vedit model. A context manager."""

    def __init__(
        self,
        url: str,
        *,
        model: str = base.DEFAULT_MODEL,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.1,
        concurrency: int = 8,
        tls: base.TLS | None = None,
        registry=None,
    ) -> None:
        self.endpoint = base.parse_url(url)
        self.model = model
        self.timeout = timeout
        self.policy = base.RetryPolicy(retries=retries, backoff=backoff)
        self.concurrency = max(1, concurrency)
        self._registry = registry
        self._info: base.ModelInfo | None = None
        self._client: Any = None
        self._module: Any = None
        self._tls = tls or base.TLS()
        self._open()

    # -- I/O -------------------------------------------------------------------------------
    def _open(self) -> None:
        ep, tls = self.endpoint, self._tls
        if ep.protocol == "http":
            import tritonclient.http as module

            ssl_options = {k: v for k, v in (("ca_certs", tls.ca_certs), ("certfile", tls.certfile),
                                             ("keyfile", tls.keyfile)) if v}
            self._client = module.InferenceServerClient(
                ep.address, concurrency=self.concurrency, connection_timeout=self.timeout,
                network_timeout=self.timeout, ssl=ep.ssl, ssl_options=ssl_options or None,
                insecure=tls.insecure,
            )
        else:
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(
                ep.address, ssl=ep.ssl, root_certificates=tls.ca_certs, private_key=tls.keyfile,
                certificate_chain=tls.certfile,
            )
        self._module = module

    def _require_open(self) -> None:
        if self._client is None:
            raise ClientError("the client is closed")

    def _retrying(self, call):
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:  # classified (and maybe re-raised) by the pure logic
                delay = base.backoff_or_raise(exc, attempt, policy=self.policy, endpoint=self.endpoint,
                                              timeout=self.timeout)
            time.sleep(delay)
            attempt += 1

    def _send(self, indices: list[int], intents: list[str]) -> list[tuple[int, Any, BaseException | None]]:
        info = self.model_info()
        if self.endpoint.protocol == "http":
            pending = [(i, self._client.async_infer(self.model, base.intent_input(self._module, info, intents[i])))
                       for i in indices]
            out = []
            for i, req in pending:
                try:
                    out.append((i, req.get_result(block=True, timeout=self.timeout), None))
                except Exception as exc:
                    out.append((i, None, exc))
            return out
        done = threading.Semaphore(0)
        slots = threading.BoundedSemaphore(self.concurrency)
        results: dict[int, tuple[int, Any, BaseException | None]] = {}

        def callback(i: int, result: Any, error: BaseException | None) -> None:
            results[i] = (i, result, error)
            slots.release()
            done.release()

        for i in indices:
            slots.acquire()
            try:
                self._client.async_infer(
                    self.model, base.intent_input(self._module, info, intents[i]),
                    callback=lambda result, error, i=i: callback(i, result, error),
                    client_timeout=self.timeout,
                )
            except Exception as exc:
                callback(i, None, exc)
        for _ in indices:
            done.acquire()
        return [results[i] for i in indices]

    # -- API -------------------------------------------------------------------------------
    def model_info(self) -> base.ModelInfo:
        """The served model's inputs, tools and registry (fetched once, with retries)."""
        self._require_open()
        if self._info is None:
            if self.endpoint.protocol == "http":
                answer = self._retrying(lambda: self._client.get_model_config(self.model))
            else:
                answer = self._retrying(lambda: self._client.get_model_config(
                    self.model, as_json=True, client_timeout=self.timeout))
            self._info = base.model_info(self.model, base.config_json(self.endpoint.protocol, answer),
                                         registry=self._registry)
        return self._info

    def predict(self, intents: list[str]) -> list:
        """One :class:`~vedit.decoding.Prediction` per intent, in order."""
        self._require_open()
        rnd = base.PredictRound(self.model_info(), intents, policy=self.policy, endpoint=self.endpoint,
                                timeout=self.timeout)
        while todo := rnd.pending():
            time.sleep(rnd.record(self._send(todo, rnd.intents)))
        return rnd.predictions()

    def ready(self) -> bool:
        """Whether the server and the model are ready (no retries; False when nothing answers)."""
        if self._client is None:
            return False
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TritonClient({self.endpoint.url!r}, model={self.model!r})"


__all__ = ["TritonClient"]
