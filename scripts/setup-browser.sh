#!/bin/bash
# Headless Chromium + Python Playwright for the browser e2e tests, as root.
# Debian's chromium (no `playwright install` download: tests pass executable_path=/usr/bin/chromium)
# and the playwright package in the test venv. Starts nothing. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import playwright' 2>/dev/null; then
  "$VENV/bin/pip" install -q playwright
  chmod -R a+rX "$VENV"
fi
echo "browser: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
