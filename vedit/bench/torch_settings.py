"""The PyTorch rows at PyTorch's best setting on this host, found on a trial request.

Like the peers (CTranslate2's MKL vs oneDNN), the PyTorch original is timed at the fastest of its
switches that keep the answers: fp32, greedy, the same tokens. Tried (every combination that applies):

- attention: transformers' ``attn_implementation`` ``"sdpa"`` (torch's fused
  ``scaled_dot_product_attention``, transformers' default) or ``"eager"`` (matmul + softmax), switched
  in place with ``set_attn_implementation`` where the architecture allows it (Llama; T5 in
  transformers 4.57 has only its own attention);
- linear layers: torch's fp32 GEMM (MKL ``sgemm`` in the PyPI CPU wheel) or oneDNN
  (``torch.utils.mkldnn.MkldnnLinear``, the weights copied once into oneDNN's layout; the copy of
  the setting not chosen is freed, but during the trial the linear weights are held twice: +4.2 GB
  on the TinyLlama shape). Which wins depends on the host and the shape: on the AMD EPYC host
  (2026-12-07, 2 threads, load 3.5-7) oneDNN ran the TinyLlama shape's 24-step request in 17.5-18.5 s
  vs MKL's 26.0-26.2 s (16 steps: 15.7-17.7 vs 17.3-20.2 s), but the demo T5 in 183-215 vs 107-117 ms,
  and the flan-t5-base shape tied (2,103 vs 1,930 ms, then 1,525 vs 1,553 ms); a 3-row LM head of
  that shape: 19 vs 36 ms, a 768x2048 layer over 60 prompt rows: 11 vs 5 ms.
  oneDNN's fp32 sums in another order (last-bit differences), so its trial answers are compared.

Left out, and why:

- ``torch.backends.mkldnn.enabled``: no oneDNN primitive runs in these models' fp32 ``generate``
  (``ONEDNN_VERBOSE=1`` printed none for the demo T5 and Llama), so it changes nothing;
- ``torch.backends.mkldnn.matmul.fp32_precision`` / ``torch.set_float32_matmul_precision``: bf16 or
  tf32 inside fp32 matmuls, so different numbers;
- ``generate(cache_implementation="static")``: made to be compiled; eager it was slower (demo Llama
  2,450 ms vs 1,600-2,000 ms per request, demo T5 649 vs 636 ms);
- ``torch.compile``: one compilation per shape (prompt width and cache length change every request
  in ``generate``), minutes on 2 cores: more than a trial can pay for;
- ``inference_mode`` vs ``no_grad``: :meth:`~vedit.reference.ReferencePredictor.generate` already
  runs under ``inference_mode``, which does strictly less bookkeeping than ``no_grad``;
- environment variables (``MKL_*``, ``OMP_*``/``KMP_*``, ``ONEDNN_*``): read once when torch loads,
  not switchable in a running process; threads are the bench's ``--threads``, the same for every path.

The trial is the first intent's request with the grammar, unsteered (so the answers compared are the
model's own greedy choices) and cut at :data:`TRIAL_STEPS` decoder steps, one warm-up and
:data:`TRIALS` timed per setting, round robin: a whole request on the TinyLlama shape is ~60 s on 2
cores and it has four settings, while past the prompt's prefill every step of ``generate`` is the
same work (one decoder call per token). 16 steps keep the prefill's share small (prefill favours
MKL, single-token steps oneDNN); the trial then costs ~4 min on the TinyLlama shape at load 6 on 2
cores (231 s measured), 8-20 s on the others (``measure_model(pytorch_trials=0)`` skips it).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from vedit.workload.fastest import Choice, fastest

if TYPE_CHECKING:
    from vedit.decoding.grammar import CompiledGrammar
    from vedit.reference import ReferencePredictor

log = logging.getLogger(__name__)

#: decoder steps per trial request (prefill included): a TinyLlama-shaped step costs ~0.5-1 s on 2 cores
TRIAL_STEPS = 16
#: timed trial requests per setting, after one warm-up
TRIALS = 2


@dataclass(frozen=True)
class TorchSetting:
    """One combination of PyTorch's switches."""

    attention: str  # the model's ``attn_implementation``
    linear: str  # "MKL" (torch's own fp32 GEMM) or "oneDNN" (MkldnnLinear)

    @property
    def name(self) -> str:
        return f"{self.attention} attention + {self.linear} linear"


class Switcher:
    """Puts a loaded model in any :class:`TorchSetting`, in place and back (the weights are loaded once).

    oneDNN's copies of the linear weights are made on first use; :meth:`keep` frees the copies the
    chosen setting does not use.
    """

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model
        self.base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
        #: (parent module, child name, torch's Linear); oneDNN's copies, built on first use
        self._linears = [(parent, name, child) for parent in self.base.modules()
                         for name, child in parent.named_children() if type(child) is torch.nn.Linear]
        self._onednn: list[Any] | None = None

    def settings(self) -> list[TorchSetting]:
        """Every combination that applies to this model, its current setting first."""
        current = self.base.config._attn_implementation
        attention = [current]
        if type(self.base)._supports_sdpa and type(self.base)._can_set_attn_implementation():
            attention += [a for a in ("sdpa", "eager") if a != current]
        import torch

        linear = ["MKL" if torch.backends.mkl.is_available() else "BLAS"]
        if torch.backends.mkldnn.is_available() and self._linears:
            linear.append("oneDNN")
        return [TorchSetting(a, li) for li in linear for a in attention]

    def use(self, setting: TorchSetting) -> None:
        """Switch the model to ``setting`` (cheap after the first oneDNN use)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import torch.utils.mkldnn

        if self.base.config._attn_implementation != setting.attention:
            self.base.set_attn_implementation(setting.attention)
        if setting.linear == "oneDNN" and self._onednn is None:
            with warnings.catch_warnings():  # MkldnnLinear is a TorchScript module: torch 2.13 warns, it works
                warnings.simplefilter("ignore", DeprecationWarning)
                self._onednn = [torch.utils.mkldnn.MkldnnLinear(lin, torch.float32) for _, _, lin in self._linears]
        modules = self._onednn if setting.linear == "oneDNN" else [lin for _, _, lin in self._linears]
        for (parent, name, _), module in zip(self._linears, modules):
            setattr(parent, name, module)

    def keep(self, setting: TorchSetting) -> None:
        """Switch to ``setting`` for good and drop the other layout of the linear weights."""
        self.use(setting)
        if setting.linear == "oneDNN":
            self._linears = []
        else:
            self._onednn = None


def best_setting(ref: "ReferencePredictor", rows: Sequence[Sequence[int]], tools: Sequence[str],
                 grammar: "CompiledGrammar", *, trials: int = TRIALS, steps: int = TRIAL_STEPS,
                 clock: Callable[[Callable[[], Any]], tuple[float, Any]] | None = None) -> tuple[TorchSetting, Choice]:
    """Try every :class:`TorchSetting` on one request (``rows``, constrained by ``grammar``, at most
    ``steps`` decoder steps), keep the fastest whose token ids equal the first setting's, and leave
    ``ref``'s model in it. ``clock(run) -> (ms, outputs)`` times one trial (default: wall time)."""
    switcher = Switcher(ref.model)
    options = {s.name: s for s in switcher.settings()}
    clock = clock or _wall

    def trial(setting: TorchSetting) -> tuple[float, Any]:
        switcher.use(setting)
        return clock(lambda: ref.generate(rows, tools=tools, grammar=grammar, max_steps=steps)[0])

    if len(options) == 1:  # nothing to choose: no trial
        (only,) = options.values()
        return only, Choice(only.name, only, {}, 0)
    choice = fastest(list(options), options.__getitem__, trial, trials=trials, errors=(RuntimeError, NotImplementedError))
    switcher.keep(choice.value)
    log.info(f"PyTorch: {choice.describe('setting')}")
    return choice.value, choice


def _wall(run: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = run()
    return (time.perf_counter() - began) * 1e3, out


def describe(choice: Choice, steps: int = TRIAL_STEPS) -> str:
    """The report's words for the setting chosen."""
    if not choice.ms:
        return f"{choice.name} (the only setting that applies)"
    line = choice.describe("setting", unit=f"per trial request (first intent, grammar, {steps} decoder steps)")
    return line + (f"; {choice.passed_over()}" if choice.dropped else "")


__all__ = ["TRIALS", "TRIAL_STEPS", "Switcher", "TorchSetting", "best_setting", "describe"]
