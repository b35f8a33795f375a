"""The profile splits a request's wall time by what ran, and counts graph calls as the loop does."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from vedit.bench.profile import PARTS, profile_export
from vedit.decoding import Predictor
from vedit.decoding.grammar import Matcher

INTENTS = ["golden hour", "cold tone", "neon night"]


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_profile_parts_add_up_and_calls_match_the_loop(family, request):
    export = request.getfixturevalue(f"{family}_fp32").out_dir
    run, allowed = ort.InferenceSession.run, Matcher.allowed_tokens
    prof = profile_export(export, INTENTS, threads=1, warmup=0)
    # the patches are gone afterwards
    assert ort.InferenceSession.run is run and Matcher.allowed_tokens is allowed
    assert set(prof.parts_ms) == set(PARTS) and all(v >= 0 for v in prof.parts_ms.values())
    assert sum(prof.parts_ms.values()) == pytest.approx(prof.wall_ms, rel=1e-6)
    assert prof.parts_ms["grammar"] > 0 and prof.parts_ms["decoder calls"] > 0
    # the loop's own count of decoder calls (an independent tally) matches the graph calls timed
    stats = [p.stats for p in Predictor.load(export, threads=1, draft=False).predict(INTENTS)]
    loop_calls = sum(s.decoder_calls for s in stats) / len(stats)
    if family == "t5":
        assert prof.calls["encoder"] == 1 and "prefill" not in prof.calls
        assert prof.calls["decoder calls"] == pytest.approx(loop_calls)
    else:
        assert prof.calls["prefill"] == 1 and "encoder" not in prof.calls
        assert prof.calls["prefill"] + prof.calls["decoder calls"] == pytest.approx(loop_calls)
    assert prof.line().startswith(f"profile {export.name}: ") and "ms/request over 3 requests" in prof.line()


def test_profile_with_drafts_reports_their_acceptance(t5_fp32):
    """draft=True: the profile counts drafted and accepted free tokens, and its decoder calls per
    request are the graph calls it timed (an independent tally)."""
    prof = profile_export(t5_fp32.out_dir, INTENTS * 2, threads=1, warmup=3, draft=True)
    d = prof.draft
    assert d is not None and d["proposed"] > 0 and 0 < d["accepted"] <= d["proposed"]
    assert d["acceptance"] == pytest.approx(d["accepted"] / d["proposed"])
    assert d["decoder_calls"] == pytest.approx(prof.calls["decoder calls"])
    assert d["calls_per_free"] == pytest.approx(d["decoder_calls"] / d["free_tokens"])
    assert "accepted" in prof.line()
