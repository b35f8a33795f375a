"""Issue 14: failover across replicas, for real. Two tritonserver processes serve the same
repository; a stream of distinct intents goes to both; one server is stopped mid-stream and started
again. Every intent must be answered exactly once, as the in-process runtime answers it."""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from vedit.client import connect
from vedit.decoding import Predictor
from vedit.predict_cli import predict as predict_command
from vedit.serving import TritonServer
from vedit.serving.server import free_port

from .streaming import Stream, distinct_intents, figures

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _replica(repo, ports: dict[str, int], log) -> TritonServer:
    return TritonServer(repo, http_port=ports["http"], grpc_port=ports["grpc"], metrics_port=ports["metrics"],
                        log_path=log, front=False)  # gRPC only: no nginx needed


def test_stream_survives_a_replica_stopping_and_coming_back(triton_served, tmp_path, record_property):
    ports = {k: free_port() for k in ("http", "grpc", "metrics")}
    b = _replica(triton_served.repo, ports, tmp_path / "b-first.log").__enter__()
    b_again = None
    a_url, b_url = triton_served.grpc, b.urls["grpc"]
    started = time.monotonic()
    try:
        with connect([a_url, b_url], cooldown=0.5, timeout=10, deadline=30) as client:
            stream = Stream(client, distinct_intents(400, "failover-"), chunk=3, pace=0.3)
            by = client.stats.answered_by
            # both up: requests spread over both
            stream.until(lambda: by.get(a_url, 0) >= 4 and by.get(b_url, 0) >= 4, "answers from both replicas")
            # B stops (SIGTERM, Triton drains what it has) while the stream goes on
            stopper = threading.Thread(target=b.__exit__, args=(None, None, None))
            stopper.start()
            mark = len(stream.sent)
            stream.until(lambda: not stopper.is_alive() and len(stream.sent) >= mark + 12, "stop of replica B")
            down_from = by.get(b_url, 0)
            assert client.stats.retried >= 1 and client.replicas.snapshot()[1].last_failure  # B was tried, failed
            # B starts again on the same ports (from this thread: the server dies with the thread that
            # started it) and is used again once it answers
            b_again = _replica(triton_served.repo, ports, tmp_path / "b-again.log").start()
            stream.until(lambda: by.get(b_url, 0) >= down_from + 4, "answers from the restarted replica B",
                         timeout=120)
            stats = client.stats.as_dict()
            states = client.replicas.snapshot()
    finally:
        b.__exit__(None, None, None)
        if b_again is not None:
            b_again.__exit__(None, None, None)
    took = time.monotonic() - started
    stream.check_against(triton_served.export_dir)
    line = f"failover: {figures(stats)}; {took:.1f} s; B marked down {states[1].marked_down} time(s)"
    print(line)
    record_property("failover", line)
    assert stats["sent"] == stats["answered"] == len(stream.sent) == len(stream.answers)
    assert stats["lost"] == 0
    assert stats["failovers"] >= 1 and stats["retried"] >= stats["failovers"]
    assert states[0].marked_down == 0  # A never failed
    assert states[1].marked_down >= 1


def test_cli_spreads_over_the_replicas_of_a_comma_list(triton_served):
    """``vedit predict --url A,B`` with B down: the answers come from A, same as in-process."""
    intents = distinct_intents(4, "cli-")
    dead = f"grpc://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(predict_command, ["--url", f"{dead},{triton_served.grpc}", "--json", *intents])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.output.splitlines()]
    reference = Predictor.load(triton_served.export_dir, threads=1).predict(intents)
    assert got == [r.to_json() for r in reference]
