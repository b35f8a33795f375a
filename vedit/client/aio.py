"""asyncio Triton client: the same methods as :class:`vedit.client.TritonClient`, awaited.

Only I/O lives here (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``); request building,
decoding, error sorting, replica choice and the retry policy are shared with the blocking client
(:mod:`vedit.client.base`, :mod:`vedit.client.replicas`, :mod:`vedit.client.retry`).
"""

from __future__ import annotations

import asyncio
import ssl as ssllib
from typing import Any

import tenacity

from vedit.client import base
from vedit.client.core import TritonClientBase
from vedit.client.retry import retrying_args
from vedit.errors import ClientError


class AsyncTritonClient(TritonClientBase):
    """``await predict(intents)`` against one Triton server or several replicas (the options are
    :class:`vedit.client.TritonClient`'s)."""

    # -- I/O -------------------------------------------------------------------------------
    def _open(self, ep: base.Endpoint) -> Any:
        tls = self._tls
        if ep.protocol == "http":
            import tritonclient.http.aio as aio

            context = None
            if ep.ssl:
                context = ssllib.create_default_context(cafile=tls.ca_certs)
                if tls.certfile:
                    context.load_cert_chain(tls.certfile, tls.keyfile)
                if tls.insecure:
                    context.check_hostname = False
                    context.verify_mode = ssllib.CERT_NONE
            return aio.InferenceServerClient(ep.address, conn_limit=self.concurrency, conn_timeout=self.timeout,
                                             ssl=ep.ssl, ssl_context=context)
        import tritonclient.grpc.aio as aio

        return aio.InferenceServerClient(ep.address, ssl=ep.ssl, root_certificates=tls.ca_certs,
                                         private_key=tls.keyfile, certificate_chain=tls.certfile,
                                         channel_args=base.grpc_channel_args())

    def _retrying(self, attempts: base.Attempts, give_up) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(**retrying_args(self.policy, attempts, give_up))

    async def _get_config(self, k: int) -> Any:
        client = self._connection(k)
        if self.endpoints[k].protocol == "http":
            call = client.get_model_config(self.model, headers=self._headers)
        else:
            call = client.get_model_config(self.model, headers=self._headers, as_json=True,
                                           client_timeout=self.timeout)
        return await asyncio.wait_for(call, self.timeout)

    async def _send(self, rnd: base.PredictRound) -> None:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(i: int) -> None:
            async with slots:
                k, copies = self.replicas.pick(), rnd.copies(i)  # after the wait: knows the latest failures
                try:
                    client = self._connection(k)
                    inputs = base.intent_input(self._module, rnd.info, rnd.intents[i], copies)
                    if self.endpoints[k].protocol == "http":
                        call = client.infer(self.model, inputs, headers=self._headers)
                    else:
                        call = client.infer(self.model, inputs, headers=self._headers, client_timeout=self.timeout)
                    result = await asyncio.wait_for(call, self.timeout)
                except Exception as exc:
                    rnd.observe(i, k, None, exc, copies)
                else:
                    rnd.observe(i, k, result, None, copies)

        await asyncio.gather(*(one(i) for i in rnd.pending()))

    # -- API -------------------------------------------------------------------------------
    async def model_info(self) -> base.ModelInfo:
        if self._closed:
            raise ClientError("the client is closed")
        if self._info is None:
            attempts = base.Attempts(self.replicas, timeout=self.timeout)

            async def once() -> Any:
                k = self.replicas.pick()
                try:
                    answer = await self._get_config(k)
                except Exception as exc:
                    attempts.raise_for(k, exc)
                self.replicas.succeeded(k)
                return base.config_json(self.endpoints[k].protocol, answer)

            config = await self._retrying(attempts, attempts.give_up)(once)
            self._info = base.model_info(self.model, config, registry=self._registry)
        return self._info

    async def predict(self, intents: list[str]) -> list:
        """One :class:`~vedit.decoding.Prediction` per intent, in order (retries as the sync client)."""
        if self._closed:
            raise ClientError("the client is closed")
        rnd = base.PredictRound(await self.model_info(), intents, replicas=self.replicas, stats=self.stats,
                                timeout=self.timeout)
        if not rnd.intents:
            return []

        async def attempt() -> list:
            await self._send(rnd)
            return rnd.end_attempt()

        return await self._retrying(rnd.attempts, rnd.give_up)(attempt)

    async def ready(self) -> bool:
        """Whether some replica has the server and the model ready (no retries)."""
        if self._closed:
            return False
        for k in range(len(self.endpoints)):
            try:
                client = self._connection(k)
                if await client.is_server_ready(headers=self._headers) and await client.is_model_ready(
                        self.model, headers=self._headers):
                    return True
            except Exception:
                continue
        return False

    async def close(self) -> None:
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def __aenter__(self) -> "AsyncTritonClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        urls = ",".join(ep.url for ep in self.endpoints)
        return f"AsyncTritonClient({urls!r}, model={self.model!r})"


__all__ = ["AsyncTritonClient"]
