"""One intent rule everywhere: the in-process client refuses what the served model refuses,
with the same reason, before any decoding (vedit.intents)."""

from __future__ import annotations

import numpy as np
import pytest

from vedit.client import connect
from vedit.errors import ClientError
from vedit.intents import MAX_INTENT_BYTES, intent_problem
from vedit.triton_repo.requests import BadRequest, decode_intents

BAD = [
    ("", "empty intent"),
    (" \t\n", "empty intent"),
    ("x" * (MAX_INTENT_BYTES + 1), f"{MAX_INTENT_BYTES + 1} bytes, over the limit of {MAX_INTENT_BYTES} bytes per intent"),
    ("é" * (MAX_INTENT_BYTES // 2 + 1), f"{MAX_INTENT_BYTES + 2} bytes, over the limit of {MAX_INTENT_BYTES} bytes per intent"),
]


@pytest.mark.parametrize("intent, reason", BAD, ids=["empty", "blank", "long", "long-utf8"])
def test_same_refusal_in_process_and_in_the_served_model(tiny_export, registry, intent, reason):
    from vedit.client.base import ModelInfo, check_intent

    assert intent_problem(intent) == reason
    remote = ModelInfo("vedit", "INTENT", registry.tool_names, 8, MAX_INTENT_BYTES, registry)
    with pytest.raises(ClientError) as sent:  # the remote client, before sending
        check_intent(remote, 1, intent)
    assert str(sent.value) == f"intent 1: {reason}"
    with pytest.raises(BadRequest) as served:
        decode_intents(np.array([[intent.encode("utf-8")]], dtype=np.object_), max_bytes=MAX_INTENT_BYTES)
    assert str(served.value) == f"INTENT row 0: {reason}"
    with connect(tiny_export, threads=1) as client:
        calls = client.predictor.model.decoder.calls
        with pytest.raises(ClientError) as local:
            client.predict(["golden hour", intent])
        assert str(local.value) == f"intent 1: {reason}"
        assert client.predictor.model.decoder.calls == calls  # refused whole, before any decoding


def test_valid_intents_at_the_limit_are_answered(tiny_export):
    edge = "y" * MAX_INTENT_BYTES
    assert intent_problem(edge) is None and intent_problem(b"\xc3\x28") == "not valid UTF-8 (byte 0)"
    with connect(tiny_export, threads=1) as client:
        answers = client.predict(["golden hour", edge, "😈"])
    assert [a.intent for a in answers] == ["golden hour", edge, "😈"]
    with connect(tiny_export, threads=1, max_intent_bytes=None) as client:  # the library's own rule: cut
        assert client.predict(["z" * 5000])[0].stats.truncated
