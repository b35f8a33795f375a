"""Which replica gets the next request: round-robin over the ones that answer, a cool-down for the
ones that do not (pure logic, one lock; the clients do the I/O).

A replica that fails a request with a transient error (refused, reset, unavailable, no answer in
time, a model stub that died) is marked *down* for ``cooldown`` seconds and skipped meanwhile.
When the cool-down has passed, the next pick sends it one request as a probe, and the others keep
getting the rest until the probe answers. When every replica is down the one that comes back
soonest is picked anyway: a request is never refused here, the retry policy decides when to stop.

:func:`resolve_endpoints` turns a DNS name that resolves to several addresses into one endpoint
per address (``resolve=True`` on :func:`vedit.client.connect`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from vedit.errors import ClientError


@dataclass
class ReplicaState:
    url: str
    down_until: float = 0.0  # monotonic time; 0 = up
    last_failure: str | None = None
    failures: int = 0
    answers: int = 0
    marked_down: int = 0  # how often it went from up to down


class Replicas:
    """The replicas of one client, shared by all its requests (thread-safe)."""

    def __init__(self, urls: Sequence[str], *, cooldown: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not urls:
            raise ClientError("no server URL given; pass one URL or several (a list, or 'URL,URL')")
        self.cooldown = float(cooldown)
        self._clock = clock
        self._states = [ReplicaState(u) for u in urls]
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self._states]

    def pick(self) -> int:
        """The index of the replica to send the next request to."""
        with self._lock:
            now = self._clock()
            n = len(self._states)
            for step in range(n):
                k = (self._next + step) % n
                state = self._states[k]
                if state.down_until <= now:
                    if state.down_until:  # cool-down over: this request probes it, the others wait
                        state.down_until = now + self.cooldown
                    self._next = (k + 1) % n
                    return k
            k = min(range(n), key=lambda j: self._states[j].down_until)
            self._next = (k + 1) % n
            return k

    def succeeded(self, k: int) -> None:
        with self._lock:
            state = self._states[k]
            state.down_until = 0.0
            state.answers += 1

    def failed(self, k: int, reason: str) -> None:
        """A transient failure: skip the replica for ``cooldown`` seconds."""
        with self._lock:
            state = self._states[k]
            if not state.down_until:
                state.marked_down += 1
            state.down_until = self._clock() + self.cooldown
            state.last_failure = reason
            state.failures += 1

    def any_up(self) -> bool:
        """Whether a replica can be sent to now (up, or its cool-down over)."""
        with self._lock:
            now = self._clock()
            return any(s.down_until <= now for s in self._states)

    def snapshot(self) -> list[ReplicaState]:
        with self._lock:
            return [replace(s) for s in self._states]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def resolve_endpoints(endpoints, *, resolver: Callable = socket.getaddrinfo):
    """One endpoint per address each DNS name resolves to (TCP), in the resolver's order.

    TLS endpoints are refused: certificates name the host, not its addresses; list such replicas'
    URLs instead.
    """
    from vedit.client.base import Endpoint

    out: list[Endpoint] = []
    for ep in endpoints:
        host, _, port = ep.address.rpartition(":")
        if _is_ip(host):
            out.append(ep)
            continue
        if ep.ssl:
            raise ClientError(f"{ep.url}: resolve=True does not work with TLS (certificates name the host); "
                              "list each replica's URL instead")
        try:
            infos = resolver(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ClientError(f"{ep.url}: cannot resolve {host!r} ({exc}); check the name or list the URLs") from None
        for info in infos:
            addr = info[4][0]
            address = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
            found = Endpoint(protocol=ep.protocol, address=address, ssl=ep.ssl)
            if found not in out:
                out.append(found)
    return out


__all__ = ["ReplicaState", "Replicas", "resolve_endpoints"]
