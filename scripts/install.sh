#!/bin/bash
# Installs what jupyterhub-hpc needs on a Debian 12 machine, as root:
#   Debian packages (Slurm, munge, sudo, Node.js), configurable-http-proxy from npm,
#   and a venv at $JHPC_VENV (default /opt/jupyterhub-hpc/venv) holding this package.
# The venv is built from Debian's /usr/bin/python3 so that job users can run it.
# Idempotent and quiet when everything is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}
# The package needs jupyterhub>=5; this venv (demo and tests) is pinned to the release the
# suite is tested on. JHPC_JUPYTERHUB overrides it, e.g. JHPC_JUPYTERHUB='5.*'.
JUPYTERHUB_PIN="jupyterhub==${JHPC_JUPYTERHUB:-6.1.*}"

need=()
for cmd_pkg in sudo:sudo node:nodejs npm:npm /usr/bin/python3:python3 ; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
  npm install -g --no-fund --no-audit configurable-http-proxy
fi

if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if [ "${JHPC_EDITABLE:-0}" = 1 ]; then
  "$VENV/bin/pip" install -q -e "$here[test,demo]" "$JUPYTERHUB_PIN"
else
  # a real install, so job users can import it even if the checkout is private
  "$VENV/bin/pip" install -q "$here[test,demo]" "$JUPYTERHUB_PIN"
  "$VENV/bin/pip" install -q --no-deps --force-reinstall "$here"
fi
chmod -R a+rX "$(dirname "$VENV")"
echo "venv: $VENV ($("$VENV/bin/python" -c 'import jupyterhub; print("jupyterhub", jupyterhub.__version__)'))"
