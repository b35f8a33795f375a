"""What both ONNX exporters share: running optimum quietly and reading back a file's interface."""

from __future__ import annotations

import copy
import logging
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

#: Opset used for both families (optimum's default for T5 and Llama in optimum-onnx 0.1.0).
DEFAULT_OPSET = 18


@contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the tracer/optimum chatter (hundreds of lines); errors still propagate."""
    import torch

    loggers = [logging.getLogger(n) for n in ("optimum", "transformers", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():
                yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def preserved_configs(model) -> Iterator[None]:
    """optimum overrides config values while exporting (e.g. ``use_cache=True`` on the T5 encoder's
    config) and leaves them set; restore every sub-module config so the PyTorch reference used by the
    validation is the model as loaded."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    saved = {k: copy.deepcopy(c.__dict__) for k, c in configs.items()}
    try:
        yield
    finally:
        for k, c in configs.items():
            c.__dict__.clear()
            c.__dict__.update(saved[k])


def optimum_export(model, staging: Path, *, task: str, opset: int, custom_onnx_configs: dict | None = None) -> None:
    """Run optimum's exporter on an in-memory model; no post-processing (no merged decoder) and no
    optimum validation (vedit validates every file itself, with its own tolerances)."""
    from optimum.exporters.onnx import onnx_export_from_model

    with quiet_tracing(), preserved_configs(model):
        onnx_export_from_model(
            model,
            str(staging),
            task=task,
            opset=opset,
            no_post_process=True,
            do_validation=False,
            custom_onnx_configs=custom_onnx_configs,
        )


def external_data_files(onnx_path: Path) -> list[str]:
    """Names of the external data files an ONNX file refers to (empty for files under 2 GB)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set()
    for t in _get_all_tensors(model):
        if uses_external_data(t):
            for entry in t.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return sorted(names)


def move_onnx(staging: Path, dst: Path, name: str) -> list[str]:
    """Move ``name`` and its external data from ``staging`` into ``dst``; return the moved names."""
    moved = [name, *external_data_files(staging / name)]
    for n in moved:
        shutil.move(str(staging / n), str(dst / n))
    return moved


def io_names(onnx_path: Path) -> dict[str, list[str]]:
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return {"inputs": [i.name for i in g.input if i.name not in inits], "outputs": [o.name for o in g.output]}


def opset_of(onnx_path: Path) -> int:
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def model_num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


#: Below this many parameters one thread is faster: on a busy 2-core machine, OpenMP threads that
#: wait for each other made HF generate on the tiny T5 27x slower with 2 threads than with 1.
SMALL_MODEL_PARAMS = 50_000_000


def threads_for(model: Any) -> int:
    return _threads(model_num_params(model))


def threads_for_files(weight_files) -> int:
    """Same rule before loading: 4 bytes per float32 parameter (an estimate for fp16 files)."""
    return _threads(sum(Path(f).stat().st_size for f in weight_files) // 4)


def _threads(num_params: int) -> int:
    import torch

    return 1 if num_params < SMALL_MODEL_PARAMS else max(1, min(2, torch.get_num_threads()))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
