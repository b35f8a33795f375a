"""The in-process predictor behind the client interface, so callers switch by giving a URL.

:class:`LocalClient` and :class:`AsyncLocalClient` have the methods of the Triton clients
(``predict``, ``ready``, ``close``, context managers) and return the same
:class:`~vedit.decoding.Prediction` objects, because they *are* the runtime's predictions. They
apply the same intent rule as a server (:mod:`vedit.intents`): a call with an empty or oversized
intent is refused whole, before any decoding, exactly as over ``--url``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from vedit.errors import ClientError
from vedit.intents import MAX_INTENT_BYTES, intent_problem


class LocalClient:
    """Runs the export's ONNX student in this process (:class:`vedit.decoding.Predictor`)."""

    def __init__(self, export_dir: str | Path, *, providers=None, threads: int | None = None,
                 jump_forward: bool = True, max_intent_bytes: int | None = MAX_INTENT_BYTES) -> None:
        from vedit.decoding import Predictor

        self.export_dir = Path(export_dir)
        self._predictor = Predictor.load(self.export_dir, providers=providers, threads=threads,
                                         jump_forward=jump_forward)
        self._lock = threading.Lock()  # one decoding at a time: the sessions are shared
        self.max_intent_bytes = max_intent_bytes

    @property
    def predictor(self):
        if self._predictor is None:
            raise ClientError("the client is closed")
        return self._predictor

    def predict(self, intents: list[str]) -> list:
        if isinstance(intents, str):
            raise ClientError("predict() takes a list of intents, not one string")
        for i, intent in enumerate(intents):
            problem = intent_problem(intent, self.max_intent_bytes)
            if problem is not None:
                raise ClientError(f"intent {i}: {problem}")
        with self._lock:
            return self.predictor.predict(list(intents))

    def ready(self) -> bool:
        return self._predictor is not None

    def close(self) -> None:
        self._predictor = None

    def __enter__(self) -> "LocalClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalClient({str(self.export_dir)!r})"


class AsyncLocalClient:
    """:class:`LocalClient` for asyncio code: decoding runs in a worker thread."""

    def __init__(self, export_dir: str | Path, **options) -> None:
        self._sync = LocalClient(export_dir, **options)

    async def predict(self, intents: list[str]) -> list:
        return await asyncio.to_thread(self._sync.predict, list(intents))

    async def ready(self) -> bool:
        return self._sync.ready()

    async def close(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> "AsyncLocalClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncLocalClient({str(self._sync.export_dir)!r})"


__all__ = ["AsyncLocalClient", "LocalClient"]
