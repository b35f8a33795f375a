"""The retry policy, as tenacity arguments shared by the sync and async clients.

Predictions are idempotent, so a request that failed transiently (see
:func:`vedit.client.base.classify`) is sent again until it is answered or the policy runs out:

- at most ``retries`` more attempts per call, and none that starts later than ``deadline`` seconds
  after the call's first failure (an attempt already in flight keeps its own ``timeout``);
- no wait while some replica is up: the next attempt goes to it (failover);
- while every replica is down, exponential backoff with full jitter (a random wait up to
  ``backoff`` · 2^n, at most ``max_backoff`` seconds), never past the deadline.

The twins build ``tenacity.Retrying(**retrying_args(...))`` or ``tenacity.AsyncRetrying(...)``;
only the sleeping differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from vedit.client.base import Attempts, RetryableFailure
from vedit.errors import ClientError


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 20
    backoff: float = 0.1
    max_backoff: float = 2.0
    deadline: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < self.backoff or self.deadline < 0:
            raise ClientError(
                f"retry policy {self}: retries, backoff and deadline must be >= 0 and max_backoff >= backoff"
            )


class stop_after_failing_for(stop_base):
    """Stop once ``deadline`` seconds have passed since the call's first transient failure."""

    def __init__(self, attempts: Attempts, deadline: float) -> None:
        self.attempts = attempts
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        first = self.attempts.first_failure
        return first is not None and self.attempts.clock() - first >= self.deadline


class wait_unless_failover(wait_base):
    """No wait while a replica is up; otherwise exponential backoff, cut at the deadline."""

    def __init__(self, policy: RetryPolicy, attempts: Attempts) -> None:
        self.attempts = attempts
        self.deadline = policy.deadline
        self.backoff = wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)

    def __call__(self, retry_state: RetryCallState) -> float:
        if self.attempts.replicas.any_up():
            return 0.0
        first = self.attempts.first_failure
        left = self.deadline - (self.attempts.clock() - first) if first is not None else self.deadline
        return max(0.0, min(self.backoff(retry_state), left))


def retrying_args(policy: RetryPolicy, attempts: Attempts, give_up: Callable[[int], ClientError]) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: retry only
    :class:`~vedit.client.base.RetryableFailure`, raise ``give_up(attempts made)`` when the policy runs out
    (any other exception propagates at once)."""

    def raise_give_up(retry_state: RetryCallState) -> NoReturn:
        raise give_up(retry_state.attempt_number) from None

    return {
        "retry": retry_if_exception_type(RetryableFailure),
        "stop": stop_after_attempt(policy.retries + 1) | stop_after_failing_for(attempts, policy.deadline),
        "wait": wait_unless_failover(policy, attempts),
        "retry_error_callback": raise_give_up,
    }


__all__ = ["RetryPolicy", "retrying_args", "stop_after_failing_for", "wait_unless_failover"]
