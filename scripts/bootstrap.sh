#!/usr/bin/env bash
# Create .venv at the repo root (if missing) and install vedit with the given extras, pinned by
# requirements/constraints.txt. Usage: scripts/bootstrap.sh [EXTRAS]
#   scripts/bootstrap.sh test                 everything the test suite needs (= CI)
#   scripts/bootstrap.sh export,triton,bench  what `vedit demo run` needs
#   scripts/bootstrap.sh base                 the edge runtime only (onnxruntime, no torch)
# Whenever an extra needs torch (export, bench, test), torch==2.13.0 is installed FIRST, from the
# local CPU wheel, in its own pip command: pip must never get the chance to resolve a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-export,triton,bench}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.vedit-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade "pip>=24"
  case ",${extras}," in
    *,export,*|*,bench,*|*,test,*)
      .venv/bin/pip install --quiet -c requirements/constraints.txt "torch==2.13.0" ;;
  esac
  if [ "$extras" = "base" ]; then
    .venv/bin/pip install --quiet -c requirements/constraints.txt -e .
  else
    .venv/bin/pip install --quiet -c requirements/constraints.txt -e ".[${extras}]"
  fi
  touch "$stamp"
fi
