"""The client's pure logic: URLs, model info, error classification, retries."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from vedit.client import base
from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError
from vedit.triton_repo import config as cfgmod
from vedit.triton_repo.profiles import get_profile


@pytest.mark.parametrize(
    "url, protocol, address, ssl",
    [
        ("http://localhost:8000", "http", "localhost:8000", False),
        ("http://localhost", "http", "localhost:8000", False),
        ("https://triton.example.com:443/", "http", "triton.example.com:443", True),
        ("grpc://10.0.0.5:9001", "grpc", "10.0.0.5:9001", False),
        ("grpc://host", "grpc", "host:8001", False),
        ("grpcs://host:8443", "grpc", "host:8443", True),
        ("http://[::1]:8000", "http", "[::1]:8000", False),
    ],
)
def test_parse_url(url, protocol, address, ssl):
    ep = base.parse_url(url)
    assert (ep.protocol, ep.address, ep.ssl) == (protocol, address, ssl)
    assert base.parse_url(ep.url) == ep


@pytest.mark.parametrize(
    "url, message",
    [
        ("localhost:8000", "unknown scheme"),
        ("ftp://host", "unknown scheme"),
        ("http://", "no host"),
        ("http://host:80a", "not a number"),
        ("http://host:8000/v2/models/vedit", "only scheme://host:port"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ClientError, match=message):
        base.parse_url(url)


def test_is_url(tmp_path):
    assert base.is_url("grpc://h:1") and base.is_url("https://h")
    assert not base.is_url(str(tmp_path)) and not base.is_url("exports/t5")


def _triton_json(registry) -> dict:
    """The config as Triton's JSON API returns it (protobuf JSON with field names as declared)."""
    cfg = cfgmod.build_config(name="vedit", profile=get_profile("cpu"), registry=registry, instance_count=1,
                              family="t5", precision="fp32")
    return json_format.MessageToDict(cfg, preserving_proto_field_name=True)


def test_model_info_reads_the_servers_registry(registry):
    config = _triton_json(registry)
    info = base.model_info("vedit", config)
    assert info.input_name == "INTENT"
    assert info.tools == registry.tool_names
    assert info.max_batch_size == get_profile("cpu").max_batch_size
    assert info.max_intent_bytes == cfgmod.MAX_INTENT_BYTES
    assert info.registry.raw == registry.raw
    # a registry that differs from the installed one is the one used
    raw = json.loads(json.dumps(registry.raw))
    raw["tools"][2]["params"][0]["max"] = 50
    config["parameters"]["vedit_registry"]["string_value"] = json.dumps(raw)
    assert base.model_info("vedit", config).registry.tool("filter").params[0].max == 50
    assert base.config_json("grpc", {"config": config}) is config


def test_model_info_refuses_foreign_models(registry):
    config = _triton_json(registry)
    config["output"][0]["name"] = "OUTPUT0"
    with pytest.raises(ServerResponseError, match="OUTPUT0"):
        base.model_info("vedit", config)
    with pytest.raises(ServerResponseError, match="is it a vedit model"):
        base.model_info("vedit", {"name": "x"})


EP = base.parse_url("grpc://localhost:8001")


@pytest.mark.parametrize(
    "exc, kind, retry",
    [
        (ConnectionRefusedError(111, "Connection refused"), ServerUnavailableError, True),
        (InferenceServerException("connect failed", status="StatusCode.UNAVAILABLE"), ServerUnavailableError, True),
        (InferenceServerException("Service Unavailable", status="503"), ServerUnavailableError, True),
        (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"),
         ServerUnavailableError, False),
        (TimeoutError(), ServerUnavailableError, False),
        (InferenceServerException("INTENT row 0: empty intent", status="400"), ServerResponseError, False),
        (InferenceServerException("empty", status="StatusCode.INVALID_ARGUMENT"), ServerResponseError, False),
        (ValueError("odd"), ClientError, False),
    ],
)
def test_classify(exc, kind, retry):
    err = base.classify(exc, EP, timeout=5)
    assert type(err) is kind
    assert base.retryable(err) is retry
    assert "grpc://localhost:8001" in str(err)


def test_server_message_is_kept():
    err = base.classify(InferenceServerException("INTENT row 0: empty intent", status="400"), EP, timeout=5)
    assert str(err) == "grpc://localhost:8001 refused the request: INTENT row 0: empty intent"


def test_backoff_is_exponential_and_bounded():
    policy = base.RetryPolicy(retries=3, backoff=0.1, max_backoff=0.3)
    refused = ConnectionRefusedError(111, "Connection refused")
    delays = [base.backoff_or_raise(refused, a, policy=policy, endpoint=EP, timeout=1) for a in range(3)]
    assert delays == [0.1, 0.2, 0.3]
    with pytest.raises(ServerUnavailableError, match="gave up after 4 attempts"):
        base.backoff_or_raise(refused, 3, policy=policy, endpoint=EP, timeout=1)
    with pytest.raises(ServerResponseError):
        base.backoff_or_raise(InferenceServerException("bad", status="400"), 0, policy=policy, endpoint=EP,
                              timeout=1)


def test_predict_round_retries_only_unavailable(registry):
    info = base.model_info("vedit", _triton_json(registry))
    rnd = base.PredictRound(info, ["a", "b"], policy=base.RetryPolicy(retries=1, backoff=0.05), endpoint=EP,
                            timeout=1)
    refused = ConnectionRefusedError(111, "Connection refused")
    assert rnd.pending() == [0, 1]
    assert rnd.record([(0, None, refused), (1, None, refused)]) == 0.05
    assert rnd.pending() == [0, 1]
    with pytest.raises(ServerUnavailableError, match="gave up after 2 attempts"):
        rnd.record([(0, None, refused), (1, None, refused)])
    rnd = base.PredictRound(info, ["a"], policy=base.RetryPolicy(), endpoint=EP, timeout=1)
    with pytest.raises(ServerResponseError, match="empty intent"):
        rnd.record([(0, None, InferenceServerException("INTENT row 0: empty intent", status="400"))])


@pytest.mark.parametrize(
    "intents, message",
    [
        (["ok", b"bytes"], "intent 1: intents are str, got bytes"),
        (["", "ok"], "intent 0: empty intent"),
        (["ok", " \t"], "intent 1: empty intent"),
        (["é" * (cfgmod.MAX_INTENT_BYTES // 2 + 1)], f"{cfgmod.MAX_INTENT_BYTES + 2} bytes, over the server's limit"),
    ],
)
def test_predict_round_refuses_what_the_server_refuses(registry, intents, message):
    info = base.model_info("vedit", _triton_json(registry))
    with pytest.raises(ClientError, match=message):
        base.PredictRound(info, intents, policy=base.RetryPolicy(), endpoint=EP, timeout=1)
    # the limit is exactly inclusive
    base.PredictRound(info, ["x" * cfgmod.MAX_INTENT_BYTES], policy=base.RetryPolicy(), endpoint=EP, timeout=1)
