"""Integer ranges as regexes: exhaustive against ``str(i)`` for every range the registry uses."""

from __future__ import annotations

import re

import pytest

from vedit.decoding.intrange import int_range_regex, magnitude_patterns, signed_patterns
from vedit.registry import default_registry

REGISTRY_RANGES = sorted({(p.min, p.max) for t in default_registry().tools for p in t.slot_params})
OTHER_RANGES = [(0, 0), (5, 5), (-1, 0), (-7, -3), (99, 101), (13, 4567), (-1000, -1), (-250, 999), (1, 10)]


def _candidates(lo: int, hi: int) -> set[str]:
    span = hi - lo + 50
    nums = {str(i) for i in range(lo - span, hi + span + 1)}
    odd = {"-0", "00", "007", "-007", "+1", "1.5", "-", "", " 1", "1 ", "0x10", "1e2", "--1", "٣"}
    padded = {"0" + str(i) for i in range(max(lo, 0), hi + 1)} | {"-0" + str(i) for i in range(1, max(0, -lo) + 1)}
    return nums | odd | padded


@pytest.mark.parametrize("lo,hi", REGISTRY_RANGES + OTHER_RANGES)
def test_range_regex_matches_exactly_the_integers(lo, hi):
    rx = re.compile(int_range_regex(lo, hi))
    allowed = {str(i) for i in range(lo, hi + 1)}
    wrong = sorted(c for c in _candidates(lo, hi) if bool(rx.fullmatch(c)) != (c in allowed))
    assert wrong == []


@pytest.mark.parametrize("lo,hi", REGISTRY_RANGES)
def test_patterns_never_start_with_zero_unless_single_digit(lo, hi):
    sp = signed_patterns(lo, hi)
    for pat in sp.negative:
        assert pat[0][0] >= 1  # no "-0", no "-07"
    for pat in sp.non_negative:
        assert len(pat) == 1 or pat[0][0] >= 1


def test_refused_examples_for_the_common_range():
    rx = re.compile(int_range_regex(-100, 100))
    for bad in ["250", "-101", "007", "-0", "1.5", "101", "+5", "0100"]:
        assert not rx.fullmatch(bad), bad


def test_bad_bounds():
    with pytest.raises(ValueError):
        signed_patterns(3, 2)
    with pytest.raises(ValueError):
        magnitude_patterns(-1, 5)
