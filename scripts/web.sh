#!/usr/bin/env bash
# Build the browser runtime (web/dist) that `vedit web build` copies into every site: the locked npm
# packages (npm ci, skipped while web/package-lock.json is unchanged), then the esbuild bundle and
# onnxruntime-web's WASM files. Needs node (>= 20) and npm; nothing else is fetched.
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm >/dev/null 2>&1; then
    echo "web: node and npm are needed to build the browser runtime (apt-get install nodejs npm)" >&2
    exit 1
fi
stamp=node_modules/.vedit-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
fi
node build.mjs "$@"
