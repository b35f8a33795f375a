"""onnxruntime sessions: provider choice, threads, and a ``run(feeds) -> outputs`` wrapper.

CPU is the default. When onnxruntime-gpu is installed and reports the CUDA provider, CUDA is
selected automatically and calls go through IO binding (inputs bound from host arrays, outputs
bound to host memory, so the decoding loop can keep slicing the KV cache with numpy). That path
is written against the onnxruntime API but has NOT been run on a GPU here (no GPU was lent);
a device-resident KV cache would be the next step for GPU speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from vedit.errors import ModelDirError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def default_providers() -> list[str]:
    """CUDA (then CPU) when onnxruntime-gpu offers it, else CPU."""
    available = ort.get_available_providers()
    return [CUDA, CPU] if CUDA in available else [CPU]


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple
    dtype: type


class Session:
    """One ONNX model; inputs and outputs are addressed by the names the model declares."""

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
        p = Path(path)
        if not p.is_file():
            raise ModelDirError(f"{p}: ONNX file not found; export the model first (vedit export ...)")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # The decoding loop alternates between two or three sessions, each with its own thread
        # pool; threads left spinning by one steal cores from the next (measured on the base-shaped
        # model, 2 threads: 252 ms with spinning, 208 ms without). Waiting threads sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = list(providers or default_providers())
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelDirError(f"{p}: onnxruntime cannot load it: {exc}") from exc
        self.inputs = {i.name: InputSpec(i.name, tuple(i.shape), _NP_TYPES.get(i.type, np.float32))
                       for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.use_binding = self.session.get_providers()[0] == CUDA
        self.calls = 0

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with exactly the inputs the model declares (extra feeds are ignored)."""
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ModelDirError(f"the ONNX model wants inputs this runtime does not provide: {sorted(missing)}")
        self.calls += 1
        if self.use_binding:
            return self._run_bound(feeds)
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def dtype(self, name: str) -> type:
        return self.inputs[name].dtype


__all__ = ["CPU", "CUDA", "Session", "default_providers"]
