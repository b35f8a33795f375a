"""The client's pure logic, shared by the sync and async twins (which only do I/O).

- :func:`parse_url` turns ``http://host:8000`` / ``grpc://host:8001`` (``https``/``grpcs`` for TLS)
  into an :class:`Endpoint`;
- :func:`model_info` reads the model's config (as Triton returns it in JSON) into a
  :class:`ModelInfo`: input name, tool outputs, and the registry snapshot the server was built
  with, so answers are typed by the server's registry, not the installed package's;
- :func:`intent_input` builds the request tensor, :func:`decode_result` turns a response into a
  :class:`~vedit.decoding.Prediction`;
- :class:`PredictRound` is the retry state machine of one ``predict`` call: which intents still
  need sending, how long to back off, when to give up;
- :func:`classify` turns whatever a transport raised into a :mod:`vedit.errors` exception.

One request per intent: Triton's dynamic batcher batches them on the server, its response cache
keys on the single intent, and a bad intent fails alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError, ToolCallError
from vedit.registry import Registry, default_registry, parse_call
from vedit.registry import registry_from_dict as _registry_from_raw

Protocol = Literal["http", "grpc"]

DEFAULT_MODEL = "vedit"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_SCHEMES = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}


@dataclass(frozen=True)
class TLS:
    """TLS settings. HTTP uses all of them; gRPC uses the three files (``insecure`` is HTTP only).

    ``ca_certs``: PEM root certificates to trust (default: the system's); ``certfile``/``keyfile``:
    a client certificate for mutual TLS; ``insecure``: skip server certificate checks (testing).
    """

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class Endpoint:
    protocol: Protocol
    address: str  # host:port, what tritonclient wants
    ssl: bool

    @property
    def url(self) -> str:
        scheme = {("http", False): "http", ("http", True): "https", ("grpc", False): "grpc", ("grpc", True): "grpcs"}
        return f"{scheme[(self.protocol, self.ssl)]}://{self.address}"


def is_url(target: str) -> bool:
    return urlsplit(str(target)).scheme in _SCHEMES


def parse_url(url: str) -> Endpoint:
    """``http[s]://host[:port]`` or ``grpc[s]://host[:port]``; the default ports are Triton's."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ClientError(
            f"{url!r}: unknown scheme; use http://HOST:8000 or grpc://HOST:8001 (https/grpcs for TLS)"
        )
    protocol, ssl = _SCHEMES[parts.scheme]
    if not parts.hostname:
        raise ClientError(f"{url!r}: no host; use e.g. {parts.scheme}://localhost:{DEFAULT_PORTS[protocol]}")
    if parts.path not in ("", "/") or parts.query:
        raise ClientError(f"{url!r}: give only scheme://host:port (choose the model with model=...)")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise ClientError(f"{url!r}: the port is not a number") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Endpoint(protocol=protocol, address=f"{host}:{port}", ssl=ssl)


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know about the served model, read once from its config."""

    name: str
    input_name: str
    tools: tuple[str, ...]
    max_batch_size: int
    max_intent_bytes: int | None
    registry: Registry = field(repr=False)


def model_info(name: str, config: dict[str, Any], *, registry: Registry | None = None) -> ModelInfo:
    """Read Triton's JSON model config; the registry defaults to the one the server carries."""
    params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
    if registry is None:
        snapshot = params.get("vedit_registry")
        registry = _registry_from_raw(json.loads(snapshot)) if snapshot else default_registry()
    try:
        input_name = config["input"][0]["name"]
        tools = tuple(o["name"] for o in config["output"])
    except (KeyError, IndexError, TypeError):
        raise ServerResponseError(f"model {name!r} has no string input / tool outputs; is it a vedit model?") from None
    unknown = [t for t in tools if t not in registry.tool_names]
    if unknown:
        raise ServerResponseError(
            f"model {name!r} answers tools {', '.join(unknown)} that the registry does not know"
        )
    limit = params.get("max_intent_bytes")
    return ModelInfo(
        name=name,
        input_name=input_name,
        tools=tools,
        max_batch_size=int(config.get("max_batch_size", 0)),
        max_intent_bytes=int(limit) if limit else None,
        registry=registry,
    )


def config_json(protocol: Protocol, answer: Any) -> dict[str, Any]:
    """HTTP returns the config itself; gRPC (``as_json=True``) wraps it in ``{"config": ...}``."""
    return answer["config"] if protocol == "grpc" else answer


def intent_input(module: Any, info: ModelInfo, intent: str) -> list[Any]:
    """The request tensor of one intent (``module``: ``tritonclient.http`` or ``.grpc``)."""
    if not isinstance(intent, str):
        raise ClientError(f"intents are str, got {type(intent).__name__}")
    inp = module.InferInput(info.input_name, [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[intent.encode("utf-8")]], dtype=np.object_))
    return [inp]


def check_intent(info: ModelInfo, index: int, intent: Any) -> None:
    """Refuse locally what the server would refuse (see :mod:`vedit.triton_repo.requests`).

    Besides saving a round trip, this keeps invalid requests away from Triton's response cache:
    Triton 2.51 caches an error response like an answer, so a repeated invalid request would get
    an empty "success" instead of its error.
    """
    if not isinstance(intent, str):
        raise ClientError(f"intent {index}: intents are str, got {type(intent).__name__}")
    if not intent.strip():
        raise ClientError(f"intent {index}: empty intent; the server answers only non-empty intents")
    size = len(intent.encode("utf-8"))
    if info.max_intent_bytes is not None and size > info.max_intent_bytes:
        raise ClientError(
            f"intent {index}: {size} bytes, over the server's limit of {info.max_intent_bytes} bytes per intent"
        )


def decode_result(info: ModelInfo, intent: str, result: Any):
    """A :class:`~vedit.decoding.Prediction` from one response, typed by the registry."""
    from vedit.decoding import Prediction

    raw: dict[str, str] = {}
    for tool in info.tools:
        arr = result.as_numpy(tool)
        if arr is None or arr.size != 1:
            raise ServerResponseError(
                f"the server's answer has no value for tool {tool!r} (an error response of an earlier "
                f"identical request kept by Triton's response cache answers like this)"
            )
        value = arr.reshape(-1)[0]
        raw[tool] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    try:
        calls = {t: parse_call(info.registry.tool(t), raw[t]) for t in info.tools}
    except ToolCallError as exc:
        raise ServerResponseError(f"the server answered an invalid call for {exc.tool}: {exc.reason}") from None
    # decoding statistics stay on the server (a cached answer has none of its own)
    return Prediction(intent=intent, calls=calls, raw=raw, stats=None)


# -- errors ------------------------------------------------------------------------------------
_UNAVAILABLE_STATUS = {"StatusCode.UNAVAILABLE", "503", "502", "504"}
_TIMEOUT_STATUS = {"StatusCode.DEADLINE_EXCEEDED", "408"}


def classify(exc: BaseException, endpoint: Endpoint, *, timeout: float) -> ClientError:
    """The vedit exception for a transport failure. :class:`ServerUnavailableError` is retryable
    unless its ``retryable`` attribute is False (a timeout: the server may be busy, and sending
    the request again would only add to its load)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        msg = exc.message() or str(exc)
        if status in _TIMEOUT_STATUS or "timed out" in msg.lower() or "deadline" in msg.lower():
            return _timeout(endpoint, timeout)
        if status in _UNAVAILABLE_STATUS:
            return _unavailable(endpoint, msg)
        return ServerResponseError(f"{endpoint.url} refused the request: {msg}")
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("Timeout", "ServerTimeoutError"):
        return _timeout(endpoint, timeout)
    if isinstance(exc, (OSError, EOFError)):
        return _unavailable(endpoint, f"{type(exc).__name__}: {exc}")
    return ClientError(f"{endpoint.url}: unexpected client failure {type(exc).__name__}: {exc}")


def _unavailable(endpoint: Endpoint, why: str) -> ServerUnavailableError:
    err = ServerUnavailableError(
        f"no Triton server answers at {endpoint.url} ({why}); start one with `vedit triton serve REPO`"
    )
    err.retryable = True  # type: ignore[attr-defined]
    return err


def _timeout(endpoint: Endpoint, timeout: float) -> ServerUnavailableError:
    err = ServerUnavailableError(f"{endpoint.url} did not answer within {timeout:g} s; raise timeout= or check the server")
    err.retryable = False  # type: ignore[attr-defined]
    return err


def retryable(err: ClientError) -> bool:
    return isinstance(err, ServerUnavailableError) and getattr(err, "retryable", False)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff, only while nothing answers at the URL."""

    retries: int = 2
    backoff: float = 0.1
    max_backoff: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), self.max_backoff)


def backoff_or_raise(
    exc: BaseException, attempt: int, *, policy: RetryPolicy, endpoint: Endpoint, timeout: float
) -> float:
    """The delay before retry number ``attempt + 1`` after ``exc``, or the vedit error to raise."""
    err = classify(exc, endpoint, timeout=timeout)
    if not retryable(err):
        raise err
    if attempt >= policy.retries:
        raise ServerUnavailableError(f"{err} (gave up after {attempt + 1} attempts)") from None
    return policy.delay(attempt)


class PredictRound:
    """The state of one ``predict(intents)``: answered, failed, still to send.

    The twins loop ``while todo := round.pending(): outcomes = send(todo); sleep(round.record(outcomes))``
    and return ``round.predictions()``; only the intents whose server was unavailable are resent.
    """

    def __init__(self, info: ModelInfo, intents: list[str], *, policy: RetryPolicy, endpoint: Endpoint,
                 timeout: float):
        self.info = info
        self.intents = list(intents)
        for k, intent in enumerate(self.intents):
            check_intent(info, k, intent)
        self._results: list[Any] = [None] * len(self.intents)
        self._todo = list(range(len(self.intents)))
        self._attempt = 0
        self._retry = dict(policy=policy, endpoint=endpoint, timeout=timeout)

    def pending(self) -> list[int]:
        return list(self._todo)

    def record(self, outcomes: list[tuple[int, Any, BaseException | None]]) -> float:
        """Store ``(index, result, error)`` of one send; returns the backoff before resending.

        Raises the first error that is not "unavailable", or the unavailability once retries are
        spent.
        """
        retry: list[int] = []
        delay = 0.0
        for i, result, error in outcomes:
            if error is None:
                self._results[i] = decode_result(self.info, self.intents[i], result)
                continue
            delay = backoff_or_raise(error, self._attempt, **self._retry)
            retry.append(i)
        self._todo = retry
        if retry:
            self._attempt += 1
        return delay

    def predictions(self) -> list[Any]:
        if self._todo:
            raise ClientError("predict round is not finished")
        return list(self._results)


__all__ = [
    "DEFAULT_MODEL",
    "Endpoint",
    "ModelInfo",
    "PredictRound",
    "RetryPolicy",
    "TLS",
    "backoff_or_raise",
    "check_intent",
    "classify",
    "config_json",
    "decode_result",
    "intent_input",
    "is_url",
    "model_info",
    "parse_url",
]
