"""Run an engine at its best setting on this host: try each of its switches on a trial request, keep the fastest.

Which backend or kernel wins depends on the host far more than on the engine (CTranslate2's
flan-t5-base step: 57 ms with MKL, 24 ms with oneDNN on an Intel Xeon), so a ratio against an
engine's default is no result. :func:`fastest` is the one place that tries settings: each option is
started, warmed up once, then timed round robin (one trial per option in turn, so load on a shared
machine hits every option alike), and the option with the lowest median is kept. A setting may only
change speed, never answers: when ``trial`` also returns the outputs, an option whose outputs differ
from the first option's is dropped (logged and named in the report line). Used by the peers
(:mod:`vedit.peers.ctranslate2_peer`) and by the PyTorch rows (:mod:`vedit.bench.torch_settings`).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

from vedit.errors import SettingError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Choice(Generic[T]):
    """The option kept, its started value, and what every option measured."""

    name: str
    value: T
    #: option -> median ms over the timed trials, in the order tried
    ms: dict[str, float]
    trials: int
    #: option -> why it was passed over (could not start or run, or answered differently)
    dropped: dict[str, str] = field(default_factory=dict)

    def describe(self, what: str, *, switch: str = "", unit: str = "per request") -> str:
        """One line for the report: the choice and every time, e.g. ``backend oneDNN (CT2_USE_MKL=0),
        the faster here of oneDNN 24.1 ms, MKL 57.0 ms per request (median of 3)``."""
        tried = ", ".join(f"{name} {ms:.1f} ms" for name, ms in self.ms.items())
        than = "the only one that ran here:" if len(self.ms) == 1 else \
            f"the {'faster' if len(self.ms) == 2 else 'fastest'} here of"
        return (f"{what} {self.name}{f' ({switch})' if switch else ''}, {than} {tried} {unit} "
                f"(median of {self.trials})")

    def passed_over(self) -> str:
        """The options dropped and why (empty when none was), e.g. ``passed over: oneDNN linear (its
        outputs differ from MKL linear's)``."""
        return ("passed over: " + "; ".join(f"{k} ({v})" for k, v in self.dropped.items())) if self.dropped else ""


def fastest(options: Sequence[str], start: Callable[[str], T], trial: Callable[[T], Any], *,
            trials: int = 3, close: Callable[[T], None] | None = None,
            errors: tuple[type[BaseException], ...] = ()) -> Choice[T]:
    """Start every option (``start(name)``), warm each up with one ``trial``, time ``trials`` more
    round robin and keep the option with the lowest median; the others are closed (``close``).

    ``trial(value)`` returns milliseconds, or ``(milliseconds, outputs)``: outputs are compared with
    the first option's and an option that differs is dropped. An option whose ``start`` or ``trial``
    raises one of ``errors`` is passed over (logged). Raises :class:`~vedit.errors.SettingError` when none is left.
    """
    if trials < 1:
        raise ValueError(f"fastest: trials must be at least 1, not {trials}")
    started: dict[str, T] = {}
    dropped: dict[str, str] = {}
    times: dict[str, list[float]] = {}
    reference: list[Any] = []  # the first option's outputs, once known

    def drop(name: str, why: str) -> None:
        log.warning(f"{name}: {why}; passed over")
        dropped[name] = why
        value = started.pop(name, None)
        if value is not None and close is not None:
            close(value)

    def run(name: str) -> float | None:
        try:
            result = trial(started[name])
        except errors as exc:
            first = (str(exc).splitlines() or [""])[0]
            drop(name, f"failed: {type(exc).__name__}{': ' + first if first else ''}")
            return None
        ms, outputs = result if isinstance(result, tuple) else (result, None)
        if outputs is not None:
            if not reference:
                reference.append((name, outputs))
            elif outputs != reference[0][1]:
                drop(name, f"its outputs differ from {reference[0][0]}'s")
                return None
        return float(ms)

    for name in options:
        try:
            started[name] = start(name)
        except errors as exc:
            drop(name, f"cannot start: {exc}")
            continue
        run(name)  # warm-up; its outputs are compared too
    for _ in range(trials):
        for name in list(started):
            ms = run(name)
            if ms is not None:
                times.setdefault(name, []).append(ms)
    if not started:
        raise SettingError("no option could run: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    medians = {name: statistics.median(times[name]) for name in options if name in started}
    best = min(medians, key=medians.__getitem__)
    for name in list(started):
        if name != best and close is not None:
            close(started[name])
    return Choice(best, started[best], medians, trials, dropped)


__all__ = ["Choice", "fastest"]
