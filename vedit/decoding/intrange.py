"""Inclusive integer ranges as digit patterns, so a grammar can enforce a range exactly.

A range such as ``-100..100`` becomes a sign choice plus, per sign, a small set of *digit
patterns*: tuples of ``(low, high)`` digit bounds, one per position. Rendering a pattern is left to
the caller: the character regex writes ``[1-9][0-9]``, the token grammar writes alternations of
digit tokens. The patterns admit exactly the canonical decimal spelling of each integer: no
leading zeros, no ``-0``, no ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: One digit position: the inclusive range of digits allowed there.
DigitRange = tuple[int, int]
#: A run of digit positions, e.g. ``((1, 9), (0, 9))`` for 10..99.
DigitPattern = tuple[DigitRange, ...]


@dataclass(frozen=True)
class SignedPatterns:
    """The spellings of ``lo..hi``: ``negative`` are magnitudes written after ``-``."""

    negative: tuple[DigitPattern, ...]
    non_negative: tuple[DigitPattern, ...]


def magnitude_patterns(lo: int, hi: int) -> tuple[DigitPattern, ...]:
    """Digit patterns for the non-negative integers ``lo..hi`` (inclusive), without leading zeros."""
    if lo < 0 or lo > hi:
        raise ValueError(f"need 0 <= lo <= hi, got {lo}..{hi}")
    out: list[DigitPattern] = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        first = 0 if n == 1 else 10 ** (n - 1)
        a, b = max(lo, first), min(hi, 10**n - 1)
        if a <= b:
            out.extend(_same_length(str(a), str(b)))
    return tuple(out)


def _same_length(a: str, b: str) -> list[DigitPattern]:
    """Patterns for the numbers between the equal-length decimal strings ``a`` and ``b``."""
    if len(a) == 1:
        return [((int(a), int(b)),)]
    rest = len(a) - 1
    if a[0] == b[0]:
        d = int(a[0])
        return [((d, d),) + p for p in _same_length(a[1:], b[1:])]
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        return [((int(a[0]), int(b[0])),) + ((0, 9),) * rest]
    out: list[DigitPattern] = []
    lo_d, hi_d = int(a[0]), int(b[0])
    # a[0] followed by a[1:]..99..9
    out.extend(((lo_d, lo_d),) + p for p in _same_length(a[1:], "9" * rest))
    if hi_d - lo_d > 1:
        out.append(((lo_d + 1, hi_d - 1),) + ((0, 9),) * rest)
    # b[0] followed by 00..0..b[1:]
    out.extend(((hi_d, hi_d),) + p for p in _same_length("0" * rest, b[1:]))
    return out


def signed_patterns(lo: int, hi: int) -> SignedPatterns:
    """Patterns for ``lo..hi``, split by sign (``-0`` is never produced)."""
    if lo > hi:
        raise ValueError(f"empty range {lo}..{hi}")
    neg = magnitude_patterns(max(1, -hi), -lo) if lo < 0 else ()
    pos = magnitude_patterns(max(0, lo), hi) if hi >= 0 else ()
    return SignedPatterns(neg, pos)


def pattern_regex(patterns: tuple[DigitPattern, ...]) -> str:
    """A character regex for a set of digit patterns (``[1-9][0-9]?`` style, no anchors)."""
    alts = ["".join(_digit_class(r) for r in p) for p in patterns]
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _digit_class(r: DigitRange) -> str:
    lo, hi = r
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def int_range_regex(lo: int, hi: int) -> str:
    """A regex matching exactly ``str(i)`` for every ``lo <= i <= hi`` (use with fullmatch)."""
    sp = signed_patterns(lo, hi)
    alts = []
    if sp.negative:
        alts.append("-" + pattern_regex(sp.negative))
    if sp.non_negative:
        alts.append(pattern_regex(sp.non_negative))
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


__all__ = [
    "DigitPattern",
    "DigitRange",
    "SignedPatterns",
    "int_range_regex",
    "magnitude_patterns",
    "pattern_regex",
    "signed_patterns",
]
