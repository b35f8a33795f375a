"""A server that accepts connections but never answers: a clear timeout, no retries."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vedit.client import AsyncTritonClient, TritonClient
from vedit.errors import ServerUnavailableError


@pytest.fixture
def silent_port():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_silent_server_times_out(silent_port, scheme):
    url = f"{scheme}://127.0.0.1:{silent_port}"
    message = f"{url} did not answer within 0.3 s"
    with pytest.raises(ServerUnavailableError, match=message) as exc:
        TritonClient(url, timeout=0.3, retries=3, backoff=0.01).predict(["golden hour"])
    assert "gave up" not in str(exc.value)  # a timeout is not retried

    async def main():
        async with AsyncTritonClient(url, timeout=0.3, retries=3, backoff=0.01) as client:
            await client.predict(["golden hour"])

    with pytest.raises(ServerUnavailableError, match=message):
        asyncio.run(main())
