"""A real tritonserver (CPU) serving a cpu-profile repository of the tiny T5 export."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from vedit.client import connect
from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError, TritonRepoError
from vedit.serving import TritonServer
from vedit.triton_repo import build_repository
from vedit.triton_repo.config import MAX_INTENT_BYTES

pytestmark = [pytest.mark.triton, pytest.mark.slow]

MODEL = "vedit"


def _http(served):
    return httpclient.InferenceServerClient(served.http.removeprefix("http://"))


def _grpc(served):
    return grpcclient.InferenceServerClient(served.grpc.removeprefix("grpc://"))


def _stats(served) -> dict:
    """Statistics are an admin API: Triton's own port, with the server's admin key (the front refuses them)."""
    server = served.server
    admin = httpclient.InferenceServerClient(server.triton_http_url.removeprefix("http://"))
    return admin.get_inference_statistics(MODEL, headers=server.admin_headers)["model_stats"][0]


def _intent_input(module, values, datatype="BYTES", shape=None):
    arr = np.array(values, dtype=np.object_ if datatype == "BYTES" else np.int32)
    inp = module.InferInput("INTENT", list(shape or arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def test_server_is_ready_with_the_profiles_config(triton_served):
    client = _http(triton_served)
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    cfg = client.get_model_config(MODEL)
    assert cfg["backend"] == "python"
    assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert cfg["response_cache"]["enable"] is True
    assert [o["name"] for o in cfg["output"]] == ["adjust", "selective_adjust", "filter"]


def test_raw_outputs_are_the_runtimes_json(triton_served):
    from vedit.decoding import Predictor

    intent = triton_served.intents[0]
    expected = Predictor.load(triton_served.export_dir, threads=1).predict([intent])[0]
    result = _grpc(triton_served).infer(MODEL, [_intent_input(grpcclient, [[intent.encode()]])])
    for tool in ("adjust", "selective_adjust", "filter"):
        assert result.as_numpy(tool).shape == (1, 1)
        assert result.as_numpy(tool)[0, 0].decode() == expected.raw[tool]


def test_several_intents_in_one_request(triton_served):
    from vedit.decoding import Predictor

    intents = triton_served.intents[:3]
    expected = Predictor.load(triton_served.export_dir, threads=1).predict(intents)
    result = _http(triton_served).infer(MODEL, [_intent_input(httpclient, [[i.encode()] for i in intents])])
    assert [v.decode() for v in result.as_numpy("filter")[:, 0]] == [p.raw["filter"] for p in expected]


# Model-level refusals get a different payload per protocol: Triton's response cache keeps an
# error response like an answer (see test_repeated_invalid_request_and_the_cache).
BAD_REQUESTS = [
    ("wrong dtype", lambda m, p: [_intent_input(m, [[7]], "INT32")], "expects 'BYTES'"),
    ("missing input", lambda m, p: [], "missing required input"),
    ("wrong shape", lambda m, p: [_intent_input(m, [[b"a", b"b"]])], "unexpected shape"),
    ("empty string", lambda m, p: [_intent_input(m, [[b"" if p == "http" else b" "]])], "empty intent"),
    ("oversized", lambda m, p: [_intent_input(m, [[p.encode() * (MAX_INTENT_BYTES // 4 + 1)]])],
     f"over the limit of {MAX_INTENT_BYTES} bytes"),
    ("non-UTF-8", lambda m, p: [_intent_input(m, [[f"golden hour {p}".encode() + b"\xff\xfe"]])],
     "not valid UTF-8"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("what, inputs, message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_an_error_and_the_server_stays_ready(triton_served, protocol, what, inputs, message):
    module, client = (httpclient, _http(triton_served)) if protocol == "http" else (grpcclient, _grpc(triton_served))
    with pytest.raises(InferenceServerException) as exc:
        client.infer(MODEL, inputs(module, protocol))
    assert message in exc.value.message()
    assert str(exc.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.infer(MODEL, [_intent_input(module, [[b"golden hour"]])]).as_numpy("filter").shape == (1, 1)


def test_repeated_invalid_request_and_the_cache(triton_served):
    """Triton 2.51 caches a model's error response as an answer without outputs, so the same invalid
    request, repeated, gets an empty "success". The vedit client never sends such a request
    (it checks intents first) and reports an answer without outputs as a server error."""
    from vedit.client import base

    with pytest.raises(ClientError, match="empty intent"):
        connect(triton_served.http).predict(["\n\n"])
    client = _http(triton_served)
    bad = [_intent_input(httpclient, [[b"\n\n"]])]
    with pytest.raises(InferenceServerException, match="empty intent"):
        client.infer(MODEL, bad)
    # Triton 2.51 (the version vedit pins) answers the repeat from its cache, without outputs; a
    # Triton that stops caching errors fails here, and the note on it in docs/how-to/serve-triton.md must go.
    again = client.infer(MODEL, bad)
    assert again.as_numpy("adjust") is None
    info = base.model_info(MODEL, client.get_model_config(MODEL))
    with pytest.raises(ServerResponseError, match="no value for tool 'adjust'"):
        base.decode_result(info, "\n\n", again)


def _burst(served, intents, concurrency=16):
    """Send every intent as its own request, ``concurrency`` in flight (raw async gRPC client)."""
    import tritonclient.grpc.aio as aio

    async def main():
        client = aio.InferenceServerClient(served.grpc.removeprefix("grpc://"))
        slots = asyncio.Semaphore(concurrency)

        async def one(value):
            async with slots:
                try:
                    return await client.infer(MODEL, [_intent_input(grpcclient, [[value]])])
                except InferenceServerException as exc:
                    return exc

        try:
            return await asyncio.gather(*(one(v) for v in intents))
        finally:
            await client.close()

    return asyncio.run(main())


def _batch_counts(stats) -> dict[int, int]:
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def test_concurrent_requests_are_batched_and_bad_ones_fail_alone(triton_served):
    before = _batch_counts(_stats(triton_served))
    good = [f"{triton_served.intents[i % len(triton_served.intents)]} burst {i}".encode() for i in range(40)]
    bad = {5: b"\t", 17: b"burst \xc3\x28", 29: b"y" * (MAX_INTENT_BYTES + 10)}
    values = [bad.get(i, v) for i, v in enumerate(good)]
    results = _burst(triton_served, values)
    for i, r in enumerate(results):
        if i in bad:
            assert isinstance(r, InferenceServerException), i
            assert str(r.status()) == "StatusCode.INVALID_ARGUMENT"
        else:
            assert not isinstance(r, Exception), r
            assert r.as_numpy("adjust").shape == (1, 1)
    after = _batch_counts(_stats(triton_served))
    batched = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(batched.values()) > 0
    assert any(size > 1 and n > 0 for size, n in batched.items()), batched


def test_repeated_intent_is_served_from_the_cache(triton_served):
    intent = "cache me 🌅"
    client = _http(triton_served)
    before = _stats(triton_served)["inference_stats"]
    first = client.infer(MODEL, [_intent_input(httpclient, [[intent.encode()]])])
    second = client.infer(MODEL, [_intent_input(httpclient, [[intent.encode()]])])
    after = _stats(triton_served)["inference_stats"]
    assert int(after["cache_miss"]["count"]) >= int(before["cache_miss"]["count"]) + 1
    assert int(after["cache_hit"]["count"]) >= int(before["cache_hit"]["count"]) + 1
    for tool in ("adjust", "selective_adjust", "filter"):
        assert first.as_numpy(tool)[0, 0] == second.as_numpy(tool)[0, 0]


def test_cli_serve_answers_then_stops_on_sigterm(triton_served, tmp_path):
    """``vedit triton serve`` in a subprocess: endpoints printed, answers, SIGTERM stops it cleanly,
    and a client pointed at the stopped server fails fast with a clear error."""
    code = "from vedit.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "triton", "serve", str(triton_served.repo), "--http-port", "0", "--grpc-port", "0",
         "--metrics-port", "0", "--host", "127.0.0.1", "--log", str(tmp_path / "log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        urls = {}
        while len(urls) < 3:
            line = proc.stdout.readline()
            assert line, f"serve exited early: {proc.stderr.read()}"
            kind, url = line.split()
            urls[kind] = url
        with connect(urls["grpc"]) as client:
            assert client.predict(["golden hour"])[0].to_json() == \
                connect(triton_served.grpc).predict(["golden hour"])[0].to_json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "stopped (exit code 0)" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for url in (urls["http"], urls["grpc"]):
        with pytest.raises(ServerUnavailableError) as exc:
            connect(url, retries=2, backoff=0.01).predict(["golden hour"])
        assert url in str(exc.value) and "connection refused" in str(exc.value)
        assert "3 attempt" in str(exc.value)


def test_model_that_cannot_load_fails_start_with_the_reason(tiny_export, tmp_path):
    repo = build_repository(tiny_export, out=tmp_path / "repo")
    (repo / "vedit" / "1" / "export" / "registry.json").unlink()
    with pytest.raises(TritonRepoError) as exc:
        with TritonServer(repo):
            pass
    assert "vedit runtime cannot load" in str(exc.value)
    assert "registry.json" in str(exc.value)


def test_server_refuses_a_directory_that_is_not_a_repository(tmp_path):
    with pytest.raises(TritonRepoError, match="not found"):
        TritonServer(tmp_path / "nope")
    with pytest.raises(TritonRepoError, match="no <model>/config.pbtxt"):
        TritonServer(tmp_path)


def test_a_model_built_with_drafts_answers_as_the_runtime(triton_served, tmp_path):
    """``build_repository(..., draft=True)`` served by the real tritonserver: loaded beside the shared
    model through Triton's repository API (its own port, the admin key; the shared model is left
    alone), its raw outputs for every intent are the runtime's without drafts, then it is unloaded."""
    import time

    from google.protobuf import json_format

    from vedit.decoding import Predictor
    from vedit.triton_repo import config as cfgmod

    name = "vedit_draft"
    repo = build_repository(triton_served.export_dir, profile="cpu", out=tmp_path / "repo", name=name, draft=True)
    model_dir = repo / name
    cfg = cfgmod.parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.parameters[cfgmod.PARAM_DRAFT].string_value == "true"
    files = {f"file:{p.relative_to(model_dir)}": p.read_bytes()
             for p in model_dir.rglob("*") if p.is_file() and p.name != "config.pbtxt"}
    server = triton_served.server
    admin = httpclient.InferenceServerClient(server.triton_http_url.removeprefix("http://"))
    admin.load_model(name, headers=server.admin_headers, files=files,
                     config=json_format.MessageToJson(cfg, preserving_proto_field_name=True))
    try:
        assert admin.is_model_ready(name)
        intents, size = triton_served.intents, cfg.max_batch_size
        expected = Predictor.load(triton_served.export_dir, threads=1).predict(intents)
        for start in range(0, len(intents), size):
            batch = [_intent_input(grpcclient, [[i.encode()] for i in intents[start : start + size]])]
            result = _grpc(triton_served).infer(name, batch)
            for tool in ("adjust", "selective_adjust", "filter"):
                got = [x.decode() for x in result.as_numpy(tool)[:, 0]]
                assert got == [p.raw[tool] for p in expected[start : start + size]]
    finally:
        admin.unload_model(name, headers=server.admin_headers)
        deadline = time.monotonic() + 60  # the server is unready until the unloaded stubs have gone
        while not admin.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not admin.is_model_ready(name) and _http(triton_served).is_server_ready()
