"""Issue 15, client side, for real: one python-backend stub process of a running tritonserver is
killed while a stream of distinct intents is sent. Triton answers the requests routed to the dead
instance with "Stub process '...' is not healthy" (and its response cache then replays that failure
as an empty answer for the identical request); the client must retry them onto the healthy
instance so that every intent is answered, as the in-process runtime answers it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from vedit.client import aconnect, connect
from vedit.serving import TritonServer

from .streaming import Stream, children_named, distinct_intents, figures, wait_gone

pytestmark = [pytest.mark.triton, pytest.mark.slow]

STUB = "triton_python_backend_stub"


def test_stream_rides_over_a_killed_stub(triton_served, tmp_path, record_property):
    # its own server (the session's is shared with other tests and must keep both instances)
    with TritonServer(triton_served.repo, log_path=tmp_path / "tritonserver.log") as server:
        stubs = children_named(server.pid, STUB)
        assert len(stubs) == 2, f"expected the cpu profile's 2 model instances, found stubs {stubs}"
        intents = distinct_intents(60, "stub-")
        started = time.monotonic()
        with connect(server.urls["grpc"], timeout=10, deadline=20) as client:
            stream = Stream(client, intents[:36], chunk=4, pace=0.0)
            for _ in range(3):
                stream.send_one_chunk()
            assert client.stats.retried == 0  # healthy so far
            os.kill(stubs[0], signal.SIGKILL)
            wait_gone(stubs[0])
            for _ in range(6):
                stream.send_one_chunk()
            grpc_stats = client.stats.as_dict()
            grpc_state = client.replicas.snapshot()[0]

        async def over_http():  # the asyncio twin, over HTTP, still with one dead instance
            async with aconnect(server.urls["http"], timeout=10, deadline=20) as client:
                got = []
                for k in range(36, 60, 4):
                    got += await client.predict(intents[k:k + 4])
                return got, client.stats.as_dict(), client.replicas.snapshot()[0]

        http_got, http_stats, http_state = asyncio.run(over_http())
        took = time.monotonic() - started
    stream.sent.extend(intents[36:])
    stream.answers.update({p.intent: p for p in http_got})
    stream.check_against(triton_served.export_dir)
    line = (f"stub kill: gRPC sync {figures(grpc_stats)}; HTTP async {figures(http_stats)}; "
            f"{took:.1f} s; last failure seen: {grpc_state.last_failure!r}")
    print(line)
    record_property("stub_kill", line)
    for stats, state in ((grpc_stats, grpc_state), (http_stats, http_state)):
        assert stats["lost"] == 0 and stats["answered"] == stats["sent"]
        assert stats["retried"] >= 1  # the dead instance really was hit, and ridden over
        assert "not healthy" in (state.last_failure or "")
    assert grpc_stats["sent"] == 36 and http_stats["sent"] == 24
