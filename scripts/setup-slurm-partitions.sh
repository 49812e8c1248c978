#!/bin/bash
# Adds the small partition the browser tests fill to make a job queue (jhpc-small: 2 CPUs of
# localhost), live and idempotently: `scontrol create PartitionName=...` when `scontrol show partition`
# does not know it. Never rewrites slurm.conf or restarts a daemon (setup-slurm.sh owns those);
# a slurmctld restart drops the partition, and the next run of this script adds it again.
set -euo pipefail
command -v scontrol >/dev/null 2>&1 || { echo "slurm partitions: scontrol missing (run setup-slurm.sh)"; exit 0; }
if ! scontrol show partition jhpc-small >/dev/null 2>&1; then
  scontrol create PartitionName=jhpc-small Nodes=localhost MaxCPUsPerNode=2 MaxTime=04:00:00 \
    DefaultTime=01:00:00 State=UP Default=NO
fi
echo "slurm partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
