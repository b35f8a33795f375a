#!/usr/bin/env bash
# System packages vedit's serving needs, from Debian: nginx (the HTTP front of `vedit triton serve`,
# which refuses oversized bodies before Triton 2.51's HTTP server can crash on them); chromium and
# its driver (the test suite drives the `vedit playground` page and the `vedit web` site in a real
# headless browser), npm (builds the browser runtime, scripts/web.sh).
# Installs only what is missing; needs root (CI runs as root) or passwordless sudo.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# chromium + its driver: the web page's tests (tests/web) drive Debian's headless chromium
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "system-deps: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system nginx on port 80 where an init system runs; vedit never uses
# it (it runs its own nginx with a private config), so leave the system service alone.
