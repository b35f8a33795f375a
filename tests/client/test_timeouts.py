"""A server that accepts connections but never answers: retried until the deadline, then one clear line."""

from __future__ import annotations

import asyncio
import socket
import time

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
def test_silent_server_is_retried_until_the_deadline(silent_port, scheme):
    url = f"{scheme}://127.0.0.1:{silent_port}"
    message = rf"no Triton server answered after 3 attempt\(s\) in .* s: tried {url} \(no answer within 0.3 s\)"
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=message):
        # a timeout is transient: attempts at 0-0.3, 0.3-0.6, 0.6-0.9 s; the deadline (0.5 s after
        # the first failure) stops a fourth
        TritonClient(url, timeout=0.3, deadline=0.5, retries=10, backoff=0.01).predict(["golden hour"])
    assert 0.85 < time.monotonic() - start < 5

    async def main():
        async with AsyncTritonClient(url, timeout=0.3, deadline=0.5, retries=10, backoff=0.01) as client:
            await client.predict(["golden hour"])

    with pytest.raises(ServerUnavailableError, match=message):
        asyncio.run(main())
