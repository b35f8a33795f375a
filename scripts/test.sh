#!/usr/bin/env bash
# Install everything the tests need into .venv, then run the full test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/system-deps.sh   # nginx (HTTP front of the Triton server), chromium (the playground and web page tests), npm
bash scripts/web.sh           # npm ci + the browser runtime (web/dist) the web tests and `vedit web build` use
# PASSIVE: an OpenMP thread waiting for a busy core must sleep, not spin (2-core CI)
export VEDIT_HOME="${VEDIT_HOME:-$PWD/artifacts}"  # keep what the checkout builds inside it
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
