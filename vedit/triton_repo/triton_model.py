"""Triton python-backend model serving vedit's constrained ONNX runtime in-process.

``vedit triton build`` copies this file to ``<repo>/<name>/1/model.py``; it only imports inside
Triton's python stub (``triton_python_backend_utils`` exists nowhere else). The stub runs the first
``python3`` on PATH, so vedit and its dependencies come from that environment (``vedit triton
serve`` puts the venv's bin first; in the official container, install vedit into the image).

Each instance loads the export next to this file once, then answers batches: every request in a
batch is checked on its own (:mod:`vedit.triton_repo.requests`), the good ones are decoded together
in one runtime call, and each request gets exactly one response, in order, an error for the bad.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from vedit.triton_repo import config as cfg
from vedit.triton_repo.requests import BadRequest, decode_intents, output_rows


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = cfg.parameters(config)
        self.input_name = config["input"][0]["name"]
        self.tools = [o["name"] for o in config["output"]]
        self.max_bytes = int(params[cfg.PARAM_MAX_INTENT_BYTES])
        providers = [p for p in params.get(cfg.PARAM_PROVIDERS, "").split(",") if p]
        if args.get("model_instance_kind") == "GPU":
            from vedit.decoding.session import CUDA, cuda_provider

            # this instance's device and its share of the card (the profile's sizing, enforced)
            cuda = cuda_provider(int(args.get("model_instance_device_id", 0)),
                                 gpu_mem_limit=int(params.get(cfg.PARAM_GPU_MEM_LIMIT) or 0) or None,
                                 arena_extend_strategy=params.get(cfg.PARAM_ARENA_EXTEND) or None)
            providers = [cuda if p == CUDA else p for p in providers]
        export_dir = Path(args["model_repository"]) / args["model_version"] / params[cfg.PARAM_EXPORT_SUBDIR]
        threads = int(params.get(cfg.PARAM_THREADS, "0")) or None
        try:
            from vedit.decoding import Predictor

            self.predictor = Predictor.load(
                export_dir,
                providers=providers or None,
                threads=threads,
                jump_forward=params.get(cfg.PARAM_JUMP_FORWARD, "true") == "true",
                draft=cfg.DRAFT_MODES.get(params.get(cfg.PARAM_DRAFT, "false"), False),  # built before drafts: off
                batch_size=max(1, int(config.get("max_batch_size", 0))),  # a whole Triton batch at once
                allow_cpu_fallback=params.get(cfg.PARAM_ALLOW_CPU_FALLBACK, "false") == "true",
            )
        except Exception as exc:  # the server log must say why the model did not load
            raise pb_utils.TritonModelException(f"vedit runtime cannot load {export_dir}: {exc}") from exc

    def execute(self, requests):
        responses = [None] * len(requests)
        pending = []  # (request index, first intent, number of intents)
        intents = []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            try:
                texts = decode_intents(None if tensor is None else tensor.as_numpy(), max_bytes=self.max_bytes)
            except BadRequest as exc:
                responses[i] = _error(str(exc), "INVALID_ARG")
                continue
            pending.append((i, len(intents), len(texts)))
            intents.extend(texts)
        if not intents:
            return responses
        try:
            predictions = self.predictor.predict(intents)
        except Exception as exc:  # a runtime failure answers every pending request, never crashes
            for i, _, _ in pending:
                responses[i] = _error(f"vedit runtime failed: {exc}", "INTERNAL")
            return responses
        for i, start, n in pending:
            rows = predictions[start : start + n]
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(t, output_rows([p.raw[t] for p in rows])) for t in self.tools]
            )
        return responses

    def finalize(self):
        self.predictor = None


def _error(message, code):
    """An error response; older stubs have no error codes, only the message."""
    codes = getattr(pb_utils.TritonError, code, None)
    if codes is None:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, codes))
