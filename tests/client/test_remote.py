"""vedit.client against the real tritonserver: same answers as the in-process runtime."""

from __future__ import annotations

import asyncio

import pytest

from vedit.client import AsyncTritonClient, LocalClient, TritonClient, aconnect, connect
from vedit.decoding import Prediction, Predictor
from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError
from vedit.registry import ToolCall
from vedit.serving.server import free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def reference(triton_served) -> list[Prediction]:
    """The in-process runtime's answers, straight from the Predictor (no client involved)."""
    return Predictor.load(triton_served.export_dir, threads=1).predict(triton_served.intents)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_the_in_process_runtime(triton_served, reference, protocol):
    with connect(getattr(triton_served, protocol)) as client:
        assert isinstance(client, TritonClient)
        got = client.predict(triton_served.intents)
    assert len(got) == len(reference)
    for g, r in zip(got, reference):
        assert isinstance(g, Prediction)
        assert g.to_json() == r.to_json()
        assert g.raw == r.raw
        assert g.intent == r.intent
        assert all(isinstance(c, ToolCall) for c in g.calls.values())
        assert list(g.calls) == list(r.calls)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_client_equals_sync_client(triton_served, reference, protocol):
    url = getattr(triton_served, protocol)
    with connect(url) as client:
        sync = [p.to_json() for p in client.predict(triton_served.intents)]

    async def main():
        async with aconnect(url) as client:
            assert isinstance(client, AsyncTritonClient)
            assert await client.ready()
            # two predicts in flight on one client
            a, b = await asyncio.gather(client.predict(triton_served.intents[:4]),
                                        client.predict(triton_served.intents[4:]))
            return [p.to_json() for p in a + b]

    assert asyncio.run(main()) == sync == [r.to_json() for r in reference]


def test_in_process_client_has_the_same_interface(triton_served, reference):
    with connect(triton_served.export_dir, threads=1) as local:
        assert isinstance(local, LocalClient) and local.ready()
        assert [p.to_json() for p in local.predict(triton_served.intents)] == [r.to_json() for r in reference]

    async def main():
        async with aconnect(triton_served.export_dir, threads=1) as client:
            return await client.predict(triton_served.intents[:2])

    assert [p.to_json() for p in asyncio.run(main())] == [r.to_json() for r in reference[:2]]
    with pytest.raises(TypeError, match="retries do not apply to an export directory"):
        connect(triton_served.export_dir, retries=3)
    with pytest.raises(TypeError, match="threads do not apply to a server URL"):
        connect(triton_served.grpc, threads=2)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_info_and_empty_predict(triton_served, protocol, registry):
    with connect(getattr(triton_served, protocol)) as client:
        info = client.model_info()
        assert info.tools == registry.tool_names and info.registry.functions == registry.functions
        assert info.registry.style.kind == "vedit"  # the export's prompt style travels with its tools
        assert client.ready()
        assert client.predict([]) == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_refused_intents_raise_clear_errors(triton_served, protocol):
    with connect(getattr(triton_served, protocol)) as client:
        with pytest.raises(ClientError, match="intent 1: empty intent"):
            client.predict(["golden hour", ""])
        with pytest.raises(ClientError, match="5000 bytes, over the limit of 1024 bytes per intent"):
            client.predict(["x" * 5000])
        assert client.predict(["golden hour"])[0].intent == "golden hour"


def test_unknown_model_is_a_server_error(triton_served):
    for url in (triton_served.http, triton_served.grpc):
        with pytest.raises(ServerResponseError, match="refused the request"):
            connect(url, model="no-such-model").predict(["golden hour"])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_nothing_listening_fails_after_bounded_retries(scheme):
    url = f"{scheme}://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailableError) as exc:
        TritonClient(url, retries=2, backoff=0.01).predict(["golden hour"])
    assert str(exc.value).startswith("no Triton server answered after 3 attempt(s) in ")
    assert f"tried {url} (connection refused)" in str(exc.value)
    assert "vedit triton serve" in str(exc.value)

    async def main():
        async with AsyncTritonClient(url, retries=1, backoff=0.01) as client:
            assert not await client.ready()
            await client.predict(["golden hour"])

    with pytest.raises(ServerUnavailableError, match=r"after 2 attempt\(s\)"):
        asyncio.run(main())


def test_a_dead_replica_in_the_list_is_skipped(triton_served, reference):
    """One URL of the list has nothing behind it: every answer comes from the live one."""
    dead = f"grpc://127.0.0.1:{free_port()}"
    with connect(f"{dead},{triton_served.grpc}", cooldown=60) as client:
        got = client.predict(triton_served.intents)
        stats = client.stats.as_dict()
        dead_state = client.replicas.snapshot()[0]
    assert [p.to_json() for p in got] == [r.to_json() for r in reference]
    assert stats["answered_by"] == {triton_served.grpc: len(reference)}
    assert stats["lost"] == 0 and stats["failovers"] == stats["retried"]
    assert dead_state.marked_down == 1 and dead_state.last_failure == "connection refused"

    async def main():
        async with aconnect([triton_served.http, dead.replace("grpc", "http")], cooldown=60) as client:
            return [p.to_json() for p in await client.predict(triton_served.intents)], client.stats

    got, stats = asyncio.run(main())
    assert got == [r.to_json() for r in reference]
    assert stats.answered == len(reference) and stats.lost == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_closed_client_refuses(triton_served, protocol):
    client = connect(getattr(triton_served, protocol))
    client.predict(["golden hour"])
    client.close()
    assert not client.ready()
    with pytest.raises(ClientError, match="closed"):
        client.predict(["golden hour"])

    async def main():
        client = aconnect(getattr(triton_served, protocol))
        await client.predict(["golden hour"])
        await client.close()
        assert not await client.ready()
        await client.predict(["golden hour"])

    with pytest.raises(ClientError, match="closed"):
        asyncio.run(main())
