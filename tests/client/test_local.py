"""The in-process client under concurrency: batches across callers, an answer cache, and every
caller gets its own intent's answer (compared with a plain Predictor decoding one at a time)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vedit.client import AsyncLocalClient, LocalClient
from vedit.decoding import Predictor
from vedit.errors import ClientError

INTENTS = [f"{look} {i}" for i, look in enumerate(["golden hour", "Morocco", "cold tone", "neon", "😈", "X ray"] * 8)]


@pytest.fixture(scope="module")
def expected(tiny_export):
    p = Predictor.load(tiny_export, threads=1)
    return {i: p.predict([i])[0].to_json() for i in INTENTS}


@pytest.mark.parametrize("workers", [1, 2])
def test_many_threads_each_get_their_own_answer(tiny_export, expected, workers):
    with LocalClient(tiny_export, threads=1, cache_size=0, workers=workers) as client:
        results: dict[str, dict] = {}
        barrier = threading.Barrier(16)

        def caller(k: int) -> None:
            barrier.wait()
            for intent in INTENTS[k::16]:
                results[intent] = client.predict([intent])[0].to_json()

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == expected  # nothing lost, nothing mixed up
        s = client.stats
        assert s.requests == s.intents == s.decoded == len(INTENTS) and s.cache_hits == 0
        assert s.batches < len(INTENTS)  # concurrent callers shared decodes


def test_asyncio_tasks_share_batches(tiny_export, expected):
    async def main():
        async with AsyncLocalClient(tiny_export, threads=1, cache_size=0) as client:
            answers = await asyncio.gather(*(client.predict([i]) for i in INTENTS))
            return [a[0].to_json() for a in answers], client.stats

    answers, stats = asyncio.run(main())
    assert answers == [expected[i] for i in INTENTS]
    assert stats.batches <= len(INTENTS) // 4  # 48 tasks queued at once: batches of up to 8


def test_cache_answers_repeats_without_decoding(tiny_export, expected):
    with LocalClient(tiny_export, threads=1, cache_size=4) as client:
        first = client.predict(INTENTS[:3] + INTENTS[:1])
        assert client.stats.decoded == 3  # the duplicate within the call decoded once
        again = client.predict(INTENTS[:3])
        assert [a.to_json() for a in again] == [expected[i] for i in INTENTS[:3]]
        assert [a.to_json() for a in first] == [expected[i] for i in INTENTS[:3] + INTENTS[:1]]
        assert client.stats.cache_hits == 3 and client.stats.decoded == 3
        client.predict(INTENTS[3:8])  # 5 new intents push the oldest out of a 4-entry cache
        client.predict(INTENTS[:1])
        assert client.stats.decoded == 9


def test_unbatched_path_and_closed_client(tiny_export, expected):
    client = LocalClient(tiny_export, threads=1, batch=False, cache_size=0)
    assert [a.to_json() for a in client.predict(INTENTS[:5])] == [expected[i] for i in INTENTS[:5]]
    client.close()
    with pytest.raises(ClientError, match="the client is closed"):
        client.predict(["golden hour"])


def test_several_workers_each_decode_batches_and_close_cleanly(tiny_export, expected):
    """Two workers take batches from one queue (both busy under load), answers stay each caller's,
    and close() stops both."""
    import time

    from vedit.client import local

    ran_on: list[str] = []

    class Recording(local._Batcher):  # noqa: SLF001 - which worker decoded is internal
        def _run(self, predictor) -> None:
            real = predictor.predict

            def predict(intents):
                ran_on.append(threading.current_thread().name)
                time.sleep(0.02)  # hold the batch long enough for the other worker to take the next
                return real(intents)

            predictor.predict = predict
            super()._run(predictor)

    original = local._Batcher  # noqa: SLF001
    local._Batcher = Recording  # noqa: SLF001
    try:
        client = LocalClient(tiny_export, threads=1, cache_size=0, workers=2, max_batch=2)
    finally:
        local._Batcher = original  # noqa: SLF001
    futures = [client.submit([intent]) for intent in INTENTS]
    answers = {intent: f.result()[0].to_json() for intent, f in zip(INTENTS, futures)}
    assert answers == expected
    assert client.stats.decoded == len(INTENTS)
    assert set(ran_on) == {"vedit-local-worker-0", "vedit-local-worker-1"}
    client.close()
    assert not any(t.is_alive() for t in client._batcher.threads)  # noqa: SLF001
    with pytest.raises(ClientError, match="closed"):
        client.predict(["golden hour"])
    with pytest.raises(ClientError, match="at least 1"):
        LocalClient(tiny_export, workers=0)


def _calls(predictions) -> int:
    return sum(p.stats.decoder_calls for p in predictions)


def test_drafts_give_the_same_answers_in_fewer_decoder_calls(tiny_export):
    """``connect(export, draft=True)``: every raw text equals the step-by-step reference's, and once
    the drafter has seen a round of answers the same round takes fewer decoder calls than
    jump-forward alone."""
    from vedit.client import connect

    intents = INTENTS[:12]
    step = Predictor.load(tiny_export, threads=1, jump_forward=False).predict(intents)
    with connect(tiny_export, threads=1, cache_size=0, draft=False) as plain, \
            connect(tiny_export, threads=1, cache_size=0, draft=True) as drafted:
        assert plain.predictor.drafter is None and drafted.predictor.drafter is not None
        rounds = {name: [c.predict(intents) for _ in range(2)] for name, c in (("plain", plain), ("drafted", drafted))}
        assert drafted.predictor.drafter.proposed > 0
    for runs in rounds.values():
        for got in runs:
            assert [g.raw for g in got] == [s.raw for s in step]
    assert _calls(rounds["drafted"][1]) < _calls(rounds["plain"][1])


def test_workers_share_one_drafter(tiny_export, expected):
    """``connect(export, workers=2, draft=True)`` (both forwarded to the in-process client): both
    predictors hold the same drafter (each learns from every answer, one cost fit for all calls),
    and answers under concurrent load are the reference's."""
    from vedit.client import connect

    with connect(tiny_export, threads=1, cache_size=0, workers=2, max_batch=2, draft=True) as client:
        first, second = client._workers  # noqa: SLF001 - the workers' predictors are internal
        assert first is not second and first.drafter is not None and second.drafter is first.drafter
        futures = [client.submit([intent]) for intent in INTENTS]
        assert {i: f.result()[0].to_json() for i, f in zip(INTENTS, futures)} == expected
        assert first.drafter.proposed > 0
    with LocalClient(tiny_export, threads=1, workers=2, draft=False) as client:
        assert all(p.drafter is None for p in client._workers)  # noqa: SLF001
    with LocalClient(tiny_export, threads=1, workers=2) as client:  # the default drafts where it can
        assert client._workers[0].drafter is not None  # noqa: SLF001
        assert client._workers[1].drafter is client._workers[0].drafter  # noqa: SLF001
