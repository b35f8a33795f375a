"""onnxruntime sessions: provider choice and check, threads, CUDA memory limits, IO binding.

Providers. CPU is the default; when onnxruntime-gpu offers CUDA it is requested first. onnxruntime
itself never fails when a requested provider cannot start (no GPU, no CUDA/cuDNN libraries, the CPU
wheel): it logs a warning and runs everything on CPU. A GPU profile served like that answers on one
CPU thread, so every session compares the providers it got with the ones requested, and a missing
accelerator is a :class:`~vedit.errors.ProviderError` (one line) unless ``allow_cpu_fallback`` is
set, in which case it is a logged warning, never a silent one.

Provider options. A provider may be a name or ``(name, options)``, as onnxruntime takes them;
:func:`cuda_provider` builds the CUDA one with the per-instance memory bound of a serving profile
(``gpu_mem_limit``, ``arena_extend_strategy``), so N instances on one card cannot outgrow it.

IO binding. With ``io_binding`` (the default on CUDA; optional on CPU, where the same code path runs
and is tested), inputs and outputs go through an ``IOBinding``: outputs the caller asks to ``keep``
(the KV cache) stay where the provider wrote them, as ``OrtValue`` s on the device, and are bound
again as the next call's inputs without a host copy; every other output (the logits) is written to
host memory. :meth:`Session.to_host` / :meth:`Session.upload` move a kept value across when the
decoding loop must regroup rows (rare: see :mod:`vedit.decoding.seq2seq`).

Last logits. Of the logits the grammar needs each row's last position only (``run(..., last=)``).
A decoder exported by this vedit declares ``last_index`` (int64 ``(batch,)``; see
:mod:`vedit.export.last_position`): the session feeds it and the graph applies the lm_head to those
positions only, so its ``logits`` are already (rows, 1, vocab). For an older export (full logits),
the logits stay on the device and a tiny graph (:class:`LastLogits`, ``ops/last_logits_*.onnx``)
gathers those rows there, so a call that fed a run of forced tokens still brings back (rows, vocab).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import onnxruntime as ort

from vedit.errors import ModelDirError, ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: A provider as onnxruntime takes it: a name, or (name, options).
ProviderSpec = Union[str, tuple[str, dict]]

log = logging.getLogger("vedit.decoding")

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}

#: Input of a decoder that computes its logits at one position per row (each row's last fed token).
LAST_INDEX = "last_index"

#: onnxruntime device names of the providers whose memory IO binding can keep values in.
_DEVICE = {CUDA: "cuda", CPU: "cpu"}


def default_providers() -> list[str]:
    """CUDA (then CPU) when onnxruntime-gpu offers it, else CPU."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


def provider_name(p: ProviderSpec) -> str:
    return p if isinstance(p, str) else p[0]


def cuda_provider(device_id: int = 0, *, gpu_mem_limit: int | None = None,
                  arena_extend_strategy: str | None = None) -> tuple[str, dict]:
    """The CUDA provider with a device and, for serving, a bound on its memory arena (bytes)."""
    opts: dict[str, Any] = {"device_id": int(device_id)}
    if gpu_mem_limit:
        opts["gpu_mem_limit"] = int(gpu_mem_limit)
    if arena_extend_strategy:
        if arena_extend_strategy not in ("kNextPowerOfTwo", "kSameAsRequested"):
            raise ValueError(f"arena_extend_strategy {arena_extend_strategy!r}: use kNextPowerOfTwo or kSameAsRequested")
        opts["arena_extend_strategy"] = arena_extend_strategy
    return (CUDA, opts)


def check_providers(path: Path, requested: Sequence[ProviderSpec], active: Sequence[str], *,
                    allow_cpu_fallback: bool = False) -> list[str]:
    """Compare the providers a session got with those requested; return the missing accelerators.

    CPU is never "missing" (onnxruntime always has it). A missing accelerator raises
    :class:`ProviderError` unless ``allow_cpu_fallback``, which logs a warning instead.
    """
    missing = [n for n in (provider_name(p) for p in requested) if n != CPU and n not in active]
    if not missing:
        return []
    message = (
        f"{path.name}: {', '.join(missing)} requested but not active (the session runs on "
        f"{', '.join(active) or 'nothing'}; this onnxruntime offers {', '.join(ort.get_available_providers())}): "
        "install onnxruntime-gpu (not beside onnxruntime) on a host with a working CUDA 12 + cuDNN 9, "
        "or allow the CPU fallback explicitly (allow_cpu_fallback=True; Triton parameter allow_cpu_fallback: \"true\")"
    )
    if not allow_cpu_fallback:
        raise ProviderError(message)
    log.warning("falling back to CPU as allowed: %s", message)
    return missing


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple
    dtype: type


class Session:
    """One ONNX model; inputs and outputs are addressed by the names the model declares."""

    def __init__(self, path: str | Path, *, providers: Sequence[ProviderSpec] | None = None,
                 threads: int | None = None, allow_cpu_fallback: bool = False, io_binding: bool | None = None):
        p = self.path = Path(path)
        if not p.is_file():
            raise ModelDirError(f"{p}: ONNX file not found; export the model first (vedit export ...)")
        self.requested = list(providers or default_providers())
        accelerated = any(provider_name(x) != CPU for x in self.requested)
        opts = ort.SessionOptions()
        # onnxruntime reports a provider that failed to start as a warning: keep warnings visible
        # whenever an accelerator is requested (the check below turns the failure into an error).
        opts.log_severity_level = 2 if accelerated else 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # The decoding loop alternates between two or three sessions, each with its own thread
        # pool; threads left spinning by one steal cores from the next (measured on the base-shaped
        # model, 2 threads: 252 ms with spinning, 208 ms without). Waiting threads sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=self.requested)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelDirError(f"{p}: onnxruntime cannot load it: {exc}") from exc
        self.providers = self.session.get_providers()
        self.fallback = check_providers(p, self.requested, self.providers, allow_cpu_fallback=allow_cpu_fallback)
        self.inputs = {i.name: InputSpec(i.name, tuple(i.shape), _NP_TYPES.get(i.type, np.float32))
                       for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        first = self.providers[0]
        self.device = _DEVICE.get(first, "cpu")
        self.device_id = int(self.session.get_provider_options().get(first, {}).get("device_id", 0) or 0)
        self.use_binding = (self.device == "cuda") if io_binding is None else bool(io_binding)
        self._gather: LastLogits | None = None
        #: the graph gathers each row's position itself (``last_index``): ``logits`` is (rows, 1, vocab)
        self.gathers_last = LAST_INDEX in self.inputs
        logits = next((o for o in self.session.get_outputs() if o.name == "logits"), None)
        #: ``run(last=)`` may ask for several positions per row (a draft to verify): full logits, or a
        #: ``last_index`` graph whose ``logits`` declare a symbolic positions dimension (older exports: 1)
        self.gathers_many = not self.gathers_last or (logits is not None and len(logits.shape) == 3
                                                       and not isinstance(logits.shape[1], int))
        #: inputs whose host arrays may need a float conversion (see :meth:`_as_declared`)
        self._float_inputs = [n for n, spec in self.inputs.items() if spec.dtype in (np.float16, np.float32, np.float64)]
        self.calls = 0

    def run(self, feeds: Mapping[str, Any], *, keep: Sequence[str] = (), last: np.ndarray | None = None) -> dict[str, Any]:
        """Run with exactly the inputs the model declares (extra feeds are ignored).

        Feeds are numpy arrays or values this session returned earlier. Outputs named in ``keep``
        come back as device values when IO binding is on (numpy arrays otherwise); the rest are
        numpy arrays in host memory. With ``last`` (one position per row), the result also has
        ``last_logits``: float32 (rows, vocab), each row's logits at its position; with ``last`` of
        shape (rows, k) (only where :attr:`gathers_many`), float32 (rows, k, vocab). A session that
        declares ``last_index`` needs ``last`` (or a ``last_index`` feed); its ``logits`` are then
        (rows, k, vocab).
        """
        many = last is not None and np.ndim(last) == 2
        if many and not self.gathers_many:
            raise ModelDirError(f"{self.path.name}: this export computes logits at one position per row; export "
                                "it again with this vedit to verify drafts (or load it with draft=False)")
        if self.gathers_last and last is not None:
            feeds = {**feeds, LAST_INDEX: np.asarray(last, dtype=np.int64).reshape(-1)}
        try:  # one pass per call over the declared inputs (this runs for every decoder call)
            feeds = {k: feeds[k] for k in self.inputs}
        except KeyError:
            missing = set(self.inputs) - set(feeds)
            raise ModelDirError(f"the ONNX model wants inputs this runtime does not provide: {sorted(missing)}") from None
        for k in self._float_inputs:
            feeds[k] = self._as_declared(k, feeds[k])
        self.calls += 1
        if self.gathers_last:
            out = self._run_bound(feeds, set(keep)) if self.use_binding else self._run_host(feeds)
            if last is not None:  # (rows, 1, vocab), in host memory unless the caller kept it
                logits = out["logits"]
                logits = logits.numpy() if isinstance(logits, ort.OrtValue) else logits
                out["last_logits"] = (logits if many else logits[:, 0]).astype(np.float32, copy=False)
            return out
        if self.use_binding:
            out = self._run_bound(feeds, set(keep) | ({"logits"} if last is not None else set()))
            if last is not None:
                out["last_logits"] = self._last_logits(out["logits"]).pick(out["logits"], last)
            return out
        out = self._run_host(feeds)
        if last is not None:
            logits = out["logits"]
            at = np.asarray(last)
            rows = np.arange(len(logits))[:, None] if many else np.arange(len(logits))
            out["last_logits"] = logits[rows, at].astype(np.float32, copy=False)
        return out

    def _run_host(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        host = {k: v.numpy() if isinstance(v, ort.OrtValue) else v for k, v in feeds.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, host)))

    def _last_logits(self, logits: Any) -> "LastLogits":
        dtype = np.dtype(np.float16) if "float16" in logits.data_type() else np.dtype(np.float32)
        if self._gather is None or self._gather.dtype != dtype:
            opts = self.session.get_provider_options()
            self._gather = LastLogits(dtype, self.device, self.device_id,
                                      [(p, opts.get(p, {})) for p in self.providers])
        return self._gather

    def _run_bound(self, feeds: Mapping[str, Any], keep: set[str]) -> dict[str, Any]:
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            if name in keep:
                binding.bind_output(name, self.device, self.device_id)
            else:
                binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        out = {}
        for name, value in zip(self.output_names, binding.get_outputs()):
            out[name] = value if name in keep else value.numpy()
        return out

    def _as_declared(self, name: str, value: Any) -> Any:
        """Float host arrays in the input's declared float type (an fp16 export keeps fp16 KV I/O;
        callers such as the exporter's validation hold fp32 reference tensors)."""
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            want = self.inputs[name].dtype
            if value.dtype != want:
                return value.astype(want)
        return value

    def to_host(self, value: Any) -> np.ndarray:
        """A value from :meth:`run` (device or host) as a numpy array."""
        return value.numpy() if isinstance(value, ort.OrtValue) else value

    def upload(self, array: np.ndarray) -> Any:
        """A host array as a value :meth:`run` can bind without copying it again."""
        if not self.use_binding:
            return array
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)

    def dtype(self, name: str) -> type:
        return self.inputs[name].dtype


def op_session(op: str, dtype: np.dtype, providers: Sequence[ProviderSpec]) -> ort.InferenceSession:
    """One of vedit's small graphs (``ops/<op>_<dtype>.onnx``): one thread, no spinning, quiet, so
    moving a cache or a row of logits never competes with the model's own thread pool."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = Path(__file__).with_name("ops") / f"{op}_{np.dtype(dtype).name}.onnx"
    return ort.InferenceSession(str(path), opts, providers=list(providers))


class LastLogits:
    """Each row's logits at one position, gathered where the logits are (IO binding on the device).

    The graph (``ops/last_logits_<dtype>.onnx``: Flatten, Gather, Cast to float32) is built and
    checked by tests/decoding/test_last_logits.py; the runtime needs no ``onnx`` package to use it.
    """

    def __init__(self, dtype: np.dtype, device: str, device_id: int, providers: Sequence[ProviderSpec]):
        self.dtype = np.dtype(dtype)
        self.device, self.device_id = device, device_id
        self.session = op_session("last_logits", self.dtype, providers)

    def pick(self, logits: Any, last: np.ndarray) -> np.ndarray:
        """float32 (rows, vocab): ``logits[i, last[i]]`` for each row ``i``; with ``last`` of shape
        (rows, k), (rows, k, vocab)."""
        if isinstance(logits, ort.OrtValue):
            rows, tokens = logits.shape()[:2]
        else:
            rows, tokens = logits.shape[:2]
        at = np.asarray(last, dtype=np.int64)
        base = np.arange(rows, dtype=np.int64) * tokens
        if at.ndim == 2:
            return self.pick_flat(logits, (base[:, None] + at).reshape(-1)).reshape(rows, at.shape[1], -1)
        return self.pick_flat(logits, base + at)

    def pick_flat(self, logits: Any, index: np.ndarray) -> np.ndarray:
        """float32 (len(index), vocab): rows of ``logits`` flattened to (rows * tokens, vocab)."""
        binding = self.session.io_binding()
        if isinstance(logits, ort.OrtValue):
            binding.bind_ortvalue_input("logits", logits)
        else:
            binding.bind_cpu_input("logits", np.ascontiguousarray(logits))
        binding.bind_cpu_input("index", index)
        binding.bind_output("last", "cpu")
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()


__all__ = ["CPU", "CUDA", "LAST_INDEX", "LastLogits", "ProviderSpec", "Session", "check_providers", "cuda_provider",
           "default_providers", "op_session", "provider_name"]
