"""asyncio Triton client: the same methods as :class:`vedit.client.TritonClient`, awaited.

Only I/O lives here (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``); request building,
decoding, retries and errors are :mod:`vedit.client.base`.
"""

from __future__ import annotations

import asyncio
import ssl as ssllib
from typing import Any

from vedit.client import base
from vedit.errors import ClientError


class AsyncTritonClient:
    """``await predict(intents)`` against a Triton server serving a vedit model."""

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
        self._tls = tls or base.TLS()
        self._client: Any = None
        self._module: Any = None
        self._closed = False

    # -- I/O -------------------------------------------------------------------------------
    def _connection(self) -> Any:
        """Created lazily: the aio clients bind to the running event loop."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._client is None:
            ep, tls = self.endpoint, self._tls
            if ep.protocol == "http":
                import tritonclient.http as module
                import tritonclient.http.aio as aio

                context = None
                if ep.ssl:
                    context = ssllib.create_default_context(cafile=tls.ca_certs)
                    if tls.certfile:
                        context.load_cert_chain(tls.certfile, tls.keyfile)
                    if tls.insecure:
                        context.check_hostname = False
                        context.verify_mode = ssllib.CERT_NONE
                self._client = aio.InferenceServerClient(
                    ep.address, conn_limit=self.concurrency, conn_timeout=self.timeout, ssl=ep.ssl,
                    ssl_context=context,
                )
            else:
                import tritonclient.grpc as module
                import tritonclient.grpc.aio as aio

                self._client = aio.InferenceServerClient(
                    ep.address, ssl=ep.ssl, root_certificates=tls.ca_certs, private_key=tls.keyfile,
                    certificate_chain=tls.certfile,
                )
            self._module = module
        return self._client

    async def _retrying(self, call):
        attempt = 0
        while True:
            try:
                return await asyncio.wait_for(call(), self.timeout)
            except Exception as exc:
                delay = base.backoff_or_raise(exc, attempt, policy=self.policy, endpoint=self.endpoint,
                                              timeout=self.timeout)
            await asyncio.sleep(delay)
            attempt += 1

    async def _send(self, indices: list[int], intents: list[str]) -> list[tuple[int, Any, BaseException | None]]:
        info = await self.model_info()
        client = self._connection()
        slots = asyncio.Semaphore(self.concurrency)

        async def one(i: int) -> tuple[int, Any, BaseException | None]:
            inputs = base.intent_input(self._module, info, intents[i])
            async with slots:
                try:
                    if self.endpoint.protocol == "http":
                        call = client.infer(self.model, inputs)
                    else:
                        call = client.infer(self.model, inputs, client_timeout=self.timeout)
                    return i, await asyncio.wait_for(call, self.timeout), None
                except Exception as exc:
                    return i, None, exc

        return list(await asyncio.gather(*(one(i) for i in indices)))

    # -- API -------------------------------------------------------------------------------
    async def model_info(self) -> base.ModelInfo:
        if self._info is None:
            client = self._connection()
            if self.endpoint.protocol == "http":
                answer = await self._retrying(lambda: client.get_model_config(self.model))
            else:
                answer = await self._retrying(lambda: client.get_model_config(
                    self.model, as_json=True, client_timeout=self.timeout))
            self._info = base.model_info(self.model, base.config_json(self.endpoint.protocol, answer),
                                         registry=self._registry)
        return self._info

    async def predict(self, intents: list[str]) -> list:
        """One :class:`~vedit.decoding.Prediction` per intent, in order."""
        self._connection()  # refuses a closed client
        rnd = base.PredictRound(await self.model_info(), intents, policy=self.policy,
                                endpoint=self.endpoint, timeout=self.timeout)
        while todo := rnd.pending():
            await asyncio.sleep(rnd.record(await self._send(todo, rnd.intents)))
        return rnd.predictions()

    async def ready(self) -> bool:
        if self._closed:
            return False
        try:
            client = self._connection()
            return bool(await client.is_server_ready() and await client.is_model_ready(self.model))
        except Exception:
            return False

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> "AsyncTritonClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncTritonClient({self.endpoint.url!r}, model={self.model!r})"


__all__ = ["AsyncTritonClient"]
