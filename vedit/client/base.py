"""The client's pure logic, shared by the sync and async twins (which only do I/O).

- :func:`parse_urls` turns ``http://host:8000`` / ``grpc://host:8001`` (``https``/``grpcs`` for
  TLS), one URL or several replicas (a list, or ``"URL,URL"``), into :class:`Endpoint` objects;
- :func:`model_info` reads the model's config (as Triton returns it in JSON) into a
  :class:`ModelInfo`: input name, tool outputs, and the registry snapshot the server was built
  with, so answers are typed by the server's registry, not the installed package's;
- :func:`intent_input` builds the request tensor, :func:`decode_result` turns a response into a
  :class:`~vedit.decoding.Prediction`;
- :func:`classify` sorts whatever a transport raised into *transient* (the server or the path to
  it failed: retry, elsewhere if possible) and *refused* (the request itself is wrong: fail now);
- :class:`PredictRound` keeps one ``predict`` call's state across attempts: which intents are
  answered, which still need sending, what each replica answered, the counters of
  :class:`ClientStats`. The retry loop itself is tenacity's (:mod:`vedit.client.retry`).

One request per intent: Triton's dynamic batcher batches them on the server, its response cache
keys on the single intent, and a bad intent fails alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from vedit.errors import ClientError, ServerResponseError, ServerUnavailableError, ToolCallError
from vedit.intents import intent_problem
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


def is_url(target: Any) -> bool:
    """A server URL, a ``"URL,URL"`` string or a list of URLs (anything else: an export dir)."""
    if isinstance(target, (list, tuple)):
        return bool(target) and all(isinstance(t, str) and is_url(t) for t in target)
    return isinstance(target, str) and urlsplit(target.split(",")[0].strip()).scheme in _SCHEMES


TOKEN_ENV = "VEDIT_API_TOKEN"


def redact(url: str) -> str:
    """``url`` without the password of a ``user:pass@`` part (for messages)."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"***@{host}").geturl()
    except ValueError:
        return "(unparsable URL)"


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer-token header the vedit front checks (nothing when there is no token)."""
    if token is None:
        return {}
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise ClientError("the API token is empty or contains white space; give the token itself")
    return {"authorization": f"Bearer {token}"}  # lower case: gRPC metadata keys must be


def parse_url(url: str) -> Endpoint:
    """``http[s]://host[:port]`` or ``grpc[s]://host[:port]``; the default ports are Triton's.

    A ``user:pass@`` part is refused, never dropped silently nor echoed: the vedit front takes a
    bearer token (``token=``), and a password in a URL ends up in shell histories and logs."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ClientError(f"{redact(url)!r}: credentials in the URL are not used; remove them and pass the API "
                          f"token instead (token=..., ${TOKEN_ENV}, or `vedit predict --token-file`)")
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


def parse_urls(target: str | Sequence[str]) -> list[Endpoint]:
    """One URL, a list of URLs, or ``"URL,URL"``: the replicas, in order, all of one protocol."""
    items = target.split(",") if isinstance(target, str) else list(target)
    urls = [str(u).strip() for u in items]
    if not urls or any(not u for u in urls):
        shown = ",".join(redact(u) for u in urls)
        raise ClientError(f"{shown!r}: empty server URL in the list; give e.g. grpc://a:8001,grpc://b:8001")
    endpoints = [parse_url(u) for u in urls]
    seen: set[Endpoint] = set()
    for ep in endpoints:
        if ep in seen:
            raise ClientError(f"{ep.url} is listed twice; give each replica once")
        seen.add(ep)
    if len({ep.protocol for ep in endpoints}) > 1:
        raise ClientError("the replicas mix http and grpc URLs; use one protocol for all of them")
    return endpoints


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


def grpc_channel_args() -> list[tuple[str, Any]]:
    """gRPC channel options: tritonclient's defaults, plus a short reconnect backoff so that a
    replica which comes back is reached within a second or two (gRPC's default waits up to 120 s)."""
    return [
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.keepalive_time_ms", 2**31 - 1),
        ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.keepalive_permit_without_calls", False),
        ("grpc.http2.max_pings_without_data", 2),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def config_json(protocol: Protocol, answer: Any) -> dict[str, Any]:
    """HTTP returns the config itself; gRPC (``as_json=True``) wraps it in ``{"config": ...}``."""
    return answer["config"] if protocol == "grpc" else answer


def intent_input(module: Any, info: ModelInfo, intent: str, copies: int = 1) -> list[Any]:
    """The request tensor of one intent (``module``: ``tritonclient.http`` or ``.grpc``).

    ``copies`` > 1 sends the intent in that many rows (the answer is row 0): a retry's request
    then differs from the failed one, so Triton's response cache cannot hand back the failure it
    stored for the first (Triton 2.51 caches error responses as empty answers).
    """
    if not isinstance(intent, str):
        raise ClientError(f"intents are str, got {type(intent).__name__}")
    inp = module.InferInput(info.input_name, [copies, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[intent.encode("utf-8")]] * copies, dtype=np.object_))
    return [inp]


def check_intent(info: ModelInfo, index: int, intent: Any) -> None:
    """Refuse locally what the server would refuse, by the same rule (:mod:`vedit.intents`) and the
    server's own limit, with the message the in-process client gives.

    Besides saving a round trip, this keeps invalid requests away from Triton's response cache:
    Triton 2.51 caches an error response like an answer, so a repeated invalid request would get
    an empty "success" instead of its error.
    """
    if isinstance(intent, (bytes, bytearray)):  # the rule accepts UTF-8 bytes; the client API takes str
        raise ClientError(f"intent {index}: intents are str, got {type(intent).__name__}")
    problem = intent_problem(intent, info.max_intent_bytes)
    if problem is not None:
        raise ClientError(f"intent {index}: {problem}")


class CachedErrorAnswer(ServerResponseError):
    """An answer without values: Triton's response cache replaying a failure (transient)."""


def decode_result(info: ModelInfo, intent: str, result: Any, copies: int = 1):
    """A :class:`~vedit.decoding.Prediction` from one response (row 0), typed by the registry."""
    from vedit.decoding import Prediction

    raw: dict[str, str] = {}
    for tool in info.tools:
        arr = result.as_numpy(tool)
        if arr is None or arr.size != copies:
            raise CachedErrorAnswer(
                f"the server's answer has no value for tool {tool!r} (Triton's response cache answers like "
                f"this for an identical request that failed earlier)"
            )
        value = arr.reshape(-1)[0]
        raw[tool] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    try:
        calls = {t: parse_call(info.registry.tool(t), raw[t]) for t in info.tools}
    except ToolCallError as exc:
        raise ServerResponseError(f"the server answered an invalid call for {exc.tool}: {exc.reason}") from None
    # decoding statistics stay on the server (a cached answer has none of its own)
    return Prediction(intent=intent, calls=calls, raw=raw, stats=None)


# -- failures ----------------------------------------------------------------------------------
#: gRPC codes and HTTP statuses that say "the server (or the way to it) failed, not the request".
_TRANSIENT_GRPC = {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "ABORTED", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
_TIMEOUT_STATUS = {"StatusCode.DEADLINE_EXCEEDED", "408"}
_TRANSIENT_HTTP_4XX = {408, 429}
#: Triton's words for a model known by name but with no version loaded right now.
_MODEL_AWAY = "has no available versions"
#: Exception class names (anywhere in the MRO) of dropped connections in aiohttp / geventhttpclient.
_CONNECTION_ERRORS = {"ClientConnectionError", "ClientPayloadError", "HTTPException"}


@dataclass(frozen=True)
class Failure:
    """One failed attempt, sorted: ``transient`` ones are retried, the others fail the call."""

    transient: bool
    reason: str  # short, for messages: "connection refused", "stub 'vedit_0_0' not healthy", ...
    message: str  # what the server or the transport said
    error: ClientError | None = None  # what to raise when it is not transient


def _short(msg: str) -> str:
    low = msg.lower()
    if "stub process" in low and "not healthy" in low:
        name = msg.split("'")[1] if msg.count("'") >= 2 else "?"
        return f"model stub {name!r} not healthy"
    if "connection refused" in low or "errno 111" in low:
        return "connection refused"
    if "failed to connect" in low or "connect failed" in low or "connect call failed" in low:
        return "cannot connect (timed out)" if "timed out" in low else "cannot connect"
    if "reset" in low:
        return "connection reset"
    if "socket closed" in low or "connection closed" in low or "disconnected" in low or "eof" in low:
        return "connection closed"
    first = msg.strip().splitlines()[0] if msg.strip() else "no message"
    return first[:120]


def _http_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def classify(exc: BaseException, *, timeout: float, url: str = "the server") -> Failure:
    """Sort what a transport raised. Prediction is idempotent, so every failure of the server or of
    the way to it is transient (retried); only the request's own faults (400-class, an unknown
    model, an invalid answer) and client bugs are not."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, CachedErrorAnswer):
        return Failure(True, "empty answer replayed by the response cache", str(exc))
    if isinstance(exc, ClientError):
        return Failure(False, str(exc), str(exc), exc)
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        msg = exc.message() or str(exc)
        low = msg.lower()
        if status in _TIMEOUT_STATUS or (not status and ("timed out" in low or "deadline exceeded" in low)):
            return Failure(True, f"no answer within {timeout:g} s", msg)
        if "stub process" in low and "not healthy" in low:
            return Failure(True, _short(msg), msg)
        if _MODEL_AWAY in low or "not ready" in low:  # loading, unloading or being reloaded
            return Failure(True, "model not loaded (server starting, stopping or reloading it)", msg)
        page = low.startswith("an exception occurred in the client while decoding")  # a proxy's HTML page
        if page and status.isdigit():
            msg = f"HTTP {status} {_http_phrase(int(status))}".rstrip()
        refused = ServerResponseError(f"{url} refused the request: {' '.join(msg.split())}")
        if status.startswith("StatusCode."):
            transient = status.split(".", 1)[1] in _TRANSIENT_GRPC
            return Failure(transient, _short(msg), msg, None if transient else refused)
        if status.isdigit():
            code = int(status)
            transient = code >= 500 or code in _TRANSIENT_HTTP_4XX
            reason = msg if page else f"HTTP {code}: {_short(msg)}"
            return Failure(transient, reason, msg, None if transient else refused)
        # no status: tritonclient wrapping a transport error
        reason = _short(msg)
        transient = reason.startswith(("connection ", "cannot connect"))
        return Failure(transient, reason, msg, None if transient else refused)
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("Timeout", "ServerTimeoutError"):
        return Failure(True, f"no answer within {timeout:g} s", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Failure(True, "connection refused", str(exc))
    if isinstance(exc, ConnectionResetError):
        return Failure(True, "connection reset", str(exc))
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (OSError, EOFError)) or names & _CONNECTION_ERRORS:
        return Failure(True, _short(f"{type(exc).__name__}: {exc}"), f"{type(exc).__name__}: {exc}")
    why = f"unexpected client failure {type(exc).__name__}: {exc}"
    return Failure(False, why, str(exc), ClientError(f"{url}: {why}"))


class RetryableFailure(ClientError):
    """Raised inside the retry loop for an attempt that should be retried (never escapes it)."""


# -- counters ----------------------------------------------------------------------------------
@dataclass
class ClientStats:
    """What a client did since it was made: for tests, logs and closing notes.

    ``sent``: intents asked for (one request each); ``answered``: of those, answered;
    ``retried``: requests sent again after a transient failure; ``failovers``: of those, sent to
    another replica than the one that failed; ``lost``: intents a ``predict`` call raised without
    answering; ``attempts``: requests put on the wire, retries included;
    ``answered_by``: answers per replica URL.
    """

    sent: int = 0
    answered: int = 0
    retried: int = 0
    failovers: int = 0
    lost: int = 0
    attempts: int = 0
    answered_by: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def answered_at(self, url: str) -> None:
        with self._lock:
            self.answered += 1
            self.answered_by[url] = self.answered_by.get(url, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"sent": self.sent, "answered": self.answered, "retried": self.retried,
                    "failovers": self.failovers, "lost": self.lost, "attempts": self.attempts,
                    "answered_by": dict(self.answered_by)}


# -- one call's attempts -----------------------------------------------------------------------
class Attempts:
    """The failures of one call across its attempts: which replica said what, and when the first
    transient failure happened (the retry deadline counts from there)."""

    def __init__(self, replicas, *, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.replicas = replicas
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.first_failure: float | None = None
        self.failures: dict[str, str] = {}  # replica URL -> its last transient failure in this call
        self._lock = threading.Lock()

    def failed(self, k: int, exc: BaseException) -> Failure:
        """Classify one failed attempt on replica ``k``; a transient one marks the replica down."""
        url = self.replicas.urls[k]
        failure = classify(exc, timeout=self.timeout, url=url)
        if failure.transient:
            self.replicas.failed(k, failure.reason)
            with self._lock:
                self.failures[url] = failure.reason
                if self.first_failure is None:
                    self.first_failure = self.clock()
        return failure

    def raise_for(self, k: int, exc: BaseException) -> None:
        """For a single call (not ``predict``): raise what the retry loop should see."""
        failure = self.failed(k, exc)
        if failure.transient:
            raise RetryableFailure(f"{self.replicas.urls[k]}: {failure.reason}") from exc
        raise failure.error from None

    def give_up(self, attempts: int, *, unanswered: int | None = None) -> ServerUnavailableError:
        """The one-line error once retries are spent."""
        elapsed = self.clock() - self.started
        tried = ", ".join(f"{url} ({why})" for url, why in self.failures.items()) or "no replica"
        what = "no Triton server answered" if len(self.replicas) == 1 else "no replica answered"
        left = f" ({unanswered} intent(s) unanswered)" if unanswered else ""
        return ServerUnavailableError(
            f"{what} after {attempts} attempt(s) in {elapsed:.1f} s{left}: tried {tried}; "
            f"check the server{'s' if len(self.replicas) > 1 else ''} (`vedit triton serve REPO` starts one) "
            f"or raise deadline="
        )


class PredictRound:
    """One ``predict(intents)``: answered, refused, still to send, across attempts.

    The twins run it inside tenacity's loop (:func:`vedit.client.retry.retrying_args`)::

        rnd = PredictRound(info, intents, replicas=..., stats=..., timeout=...)
        def attempt():
            for i in rnd.pending():      # concurrently, in the twin's own way
                k = replicas.pick(); rows = rnd.copies(i)
                ... send intent_input(module, info, rnd.intents[i], rows) to replica k ...
                rnd.observe(i, k, result, error)     # any thread
            return rnd.end_attempt()     # the predictions, or RetryableFailure, or the refusal

    Only intents whose attempt failed transiently are sent again; an answered intent never is,
    so each intent is answered exactly once.
    """

    def __init__(self, info: ModelInfo, intents: list[str], *, replicas, stats: ClientStats, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.info = info
        self.intents = list(intents)
        for k, intent in enumerate(self.intents):
            check_intent(info, k, intent)
        self.replicas = replicas
        self.stats = stats
        self.attempts = Attempts(replicas, timeout=timeout, clock=clock)
        n = len(self.intents)
        self._results: list[Any] = [None] * n
        self._todo = set(range(n))
        self._tries = [0] * n
        self._last: list[int | None] = [None] * n
        self._refusal: ClientError | None = None
        self._rounds = 0
        self._lock = threading.Lock()
        stats.add(sent=n)

    def pending(self) -> list[int]:
        with self._lock:
            return sorted(self._todo)

    def copies(self, i: int) -> int:
        """Rows to send intent ``i`` in: one more per failed attempt (see :func:`intent_input`)."""
        limit = max(1, self.info.max_batch_size)
        return 1 + self._tries[i] % limit

    def observe(self, i: int, k: int, result: Any, error: BaseException | None, copies: int = 1) -> None:
        """The outcome of sending intent ``i`` to replica ``k`` (thread-safe)."""
        url = self.replicas.urls[k]
        if error is None:
            try:
                prediction = decode_result(self.info, self.intents[i], result, copies)
            except ClientError as exc:
                error = exc
        with self._lock:
            self._tries[i] += 1
            retry = self._tries[i] > 1
            moved = retry and self._last[i] is not None and self._last[i] != k
            self._last[i] = k
        self.stats.add(attempts=1, retried=int(retry), failovers=int(moved))
        if error is None:
            with self._lock:
                if i not in self._todo:  # never: answered intents are not resent
                    raise ClientError(f"intent {i} answered twice; this is a bug in vedit.client")
                self._results[i] = prediction
                self._todo.discard(i)
            self.replicas.succeeded(k)
            self.stats.answered_at(url)
            return
        failure = self.attempts.failed(k, error)
        if not failure.transient:
            with self._lock:
                if self._refusal is None:
                    self._refusal = failure.error

    def end_attempt(self) -> list[Any]:
        """After every pending intent was observed once: the predictions, or what to raise."""
        with self._lock:
            self._rounds += 1
            refusal, todo = self._refusal, len(self._todo)
        if refusal is not None:
            self.stats.add(lost=todo)
            raise refusal
        if todo:
            raise RetryableFailure(f"{todo} intent(s) unanswered after attempt {self._rounds}")
        return list(self._results)

    def give_up(self, attempts: int) -> ServerUnavailableError:
        with self._lock:
            todo = len(self._todo)
        self.stats.add(lost=todo)
        return self.attempts.give_up(attempts, unanswered=todo if todo < len(self.intents) else None)


__all__ = [
    "DEFAULT_MODEL",
    "Attempts",
    "CachedErrorAnswer",
    "ClientStats",
    "Endpoint",
    "Failure",
    "ModelInfo",
    "PredictRound",
    "TOKEN_ENV",
    "auth_headers",
    "redact",
    "RetryableFailure",
    "TLS",
    "check_intent",
    "classify",
    "config_json",
    "decode_result",
    "grpc_channel_args",
    "intent_input",
    "is_url",
    "model_info",
    "parse_url",
    "parse_urls",
]
