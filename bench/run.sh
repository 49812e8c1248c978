#!/bin/bash
# Benchmark jupyterhub-hpc against jupyterhub/batchspawner 1.3.0 on the real single-node Slurm.
#   bash bench/run.sh [--quick | --smoke] [options of bench/run.py]   (as root; ~25 min full, ~5 min --quick)
#   bash bench/run.sh --cluster current    spawn latency on a test cluster over ssh (bench/cluster.py; ~3 min)
#   bash bench/run.sh --end-to-route [--ends 10]   job end (scancel) -> proxy route gone, both packages (~6 min)
# Builds the 1.3.0 side in its own venv (from /usr/bin/python3, so job users can run it) and uses
# this project's venv ($JHPC_VENV, default /opt/jupyterhub-hpc/venv) for our package.
# Equal stacks: the 1.3.0 venv gets exactly the versions of the single-user stack our venv has
# (jupyterhub, jupyter_server, jupyterlab and its server extensions), so both packages' jobs run
# the same server with the same extensions; bench/run.py prints the stack and refuses a mismatch.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BS13=${JHPC_BENCH_BS13_VENV:-/opt/jhpc-bench-bs13/venv}
OURS=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}

if [ ! -x "$OURS/bin/jupyterhub" ]; then
  JHPC_VENV="$OURS" bash "$here/scripts/install.sh"
fi
cd "$here"
stack=$("$OURS/bin/python" -m bench.stack --pins)
if [ ! -x "$BS13/bin/jupyterhub" ]; then
  /usr/bin/python3 -m venv "$BS13"
fi
if ! "$BS13/bin/python" -c 'import batchspawner' 2>/dev/null \
   || [ "$("$BS13/bin/python" -m bench.stack --pins)" != "$stack" ]; then
  # shellcheck disable=SC2086
  "$BS13/bin/pip" install -q 'batchspawner==1.3.0' $stack 2> >(grep -v "^WARNING: Location" >&2)
  chmod -R a+rX "$(dirname "$BS13")"
fi

exec "$OURS/bin/python" -m bench.run --bs13-venv "$BS13" "$@"
