"""The in-process predictor behind the client interface, so callers switch by giving a URL.

:class:`LocalClient` and :class:`AsyncLocalClient` have the methods of the Triton clients
(``predict``, ``ready``, ``close``, context managers) and return the same
:class:`~vedit.decoding.Prediction` objects, because they *are* the runtime's predictions. They
apply the same intent rule as a server (:mod:`vedit.intents`): a call with an empty or oversized
intent is refused whole, before any decoding, exactly as over ``--url``.

Like Triton's dynamic batcher and response cache, but in the caller's process:

- **Batching across callers.** A worker thread owns a predictor's onnxruntime sessions. Callers
  (threads, or asyncio tasks) queue their intents; each time a worker is free it takes everything
  queued (up to ``max_batch`` intents) and decodes it as one batch, so concurrent requests share
  decoder calls instead of waiting for each other. A lone request waits for nothing
  (``batch_window_ms`` can hold the worker a little to gather more). ``batch=False`` decodes one
  call at a time per worker.
- **Several workers** (``workers=N``, like Triton's model instances): N predictors, each with its
  own sessions and thread, take batches from the same queue. onnxruntime releases the GIL while it
  runs, so one worker's decoder call overlaps another's Python loop and grammar work: under load
  the cores stay busy. A lone request still runs on one worker alone.
- **Drafts** (``draft=True``, :meth:`vedit.decoding.Predictor.load`): each decoder call also
  verifies a draft of the rows' next free tokens, the same answers in fewer calls. The N workers
  share one :class:`~vedit.decoding.drafting.Drafter`, so each drafts from every answer any of
  them gave and the call-cost fit covers all their calls.
- **Answer cache.** Traffic is Zipf-shaped (popular looks repeat): an LRU of ``cache_size``
  intents answers a repeat without decoding (``cache_size=0`` turns it off). Answers are
  deterministic (greedy), so a cached answer is the answer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path

from vedit.errors import ClientError
from vedit.intents import MAX_INTENT_BYTES, intent_problem


@dataclass
class LocalStats:
    """Totals since the client opened (what the cache and the batcher saved)."""

    requests: int = 0  # predict() calls
    intents: int = 0  # intents asked for
    cache_hits: int = 0  # intents answered from the cache
    batches: int = 0  # decodes the worker ran
    decoded: int = 0  # intents decoded (cache misses, duplicates within a batch counted once)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Job:
    intents: list[str]
    future: Future


class _Batcher:
    """The worker threads (one per predictor): each takes what is queued, decodes it as one batch,
    hands each caller its rows."""

    def __init__(self, predictors: list, *, max_batch: int, window_s: float, stats: LocalStats):
        self.max_batch = max_batch
        self.window_s = window_s
        self.stats = stats
        self._stats_lock = threading.Lock()
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._run, args=(p,), name=f"vedit-local-worker-{k}", daemon=True)
                        for k, p in enumerate(predictors)]
        for thread in self.threads:
            thread.start()

    def submit(self, intents: list[str]) -> Future:
        future: Future = Future()
        self.queue.put(_Job(intents, future))
        return future

    def close(self) -> None:
        """One close mark per worker (each stops at the first it takes, after finishing what it had
        gathered); once all have stopped, whoever is still queued learns the client is closed."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(ClientError("the client is closed"))

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus what else is queued (or arrives within the window); True when closing."""
        jobs, n = [first], len(first.intents)
        deadline = time.monotonic() + self.window_s
        while n < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job.intents)
        return jobs, False

    def _run(self, predictor) -> None:
        closing = False
        while not closing:
            first = self.queue.get()
            if first is None:
                break
            jobs, closing = self._gather(first)
            unique = list(dict.fromkeys(i for job in jobs for i in job.intents))
            try:
                answers = dict(zip(unique, predictor.predict(unique)))
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            with self._stats_lock:
                self.stats.batches += 1
                self.stats.decoded += len(unique)
            for job in jobs:
                job.future.set_result([answers[i] for i in job.intents])


class LocalClient:
    """Runs the export's ONNX student in this process (:class:`vedit.decoding.Predictor`)."""

    def __init__(self, export_dir: str | Path, *, providers=None, threads: int | None = None,
                 jump_forward: bool = True, max_intent_bytes: int | None = MAX_INTENT_BYTES,
                 batch: bool = True, max_batch: int | None = None, batch_window_ms: float = 0.0,
                 cache_size: int = 1024, workers: int = 1, draft: bool | None = None) -> None:
        from vedit.decoding import Predictor

        if int(workers) < 1:
            raise ClientError(f"workers must be at least 1, not {workers}")
        self.export_dir = Path(export_dir)
        predictors = [Predictor.load(self.export_dir, providers=providers, threads=threads,
                                     jump_forward=jump_forward, draft=draft) for _ in range(int(workers))]
        for p in predictors[1:]:  # one drafter for all workers (it is thread-safe)
            p.drafter = predictors[0].drafter
        self._predictor, self._workers = predictors[0], tuple(predictors)
        self.max_intent_bytes = max_intent_bytes
        self.stats = LocalStats()
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_lock = threading.Lock()
        limit = (max_batch or self._predictor.batch_size) if batch else 1
        self._batcher = _Batcher(predictors, max_batch=max(1, limit), window_s=max(0.0, batch_window_ms) / 1000,
                                 stats=self.stats)

    @property
    def predictor(self):
        if self._predictor is None:
            raise ClientError("the client is closed")
        return self._predictor

    def submit(self, intents: list[str]) -> Future:
        """A future of ``predict(intents)`` (what the asyncio twin awaits)."""
        if self._predictor is None:
            raise ClientError("the client is closed")
        if isinstance(intents, str):
            raise ClientError("predict() takes a list of intents, not one string")
        intents = list(intents)
        for i, intent in enumerate(intents):
            problem = intent_problem(intent, self.max_intent_bytes)
            if problem is not None:
                raise ClientError(f"intent {i}: {problem}")
        known = self._cached(intents)
        missing = [i for i in dict.fromkeys(intents) if i not in known]
        done: Future = Future()
        if not missing:
            done.set_result([known[i] for i in intents])
            return done

        def finish(decoded: Future) -> None:
            exc = decoded.exception()
            if exc is not None:
                done.set_exception(exc)
                return
            answers = dict(zip(missing, decoded.result()))
            self._remember(answers)
            done.set_result([known[i] if i in known else answers[i] for i in intents])

        self._batcher.submit(missing).add_done_callback(finish)
        return done

    def predict(self, intents: list[str]) -> list:
        return self.submit(intents).result()

    def _cached(self, intents: list[str]) -> dict[str, object]:
        with self._cache_lock:
            self.stats.requests += 1
            self.stats.intents += len(intents)
            if not self.cache_size:
                return {}
            hits = {i: self._cache[i] for i in intents if i in self._cache}
            for i in hits:
                self._cache.move_to_end(i)
            self.stats.cache_hits += sum(1 for i in intents if i in hits)
        return hits

    def _remember(self, answers: dict[str, object]) -> None:
        if not self.cache_size:
            return
        with self._cache_lock:
            self._cache.update(answers)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def ready(self) -> bool:
        return self._predictor is not None

    def close(self) -> None:
        if self._predictor is not None:
            self._batcher.close()
            self._predictor = None

    def __enter__(self) -> "LocalClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalClient({str(self.export_dir)!r})"


class AsyncLocalClient:
    """:class:`LocalClient` for asyncio code: requests join the same batches, no thread per call."""

    def __init__(self, export_dir: str | Path, **options) -> None:
        self._sync = LocalClient(export_dir, **options)

    @property
    def stats(self) -> LocalStats:
        return self._sync.stats

    async def predict(self, intents: list[str]) -> list:
        return await asyncio.wrap_future(self._sync.submit(intents))

    async def ready(self) -> bool:
        return self._sync.ready()

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> "AsyncLocalClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncLocalClient({str(self._sync.export_dir)!r})"


__all__ = ["AsyncLocalClient", "LocalClient", "LocalStats"]
