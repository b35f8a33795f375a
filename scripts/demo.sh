#!/usr/bin/env bash
# Install vedit into .venv, then run the main job end to end on the embedded demo students
# (15-30 min on 2 cores, by load; the T5 student's first answers after 5-9 min).
# --quick: the tour instead, every stage on tiny students in a few minutes, under artifacts/tour/.
# Other options go to `vedit demo run` (see `.venv/bin/vedit demo run -h`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh export,triton,bench
bash scripts/system-deps.sh   # nginx (HTTP front of the Triton server)
export VEDIT_HOME="${VEDIT_HOME:-$PWD/artifacts}"  # keep what the checkout builds inside it
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/vedit demo run "$@"
