"""The GPU check (``scripts/gpu-check.sh``): every GPU-only path of vedit exercised in one run, one table.

On a GPU host (``device="cuda"``) it exports the demo T5 and a flan-t5-base-shaped T5 in fp16,
validates them on the CUDA execution provider, checks that the device-resident IO-binding path
answers exactly like the host path, runs the fp16 parity gate, times the base shape against
PyTorch ``generate`` on the GPU, and serves the ``l4`` repository with a real tritonserver.

The same code runs with ``device="cpu"`` (the CPU execution provider, PyTorch on CPU, and the ``l4``
profile's settings with CPU instances, since a KIND_GPU instance cannot load without a GPU) and
with a small ``timing_shape``: the test suite runs it that way on the tiny test student, so the
script cannot rot on machines that never see a GPU. A requested CUDA provider that does not start
is a failure here, never a silent CPU run (:func:`vedit.decoding.session.check_providers`).
"""

from __future__ import annotations

import logging
import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from vedit.intents import SAMPLE_INTENTS

log = logging.getLogger(__name__)

@dataclass
class Row:
    step: str
    ok: bool | None  # None: skipped
    seconds: float
    detail: str


@dataclass
class CheckResult:
    device: str
    rows: list[Row]

    @property
    def passed(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def table(self) -> str:
        lines = [f"vedit GPU check (device: {self.device})", "",
                 "| step | result | s | detail |", "|---|---|---|---|"]
        for r in self.rows:
            result = "skipped" if r.ok is None else ("ok" if r.ok else "FAIL")
            lines.append(f"| {r.step} | {result} | {r.seconds:.1f} | {r.detail} |")
        lines.append("")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def resolve_device(device: str) -> str:
    import onnxruntime as ort

    from vedit.decoding.session import CUDA

    if device == "auto":
        return "cuda" if CUDA in ort.get_available_providers() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device {device!r}: use cuda, cpu or auto")
    return device


def _providers(device: str) -> list:
    from vedit.decoding.session import CPU, CUDA

    return [CUDA, CPU] if device == "cuda" else [CPU]


def _step(rows: list[Row], name: str, fn: Callable[[], tuple[bool, str]]) -> bool:
    log.info(f"[gpu-check] {name} ...")
    t0 = time.perf_counter()
    try:
        ok, detail = fn()
    except Exception as exc:  # every step reports; the table shows what broke
        ok, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    rows.append(Row(name, ok, time.perf_counter() - t0, detail.replace("|", "/")))
    log.info(f"[gpu-check] {name}: {'ok' if ok else 'FAIL'} ({detail})")
    return ok


def _truth(n: int):
    from vedit.data.synth import generate

    return generate(seed=0, n_intents=max(4 * n, 50), n_test=n).test


def _torch_generate_ms(student: Path, intents: Sequence[str], max_new_tokens: int, torch_device: str) -> list[float]:
    """PyTorch ``generate`` (greedy, the three tool prompts of an intent as one batch), per intent."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from vedit.registry import default_registry

    registry = default_registry()
    tok = AutoTokenizer.from_pretrained(student)
    model = T5ForConditionalGeneration.from_pretrained(student).to(torch_device).eval()
    times = []
    for i, intent in enumerate(list(intents[:2]) + list(intents)):  # two warm-up requests
        batch = tok(registry.prompts(intent), return_tensors="pt", padding=True).to(torch_device)
        if torch_device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        if torch_device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _onnx_ms(export: Path, intents: Sequence[str], providers: list) -> tuple[list[float], float]:
    from vedit.decoding import Predictor

    p = Predictor.load(export, providers=providers, batch_size=1)
    times, calls = [], []
    for i, intent in enumerate(list(intents[:2]) + list(intents)):
        t0 = time.perf_counter()
        pred = p.predict([intent])[0]
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
            calls.append(pred.stats.decoder_calls)
    return times, statistics.mean(calls)


def run(*, device: str = "auto", student: Path, work: Path, timing_shape: str = "base", triton: bool = True,
        parity_limit: int = 50, requests: int = 20) -> CheckResult:
    """Run every step (a failing step does not stop the others) and return the table's rows."""
    import onnxruntime as ort

    from vedit.decoding.session import CUDA

    device = resolve_device(device)
    providers = _providers(device)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    state: dict = {}

    def environment():
        import torch

        state["torch_device"] = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA torch"
        ok = device == "cpu" or CUDA in ort.get_available_providers()
        return ok, (f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}); "
                    f"torch {torch.__version__} on {state['torch_device']} ({gpu})")
    _step(rows, "environment", environment)

    def export_student():
        from vedit.export import export_model

        r = export_model(student, work / "t5-fp16", family="t5", precision="fp16", force=True,
                         intents=list(SAMPLE_INTENTS[:2]))
        state["export"] = r.out_dir
        notes = "; ".join(r.validation.to_dict().get("notes", []))
        on_cuda = "validated on CUDAExecutionProvider" in notes
        return r.validation.passed and (device == "cpu" or on_cuda), f"validation passed; {notes}"
    _step(rows, "export demo T5 fp16 + validation", export_student)

    def runtime():
        from vedit.decoding import Predictor

        export = state["export"]
        bound = Predictor.load(export, providers=providers, io_binding=True, batch_size=4)
        host = Predictor.load(export, providers=providers, io_binding=False, batch_size=4)
        a = [p.raw for p in bound.predict(list(SAMPLE_INTENTS))]
        b = [p.raw for p in host.predict(list(SAMPLE_INTENTS))]
        active = bound.providers
        ok = a == b and (device == "cpu" or active[0] == CUDA)
        return ok, f"providers {', '.join(active)}; IO binding (device-resident KV) == host path: {a == b}"
    _step(rows, "fp16 runtime on " + ("CUDA EP" if device == "cuda" else "CPU EP"), runtime)

    def parity():
        from vedit.bench.parity import run_parity

        result = run_parity(student, _truth(parity_limit), candidate=state["export"], precision="fp16")
        detail = (f"exact agreement {result.agreement:.1%}, overall delta {result.overall_delta:+.4f}, "
                  f"candidate validity {result.candidate.validity:.0%}")
        return result.passed, detail + ("; " + "; ".join(result.failures) if result.failures else "")
    _step(rows, f"parity gate fp16 ({parity_limit} intents)", parity)

    def timing():
        from vedit.export import export_model
        from vedit.reference import output_token_budget
        from vedit.registry import default_registry
        from vedit.students.models import new_t5

        shaped = work / f"t5-{timing_shape}-shape"
        if not (shaped / "model.safetensors").exists():
            import shutil

            shaped.mkdir(parents=True, exist_ok=True)
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"):
                if (student / name).exists():
                    shutil.copy(student / name, shaped / name)
            from transformers import AutoTokenizer

            vocab = 32128 if timing_shape == "base" else len(AutoTokenizer.from_pretrained(student))
            new_t5(vocab, timing_shape, seed=0).save_pretrained(shaped)
        export = export_model(shaped, work / f"t5-{timing_shape}-fp16", family="t5", precision="fp16", force=True,
                              intents=["golden hour"], max_new_tokens=16).out_dir
        from transformers import AutoTokenizer

        budget = output_token_budget(default_registry(), AutoTokenizer.from_pretrained(shaped))
        intents = [f"{SAMPLE_INTENTS[i % len(SAMPLE_INTENTS)]} {i}" for i in range(requests)]
        onnx_ms, calls = _onnx_ms(export, intents, providers)
        torch_ms = _torch_generate_ms(shaped, intents, budget, state.get("torch_device", "cpu"))
        o, t = statistics.median(onnx_ms), statistics.median(torch_ms)
        return True, (f"vedit fp16 p50 {o:.1f} ms ({calls:.1f} decoder calls) vs PyTorch generate on "
                      f"{state.get('torch_device', 'cpu')} p50 {t:.1f} ms: {t / o:.1f}x")
    _step(rows, f"{timing_shape}-shaped T5 fp16: vedit vs PyTorch", timing)

    def serve():
        from vedit.client import connect
        from vedit.decoding import Predictor
        from vedit.decoding.session import CPU
        from vedit.serving import TritonServer
        from vedit.triton_repo import build_repository, get_profile

        profile = get_profile("l4")
        if device == "cpu":  # KIND_GPU cannot load without a GPU: the l4 settings on CPU instances
            profile = dataclasses.replace(profile, name="l4-on-cpu", kind="KIND_CPU", providers=(CPU,))
        repo = build_repository(state["export"], profile=profile, out=work / "triton-l4", force=True)
        expected = [p.to_json() for p in Predictor.load(state["export"], providers=providers).predict(list(SAMPLE_INTENTS))]
        with TritonServer(repo, log_path=work / "tritonserver.log") as server:
            with connect(server.urls["grpc"]) as client:
                got = [p.to_json() for p in client.predict(list(SAMPLE_INTENTS))]
        return got == expected, f"profile {profile.name}; gRPC answers == in-process: {got == expected}"
    if triton:
        _step(rows, "Triton l4 repository, real tritonserver", serve)
    else:
        rows.append(Row("Triton l4 repository, real tritonserver", None, 0.0, "not requested"))
    return CheckResult(device, rows)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    from vedit import paths

    ap = argparse.ArgumentParser(prog="python -m vedit.bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--student", type=Path, default=None, help="T5 student (default: the demo T5 student).")
    ap.add_argument("--work", type=Path, default=None, help="Scratch directory (default: $VEDIT_HOME/gpu-check).")
    ap.add_argument("--timing-shape", default="base", choices=["tiny", "demo", "base"])
    ap.add_argument("--parity-limit", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--no-triton", action="store_true")
    ap.add_argument("-o", "--out", type=Path, default=None, help="Also write the table here (markdown).")
    a = ap.parse_args(argv)
    student = a.student or paths.students_dir() / "t5"
    if not (student / "config.json").exists():
        if a.student is not None:
            print(f"error: no T5 student at {student}", file=sys.stderr)
            return 1
        print(f"no demo T5 student at {student}: building the quick demo students (vedit demo build --quick)",
              file=sys.stderr)
        from vedit.students.demo import build

        build(quick=True, upto="t5")
    from vedit.clibase import show_progress

    show_progress()
    result = run(device=a.device, student=student, work=a.work or paths.home() / "gpu-check",
                 timing_shape=a.timing_shape, triton=not a.no_triton, parity_limit=a.parity_limit,
                 requests=a.requests)
    print(result.table())
    if a.out:
        a.out.write_text(result.table() + "\n", encoding="utf-8")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
