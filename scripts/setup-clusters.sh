#!/bin/bash
# The multi-machine test clusters (scripts/cluster/): Slurm 26.05 "current" (Debian sid),
# Slurm 24.11 "lts" (Debian trixie) and an HTCondor 23.9 pool "condor" (Debian trixie), each
# machine in its own network namespace on a host bridge; and psycopg2 in the hub's venv for the
# PostgreSQL hub test (its server is started by the test: scripts/cluster/postgres.sh).
#
# Roots are built once per machine under $JHPC_CLUSTER_CACHE (default
# /var/cache/jupyterhub-hpc/clusters; ~2 min each on a fresh machine, packages from Debian's
# registry, pip from PyPI) and rebuilt when scripts/cluster/build-root.sh changes (its common part,
# or that suite's own line). Starting a cluster that is up and healthy does nothing; otherwise its
# leftovers are stopped by PID and it boots again (~4 s; current, with slurmdbd on MariaDB, ~2-3 s
# from its kept database, ~8 s the first time). Stop them with: bash scripts/cluster/cluster.sh stop current|lts
# JHPC_CLUSTERS (default "current lts condor") lists the clusters to start.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
fi
t0=$(date +%s)
# a root to (re)build is first freed from the cluster running on it; both build at once
declare -A suite_of=([current]=sid [lts]=trixie [condor]=condor)
pids=()
for name in ${JHPC_CLUSTERS:-current lts condor}; do
  suite=${suite_of[$name]:?unknown cluster $name}
  if ! bash scripts/cluster/build-root.sh "$suite" --check >/dev/null; then
    bash scripts/cluster/cluster.sh stop "$name"
    bash scripts/cluster/build-root.sh "$suite" >/dev/null &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
for name in ${JHPC_CLUSTERS:-current lts condor}; do
  bash scripts/cluster/cluster.sh start "$name"
done
PY=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}/bin/python
if ! "$PY" -c "import psycopg2" 2>/dev/null; then
  "$PY" -m pip install -q psycopg2-binary
fi
echo "setup-clusters.sh: clusters up in $(( $(date +%s) - t0 )) s"
