"""Blocking Triton client: only I/O here; the logic is in :mod:`vedit.client.base`, the replica
choice in :mod:`vedit.client.replicas`, the retry policy in :mod:`vedit.client.retry` (tenacity).

The intents of one ``predict`` are sent as concurrent single-intent requests (HTTP: the client's
greenlet pool; gRPC: callbacks), so Triton batches them on the server; each goes to the replica
:meth:`Replicas.pick` names at the moment it is sent.
"""

from __future__ import annotations

import threading
from typing import Any

import tenacity

from vedit.client import base
from vedit.client.core import TritonClientBase
from vedit.client.retry import retrying_args
from vedit.errors import ClientError

_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


class TritonClient(TritonClientBase):
    """``predict(intents)`` against one Triton server or several replicas serving a vedit model.

    ``url``: ``grpc://host:8001`` / ``http://host:8000`` (``grpcs``/``https``: TLS), a list of such
    URLs or ``"URL,URL"`` (round-robin, failover); ``resolve=True`` also spreads over every address
    a host name resolves to. ``timeout``: seconds one attempt may take; ``deadline``: seconds to
    keep retrying after the first failure; ``retries``: at most that many more attempts;
    ``backoff``: first wait when no replica is up (doubling, up to 2 s); ``cooldown``: seconds a
    failing replica is skipped. ``stats`` counts what the client did. A context manager.
    """

    # -- I/O -------------------------------------------------------------------------------
    def _open(self, ep: base.Endpoint) -> Any:
        tls = self._tls
        if ep.protocol == "http":
            ssl_options = {k: v for k, v in (("ca_certs", tls.ca_certs), ("certfile", tls.certfile),
                                             ("keyfile", tls.keyfile)) if v}
            return self._module.InferenceServerClient(
                ep.address, concurrency=self.concurrency, connection_timeout=self.timeout,
                network_timeout=self.timeout, ssl=ep.ssl, ssl_options=ssl_options or None,
                insecure=tls.insecure,
            )
        return self._module.InferenceServerClient(
            ep.address, ssl=ep.ssl, root_certificates=tls.ca_certs, private_key=tls.keyfile,
            certificate_chain=tls.certfile, channel_args=base.grpc_channel_args(),
        )

    def _retrying(self, attempts: base.Attempts, give_up) -> tenacity.Retrying:
        return tenacity.Retrying(**retrying_args(self.policy, attempts, give_up))

    def _get_config(self, k: int) -> Any:
        client = self._connection(k)
        if self.endpoints[k].protocol == "http":
            return client.get_model_config(self.model, headers=self._headers)
        return client.get_model_config(self.model, headers=self._headers, as_json=True, client_timeout=self.timeout)

    def _send_http(self, rnd: base.PredictRound) -> None:
        info, in_flight = rnd.info, []
        for i in rnd.pending():
            k, copies = self.replicas.pick(), rnd.copies(i)
            try:
                inputs = base.intent_input(self._module, info, rnd.intents[i], copies)
                in_flight.append((i, k, copies, self._connection(k).async_infer(self.model, inputs,
                                                                                  headers=self._headers)))
            except _FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - gevent's Timeout is a BaseException
                rnd.observe(i, k, None, exc, copies)
        for i, k, copies, request in in_flight:
            try:
                result = request.get_result(block=True, timeout=self.timeout)
            except _FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001
                rnd.observe(i, k, None, exc, copies)
            else:
                rnd.observe(i, k, result, None, copies)

    def _send_grpc(self, rnd: base.PredictRound) -> None:
        info, todo = rnd.info, rnd.pending()
        done = threading.Semaphore(0)
        slots = threading.BoundedSemaphore(self.concurrency)

        def callback(i: int, k: int, copies: int, result: Any, error: BaseException | None) -> None:
            try:
                rnd.observe(i, k, result, error, copies)
            finally:
                slots.release()
                done.release()

        for i in todo:
            slots.acquire()
            k, copies = self.replicas.pick(), rnd.copies(i)  # after the wait: knows the latest failures
            try:
                self._connection(k).async_infer(
                    self.model, base.intent_input(self._module, info, rnd.intents[i], copies), headers=self._headers,
                    callback=lambda result, error, i=i, k=k, c=copies: callback(i, k, c, result, error),
                    client_timeout=self.timeout,
                )
            except Exception as exc:
                callback(i, k, copies, None, exc)
        for _ in todo:
            done.acquire()

    # -- API -------------------------------------------------------------------------------
    def model_info(self) -> base.ModelInfo:
        """The served model's inputs, tools and registry (fetched once, from the first replica
        that answers; the replicas are expected to serve the same model)."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._info is None:
            attempts = base.Attempts(self.replicas, timeout=self.timeout)

            def once() -> Any:
                k = self.replicas.pick()
                try:
                    answer = self._get_config(k)
                except Exception as exc:
                    attempts.raise_for(k, exc)
                self.replicas.succeeded(k)
                return base.config_json(self.endpoints[k].protocol, answer)

            config = self._retrying(attempts, attempts.give_up)(once)
            self._info = base.model_info(self.model, config, registry=self._registry)
        return self._info

    def predict(self, intents: list[str]) -> list:
        """One :class:`~vedit.decoding.Prediction` per intent, in order; transient failures are
        retried (on another replica when there is one) within the deadline."""
        if self._closed:
            raise ClientError("the client is closed")
        rnd = base.PredictRound(self.model_info(), intents, replicas=self.replicas, stats=self.stats,
                                timeout=self.timeout)
        if not rnd.intents:
            return []
        send = self._send_http if self.endpoint.protocol == "http" else self._send_grpc

        def attempt() -> list:
            send(rnd)
            return rnd.end_attempt()

        return self._retrying(rnd.attempts, rnd.give_up)(attempt)

    def ready(self) -> bool:
        """Whether some replica has the server and the model ready (no retries)."""
        if self._closed:
            return False
        for k in range(len(self.endpoints)):
            try:
                client = self._connection(k)
                if client.is_server_ready(headers=self._headers) and client.is_model_ready(self.model,
                                                                                          headers=self._headers):
                    return True
            except Exception:
                continue
        return False

    def close(self) -> None:
        self._closed = True
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        urls = ",".join(ep.url for ep in self.endpoints)
        return f"TritonClient({urls!r}, model={self.model!r})"


__all__ = ["TritonClient"]
