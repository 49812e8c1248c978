#!/bin/bash
# Benchmark jupyterhub-hpc against jupyterhub/batchspawner 1.3.0 on the real single-node Slurm.
#   bash bench/run.sh [--quick] [options of bench/run.py]     (as root; ~20 min full, ~4 min --quick)
# Builds the 1.3.0 side in its own venv (from /usr/bin/python3, so job users can run it) and uses
# this project's venv ($JHPC_VENV, default /opt/jupyterhub-hpc/venv) for our package.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BS13=${JHPC_BENCH_BS13_VENV:-/opt/jhpc-bench-bs13/venv}
OURS=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}

if [ ! -x "$BS13/bin/jupyterhub" ] || ! "$BS13/bin/python" -c 'import batchspawner' 2>/dev/null; then
  /usr/bin/python3 -m venv "$BS13"
  "$BS13/bin/pip" install -q 'jupyterhub==6.1.*' jupyter_server 'batchspawner==1.3.0'
  chmod -R a+rX "$(dirname "$BS13")"
fi
if [ ! -x "$OURS/bin/jupyterhub" ]; then
  JHPC_VENV="$OURS" bash "$here/scripts/install.sh"
fi
cd "$here"
exec "$OURS/bin/python" -m bench.run --bs13-venv "$BS13" "$@"
