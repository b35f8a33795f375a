#!/usr/bin/env bash
# The GPU check: one run, under 8 minutes on one GPU, one table (vedit/bench/gpu_check.py).
# Exports the demo T5 and a flan-t5-base-shaped T5 in fp16, validates them on the CUDA execution
# provider, compares the device-resident IO-binding path with the host path, runs the fp16 parity
# gate, times the base shape against PyTorch generate on the GPU, and serves the l4 repository with
# a real tritonserver.
#   bash scripts/gpu-check.sh                 on a GPU host (CUDA 12 + cuDNN 9 libraries)
#   bash scripts/gpu-check.sh --device cpu    the same steps on the CPU EP (what the test suite runs,
#                                             there on the tiny student: tests/bench/test_gpu_check.py)
# Extra arguments go to `python -m vedit.bench.gpu_check` (--student, --timing-shape, --parity-limit,
# --requests, --no-triton, -o TABLE.md).
#
# The GPU run uses its own venv (.venv-gpu): onnxruntime-gpu instead of onnxruntime (never both in one
# environment) and the torch build the host's index offers for torch==2.13.0 (CUDA on a GPU host).
# The CPU venv (.venv) keeps the local CPU torch wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
device=auto prev=
for arg in "$@"; do
  if [ "$prev" = "--device" ]; then device="$arg"; fi
  case "$arg" in --device=*) device="${arg#--device=}" ;; esac
  prev="$arg"
done
if [ "$device" = "auto" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device=cuda; else device=cpu; fi
  set -- --device "$device" "$@"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
if [ "$device" = "cpu" ]; then
  bash scripts/bootstrap.sh test
  py=.venv/bin/python
else
  if [ ! -x .venv-gpu/bin/python ]; then python3 -m venv .venv-gpu; fi
  .venv-gpu/bin/pip install --quiet --upgrade "pip>=24"
  .venv-gpu/bin/pip install --quiet "torch==2.13.0"
  .venv-gpu/bin/pip install --quiet -e ".[export,triton,bench]"
  .venv-gpu/bin/pip uninstall --quiet -y onnxruntime
  .venv-gpu/bin/pip install --quiet -r requirements/serving-gpu.txt
  py=.venv-gpu/bin/python
fi
exec "$py" -m vedit.bench.gpu_check "$@"
