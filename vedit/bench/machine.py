"""What a benchmark ran on: numbers mean little without the machine they came from."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

_PACKAGES = ("vedit", "torch", "transformers", "optimum", "onnx", "onnxruntime", "onnxruntime-gpu",
             "peft", "tritonclient", "nvidia-pytriton", "outlines-core")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads: int | None = None) -> dict:
    """CPU model, cores, threads used, load average at start, GPUs, package versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average": _load(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpus": _gpus(),
        "packages": _versions(),
    }


def describe(info: dict) -> str:
    """One line for report headers."""
    gpu = ", ".join(info["gpus"]) or "no GPU"
    return (f"{info['cpu']}, {info['cores']} cores ({info['threads'] or 'default'} threads used), "
            f"{gpu}; load at start {info['load_average']}")
