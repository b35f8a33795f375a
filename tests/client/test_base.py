"""The client's pure logic: URLs, model info, error sorting, replicas, and the retry loop (tenacity)
driven by scripted outcomes (the real faults are in test_failover.py and test_stub_kill.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tenacity
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from vedit.client import base
from vedit.client.replicas import Replicas, resolve_endpoints
from vedit.client.retry import RetryPolicy, retrying_args
from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError
from vedit.registry import ToolCall
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
    raw["tools"][2]["function"]["parameters"]["properties"]["intensity"]["maximum"] = 50
    config["parameters"]["vedit_registry"]["string_value"] = json.dumps(raw)
    assert base.model_info("vedit", config).registry.tool("filter").slot_params[0].max == 50
    assert base.config_json("grpc", {"config": config}) is config


def test_model_info_refuses_foreign_models(registry):
    config = _triton_json(registry)
    config["output"][0]["name"] = "OUTPUT0"
    with pytest.raises(ServerResponseError, match="OUTPUT0"):
        base.model_info("vedit", config)
    with pytest.raises(ServerResponseError, match="is it a vedit model"):
        base.model_info("vedit", {"name": "x"})


def test_parse_urls_lists_and_comma_strings():
    a, b = "grpc://10.0.0.1:8001", "grpc://10.0.0.2:8001"
    assert [ep.url for ep in base.parse_urls(f"{a}, {b}")] == [a, b]
    assert [ep.url for ep in base.parse_urls([a, b])] == [a, b]
    assert [ep.url for ep in base.parse_urls(a)] == [a]
    assert base.is_url(f"{a},{b}") and base.is_url([a, b]) and not base.is_url([a, "exports/t5"])
    with pytest.raises(ClientError, match="listed twice"):
        base.parse_urls([a, "grpc://10.0.0.1:8001/"])
    with pytest.raises(ClientError, match="mix http and grpc"):
        base.parse_urls([a, "http://10.0.0.2:8000"])
    with pytest.raises(ClientError, match="empty server URL"):
        base.parse_urls(f"{a},,{b}")


# Messages as the real tritonserver 2.51 / nginx / the transports produce them.
STUB = "Stub process 'vedit_0_0' is not healthy."
NGINX_502 = ("an exception occurred in the client while decoding the response: Expecting value: line 1 column 1 "
             "(char 0)\nresponse: <html><head><title>502 Bad Gateway</title></head></html>")


@pytest.mark.parametrize(
    "exc, transient, reason",
    [
        (InferenceServerException(STUB, status="500"), True, "model stub 'vedit_0_0' not healthy"),
        (InferenceServerException(STUB, status="StatusCode.INTERNAL"), True, "model stub 'vedit_0_0' not healthy"),
        (ConnectionRefusedError(111, "Connection refused"), True, "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), True, "connection reset"),
        (InferenceServerException("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
                                  "Failed to connect to remote host: Connection refused",
                                  status="StatusCode.UNAVAILABLE"), True, "connection refused"),
        (InferenceServerException("Socket closed", status="StatusCode.UNAVAILABLE"), True, "connection closed"),
        (InferenceServerException(NGINX_502, status="502"), True, "HTTP 502 Bad Gateway"),
        (InferenceServerException("Service Unavailable", status="503"), True, "HTTP 503"),
        (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"), True,
         "no answer within 5 s"),
        (TimeoutError(), True, "no answer within 5 s"),
        (base.CachedErrorAnswer("no value"), True, "empty answer replayed by the response cache"),
        (InferenceServerException("Request for unknown model: 'vedit' has no available versions",
                                  status="StatusCode.UNAVAILABLE"), True, "model not loaded"),
        (InferenceServerException("Request for unknown model: 'vedit' has no available versions", status="400"),
         True, "model not loaded"),
        (InferenceServerException("INTENT row 0: empty intent", status="400"), False, "HTTP 400"),
        (InferenceServerException(NGINX_502.replace("502 Bad Gateway", "413 Request Entity Too Large"),
                                  status="413"), False, "HTTP 413 Request Entity Too Large"),
        (InferenceServerException("[Errno 111] Connect call failed ('127.0.0.1', 1)"), True, "connection refused"),
        (InferenceServerException("[Errno 113] Connect call failed ('10.0.0.9', 1)"), True, "cannot connect"),
        (InferenceServerException("empty", status="StatusCode.INVALID_ARGUMENT"), False, "empty"),
        (InferenceServerException("Request for unknown model: 'x' is not found", status="StatusCode.NOT_FOUND"),
         False, "unknown model"),
        (ValueError("odd"), False, "unexpected client failure ValueError: odd"),
    ],
)
def test_classify(exc, transient, reason):
    failure = base.classify(exc, timeout=5, url="grpc://localhost:8001")
    assert failure.transient is transient
    assert reason in failure.reason
    if not transient:
        assert isinstance(failure.error, ClientError) and "\n" not in str(failure.error)
        assert "grpc://localhost:8001" in str(failure.error)
    if isinstance(exc, InferenceServerException) and exc.status() == "413":
        assert str(failure.error) == "grpc://localhost:8001 refused the request: HTTP 413 Request Entity Too Large"


def test_server_message_is_kept():
    failure = base.classify(InferenceServerException("INTENT row 0: empty intent", status="400"), timeout=5,
                            url="grpc://localhost:8001")
    assert type(failure.error) is ServerResponseError
    assert str(failure.error) == "grpc://localhost:8001 refused the request: INTENT row 0: empty intent"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_replicas_round_robin_cooldown_and_probe():
    clock = Clock()
    reps = Replicas(["grpc://a:1", "grpc://b:1", "grpc://c:1"], cooldown=5, clock=clock)
    assert [reps.pick() for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    reps.failed(1, "connection refused")
    assert [reps.pick() for _ in range(4)] == [0, 2, 0, 2]  # b skipped while it cools down
    assert reps.any_up()
    clock.now += 5
    picks = [reps.pick() for _ in range(5)]
    assert picks.count(1) == 1  # one probe, not a flood
    reps.succeeded(1)
    assert sorted(reps.pick() for _ in range(3)) == [0, 1, 2]
    for k in range(3):
        clock.now += 1
        reps.failed(k, "connection reset")
    assert not reps.any_up()
    assert reps.pick() == 0  # all down: the one back soonest, never a refusal
    state = reps.snapshot()[1]
    assert (state.failures, state.marked_down, state.last_failure) == (2, 2, "connection reset")


def test_resolve_endpoints():
    def resolver(host, port, type):  # two A records and one AAAA, as a DNS round-robin name has
        assert (host, port) == ("triton.svc", 8001)
        return [(2, 1, 6, "", ("10.0.0.1", port)), (2, 1, 6, "", ("10.0.0.2", port)),
                (10, 1, 6, "", ("fd00::3", port, 0, 0)), (2, 1, 6, "", ("10.0.0.1", port))]

    eps = resolve_endpoints(base.parse_urls("grpc://triton.svc:8001,grpc://10.9.9.9:8001"), resolver=resolver)
    assert [ep.url for ep in eps] == ["grpc://10.0.0.1:8001", "grpc://10.0.0.2:8001", "grpc://[fd00::3]:8001",
                                      "grpc://10.9.9.9:8001"]
    assert "grpc://127.0.0.1:8001" in [ep.url for ep in resolve_endpoints(base.parse_urls("grpc://localhost:8001"))]
    with pytest.raises(ClientError, match="does not work with TLS"):
        resolve_endpoints(base.parse_urls("grpcs://triton.svc:8443"), resolver=resolver)


# -- the retry loop (tenacity + PredictRound) on scripted outcomes ---------------------------------
class Answer:
    """A response as tritonclient returns it: one BYTES row per copy of the intent, per tool."""

    def __init__(self, registry, copies, empty=False):
        self.rows = {t.name: np.array([[ToolCall.unused(t).dumps().encode()]] * copies, dtype=np.object_)
                     for t in registry.tools}
        self.empty = empty

    def as_numpy(self, name):
        return None if self.empty else self.rows[name]


def _run(info, intents, outcome, *, urls=("grpc://a:1", "grpc://b:1"), retries=5, deadline=30.0):
    """Drive predict's loop as the twins do; ``outcome(url, intent, copies, tries)`` -> exception or None."""
    clock = Clock()
    replicas = Replicas(list(urls), cooldown=5, clock=clock)
    stats = base.ClientStats()
    rnd = base.PredictRound(info, intents, replicas=replicas, stats=stats, timeout=1, clock=clock)
    log = []

    def attempt():
        for i in rnd.pending():
            k, copies = replicas.pick(), rnd.copies(i)
            error = outcome(urls[k], intents[i], copies, len([e for e in log if e[1] == i]))
            log.append((urls[k], i, copies, error))
            clock.now += 0.01
            rnd.observe(i, k, None if error else Answer(info.registry, copies, empty=error is False), error or None,
                        copies)
        return rnd.end_attempt()

    policy = RetryPolicy(retries=retries, backoff=0.5, deadline=deadline)
    retrying = tenacity.Retrying(sleep=clock.sleep, **retrying_args(policy, rnd.attempts, rnd.give_up))
    try:
        return retrying(attempt), stats, log, clock
    except ClientError as exc:
        exc.stats, exc.log, exc.clock = stats, log, clock
        raise


def test_failover_answers_everything_once_without_waiting(registry):
    info = base.model_info("vedit", _triton_json(registry))
    intents = [f"intent {i}" for i in range(6)]
    refused = ConnectionRefusedError(111, "Connection refused")
    got, stats, log, clock = _run(info, intents, lambda url, *_: refused if url == "grpc://a:1" else None)
    assert [p.intent for p in got] == intents
    assert stats.as_dict() | {"answered_by": None} == {"sent": 6, "answered": 6, "retried": 1, "failovers": 1,
                                                       "lost": 0, "attempts": 7, "answered_by": None}
    assert stats.answered_by == {"grpc://b:1": 6}  # a was down after its first refusal
    assert clock.now - 100 < 0.1  # no backoff while b was up


def test_stub_failure_is_retried_on_the_same_server_with_a_new_cache_key(registry):
    info = base.model_info("vedit", _triton_json(registry))
    stub = InferenceServerException(STUB, status="StatusCode.INTERNAL")

    def outcome(url, intent, copies, tries):
        if tries == 0:
            return stub  # the first attempt of each intent meets the dead stub
        if copies == 1:
            return False  # the cache replays the failure for the identical request
        return None

    got, stats, log, clock = _run(info, ["x", "y"], outcome, urls=("grpc://a:1",))
    assert [p.intent for p in got] == ["x", "y"]
    assert [c for _, _, c, _ in log] == [1, 1, 2, 2]  # the retry differs from the failed request
    assert stats.retried == 2 and stats.failovers == 0 and stats.lost == 0
    assert clock.now - 100 > 0  # the only replica was down: the retry waited (backoff)


def test_request_errors_fail_at_once(registry):
    info = base.model_info("vedit", _triton_json(registry))
    bad = InferenceServerException("INTENT row 0: empty intent", status="400")
    with pytest.raises(ServerResponseError, match="refused the request: INTENT row 0") as exc:
        _run(info, ["x", "y"], lambda url, intent, *_: bad if intent == "y" else None)
    assert len(exc.value.log) == 2  # not retried
    assert exc.value.stats.lost == 1 and exc.value.stats.retried == 0


def test_gives_up_with_one_line_naming_every_replica(registry):
    info = base.model_info("vedit", _triton_json(registry))
    stub = InferenceServerException(STUB, status="500")
    refused = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(ServerUnavailableError) as exc:
        _run(info, ["x"], lambda url, *_: refused if url == "grpc://a:1" else stub, retries=3)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("no replica answered after 4 attempt(s)")
    assert "tried grpc://a:1 (connection refused), grpc://b:1 (model stub 'vedit_0_0' not healthy)" in msg
    assert "check the servers" in msg
    assert exc.value.stats.lost == 1 and exc.value.stats.attempts == 4


def test_deadline_bounds_the_retries(registry):
    info = base.model_info("vedit", _triton_json(registry))
    refused = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(ServerUnavailableError, match="no Triton server answered after") as exc:
        _run(info, ["x"], lambda *_: refused, urls=("grpc://a:1",), retries=1000, deadline=3.0)
    clock = exc.value.clock
    assert 3.0 <= clock.now - 100 < 3.5  # waits never go past the deadline
    assert 3 < len(exc.value.log) < 100


@pytest.mark.parametrize(
    "intents, message",
    [
        (["ok", b"bytes"], "intent 1: intents are str, got bytes"),
        (["", "ok"], "intent 0: empty intent"),
        (["ok", " \t"], "intent 1: empty intent"),
        (["é" * (cfgmod.MAX_INTENT_BYTES // 2 + 1)], f"{cfgmod.MAX_INTENT_BYTES + 2} bytes, over the limit of {cfgmod.MAX_INTENT_BYTES} bytes per intent"),
    ],
)
def test_predict_round_refuses_what_the_server_refuses(registry, intents, message):
    info = base.model_info("vedit", _triton_json(registry))
    reps = Replicas(["grpc://a:1"])
    with pytest.raises(ClientError, match=message):
        base.PredictRound(info, intents, replicas=reps, stats=base.ClientStats(), timeout=1)
    # the limit is exactly inclusive
    base.PredictRound(info, ["x" * cfgmod.MAX_INTENT_BYTES], replicas=reps, stats=base.ClientStats(), timeout=1)


@pytest.mark.parametrize("url", ["http://bob:hunter2@h:8000", "grpcs://bob:hunter2@h:8001",
                                 "grpc://a:8001,http://bob:hunter2@b:8000", "http://:hunter2@h"])
def test_credentials_in_a_url_are_refused_and_never_echoed(url):
    with pytest.raises(ClientError) as exc:
        base.parse_urls(url)
    assert "hunter2" not in str(exc.value)
    assert "credentials in the URL are not used" in str(exc.value) and "token" in str(exc.value)


def test_redact_and_auth_headers(monkeypatch):
    assert base.redact("https://u:p@h:1") == "https://***@h:1"
    assert base.redact("grpc://h:1") == "grpc://h:1"
    assert base.auth_headers(None) == {}
    assert base.auth_headers(" tok\n") == {"authorization": "Bearer tok"}  # a token file's newline is dropped
    for bad in ("", "two words"):
        with pytest.raises(ClientError, match="API token"):
            base.auth_headers(bad)
    from vedit.client import connect

    monkeypatch.setenv(base.TOKEN_ENV, "from-env")
    assert connect("grpc://h:1")._headers == {"authorization": "Bearer from-env"}
    assert connect("grpc://h:1", token="given")._headers == {"authorization": "Bearer given"}
