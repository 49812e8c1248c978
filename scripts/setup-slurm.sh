#!/bin/bash
# Single-node Slurm on localhost (Debian 12, Slurm 22.05), started by hand (no systemd), as root.
# Idempotent: re-running leaves running daemons alone. Prints the daemons' PIDs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sudo >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge sudo
fi

if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
fi

conf=/etc/slurm/slurm.conf
want=$(cat <<'CONF'
# written by jupyterhub-hpc scripts/setup-slurm.sh
ClusterName=localcluster
SlurmctldHost=localhost
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
NodeName=localhost CPUs=160 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  mkdir -p /etc/slurm
  printf '%s\n' "$want" > "$conf"
  # a changed config needs the daemons restarted
  for p in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$p"; then kill "$(cat "$p")"; fi
  done
  for _ in $(seq 1 50); do
    running /run/slurmd.pid || running /run/slurmctld.pid || break
    sleep 0.2
  done
fi
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd

running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd

for _ in $(seq 1 120); do
  state=$(sinfo -h -o '%T' 2>/dev/null || true)
  [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] && break
  sleep 0.25
done
if [ "$(sinfo -h -o '%T' 2>/dev/null)" = down ] || [ "$(sinfo -h -o '%T' 2>/dev/null)" = drained ]; then
  scontrol update nodename=localhost state=resume || true
fi
sinfo
echo "slurm: munged $(cat /run/munge/munged.pid) slurmctld $(cat /run/slurmctld.pid) slurmd $(cat /run/slurmd.pid)"
