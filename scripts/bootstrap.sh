#!/usr/bin/env bash
# Create .venv at the repo root (if missing) and install vedit with the given extras, pinned by
# requirements/constraints.txt. torch is pinned to the local 2.13.0 CPU wheel: pip must never
# resolve a CUDA build. Usage: scripts/bootstrap.sh [EXTRAS]   e.g. scripts/bootstrap.sh test,triton
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-triton}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.vedit-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade "pip>=24"
  .venv/bin/pip install --quiet -c requirements/constraints.txt "torch==2.13.0"
  .venv/bin/pip install --quiet -c requirements/constraints.txt -e ".[${extras}]"
  touch "$stamp"
fi
