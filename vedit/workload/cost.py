"""What a timed path is: a callable answering one intent, and what that answer cost.

Shared by vedit's own paths (:mod:`vedit.bench.latency`) and the peer engines (:mod:`vedit.peers`),
so both sides of a comparison report the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Cost:
    """What one request cost a path, and what it answered (one text per tool row, registry order)."""

    decoder_calls: int
    free_tokens: int | None = None
    forced_tokens: int | None = None
    texts: tuple[str, ...] | None = None


#: A path: answers one intent and says what it cost. It may carry a string attribute ``info``
#: (precision, threads, what constrains it) that the report prints.
Call = Callable[[str], Cost]


__all__ = ["Call", "Cost"]
