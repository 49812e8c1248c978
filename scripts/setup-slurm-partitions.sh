#!/bin/bash
# Adds the small partition the browser tests fill to make a job queue (jhpc-small: 2 CPUs of
# localhost), live and idempotently: `scontrol create PartitionName=...` when `scontrol show partition`
# does not know it. Never rewrites slurm.conf or restarts a daemon (setup-slurm.sh owns those);
# a slurmctld reconfigure may drop the partition; the next run of this script adds it again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# scripts/test runs setup-*.sh in name order, so this one comes before setup-slurm.sh: make sure
# Slurm is installed and running first (idempotent; it restarts nothing whose config is unchanged)
if ! scontrol ping >/dev/null 2>&1; then
  bash "$here/setup-slurm.sh" >/dev/null
  for _ in $(seq 1 30); do scontrol ping >/dev/null 2>&1 && break; sleep 1; done
fi
if ! scontrol show partition jhpc-small >/dev/null 2>&1; then
  scontrol create PartitionName=jhpc-small Nodes=localhost MaxCPUsPerNode=2 MaxTime=04:00:00 \
    DefaultTime=01:00:00 State=UP Default=NO
fi
echo "slurm partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
