"""What the builders of vedit's checked-in op graphs (vedit/decoding/ops/*.onnx) share: where they
live, their float types, how a graph becomes a model the runtime reads, and the regenerate step.
(Imported as a sibling module, like ``decoding_cases``, so the test files also run as scripts.)"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import onnx
from onnx import TensorProto, helper

OPS = Path(__file__).resolve().parents[2] / "vedit" / "decoding" / "ops"
DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
#: readable by onnxruntime >= 1.14 (the GPU image's 1.23 included)
IR_VERSION = 8


def op_model(nodes: list, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
    """A checked opset-17 model of ``nodes``, at :data:`IR_VERSION`."""
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vedit")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def shipped(op: str, dtype: str) -> onnx.ModelProto:
    """The checked-in ``ops/<op>_<dtype>.onnx``."""
    return onnx.load(str(OPS / f"{op}_{dtype}.onnx"))


def save_all(op: str, build: Callable[[str], onnx.ModelProto]) -> None:
    """Regenerate ``ops/<op>_<dtype>.onnx`` for every dtype."""
    OPS.mkdir(exist_ok=True)
    for d in DTYPES:
        onnx.save(build(d), str(OPS / f"{op}_{d}.onnx"))
