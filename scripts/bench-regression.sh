#!/usr/bin/env bash
# Latency regression run (pytest-benchmark), separate from the correctness suite.
#   scripts/bench-regression.sh            compare with the saved baseline, fail on a regression
#   scripts/bench-regression.sh --save     record a new baseline (commit benchmarks/baseline/)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export VEDIT_HOME="${VEDIT_HOME:-$PWD/artifacts}"  # keep what the checkout builds inside it
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
common=(benchmarks -q -p no:cacheprovider --benchmark-storage=file://benchmarks/baseline
        --benchmark-columns=min,median,max,rounds --benchmark-sort=name)
if [ "${1:-}" = "--save" ]; then
  exec .venv/bin/python -m pytest "${common[@]}" --benchmark-save=baseline
fi
exec .venv/bin/python -m pytest "${common[@]}" --benchmark-compare --benchmark-compare-fail=median:150%
