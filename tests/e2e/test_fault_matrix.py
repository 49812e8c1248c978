"""Issue 12 on the real Slurm: the query fault matrix, 5 running servers behind ONE real hub.

A wrapper stands in for ``squeue`` in both the shared (batched) query and the per-job
query; while a fault file names a fault and a target (batched, per-job, both) it
misbehaves that way, else it runs the real squeue. ``scontrol`` (the second source) and
``scancel`` are the real ones. For every fault: 5/5 servers kept, no cancel sent, every
job still RUNNING in Slurm; after the fault clears every job is known again within two
rounds (the hub's own metrics); then a real ``scancel`` of one job is noticed within two
rounds (cancelled before the hub forgets it: Slurm shows it CANCELLED) and the other four
stay. The cancelled server is spawned again for the next fault. At the end every job is
stopped: none is orphaned.
"""

import re
import subprocess
import time

import requests

import slurmtools
from scale_helpers import TINY_SERVER_CMD, job_ids, ready_count, spawn_many, stop_many

# MODE TARGET in the fault file; the per-job query is called with "per-job" first
FAULT_SQUEUE = r"""#!/bin/sh
kind=batched
if [ "$1" = per-job ]; then kind=per-job; shift; fi
echo "$kind $*" >> {log}
fault=""
if [ -e {flag} ]; then
  read mode target < {flag}
  if [ "$target" = both ] || [ "$target" = "$kind" ]; then fault=$mode; fi
fi
case "$fault" in
  controller-down) echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1 ;;
  never-seen) echo 'squeue: error: the flux capacitor is out of alignment (code 88)' >&2; exit 7 ;;
  random-bytes) head -c 300 /dev/urandom; exit 0 ;;
  truncated) squeue "$@" | cut -c1-6; exit 0 ;;
  header-only) echo 'JOBID STATE NODELIST REASON'; exit 0 ;;
  hang) sleep 30; exit 0 ;;
  empty) exit 0 ;;
  partial) squeue "$@" | tail -n +3; exit 0 ;;
  invalid-job-id) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;
esac
exec squeue "$@"
"""

MATRIX = [
    ("controller-down", "both"),
    ("never-seen", "both"),
    ("random-bytes", "both"),
    ("truncated", "both"),
    ("header-only", "both"),
    ("hang", "both"),
    ("empty", "batched"),
    ("empty", "per-job"),
    ("empty", "both"),
    ("partial", "batched"),
    ("invalid-job-id", "batched"),
]
INTERVAL = 1.0
FAULT_SECONDS = 6


def config(shim):
    return f"""
c.JupyterHub.spawner_class = 'slurm'
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.authenticate_prometheus = False
c.Spawner.poll_interval = 1
c.Spawner.cmd = {TINY_SERVER_CMD}
c.SlurmSpawner.batch_status_cmd = "{shim} -h -t all -j {{job_ids}} -o '%i %T %B %r'"
c.SlurmSpawner.batch_query_cmd = "{shim} per-job -h -t all -j {{job_id}} -o '%T %B %r'"
c.SlurmSpawner.status_interval = {INTERVAL}
c.SlurmSpawner.status_max_interval = 4
c.SlurmSpawner.command_timeout = 3
c.SlurmSpawner.req_job_name = 'jhpc-faults'
"""


def batched_rounds(log):
    return sum(1 for line in log.read_text().splitlines() if line.startswith("batched "))


def gauge(hub):
    text = requests.get(f"{hub.url}/hub/metrics", timeout=10).text
    found = {}
    for state in ("pending", "running", "finished", "unknown"):
        m = re.search(r'^batchspawner_jobs\{poller="SlurmSpawner",state="%s"\} (\S+)$' % state, text, re.M)
        found[state] = float(m.group(1)) if m else None
    return found


def slurm_states(ids):
    r = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i %T"],
                       capture_output=True, text=True, timeout=20)
    return dict(line.split() for line in r.stdout.splitlines() if len(line.split()) == 2)


def scontrol_state(job_id):
    r = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=20)
    m = re.search(r"JobState=(\S+)", r.stdout)
    return m.group(1) if m else r.stderr.strip()


def wait_until(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_query_fault_matrix_keeps_5_servers_and_orphans_nothing(slurm, hubs, shared_dir):
    log = shared_dir / "squeue-calls.log"
    flag = shared_dir / "squeue-fault"
    shim = shared_dir / "fault-squeue"
    shim.write_text(FAULT_SQUEUE.format(log=log, flag=flag))
    shim.chmod(0o755)
    log.touch()
    log.chmod(0o666)
    hub = hubs(config(shim)).start()
    servers = [("alice", f"f{i}") for i in range(5)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    every_id = set(job_ids(hub, servers))
    report = []
    for n, (fault, target) in enumerate(MATRIX):
        ids = {s: hub.server_model(*s)["state"]["job_id"] for s in servers}  # (user, name) -> job id
        assert len(ids) == 5
        log_mark = len(hub.log_text())
        flag.write_text(f"{fault} {target}\n")
        kept = []
        end = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < end:
            time.sleep(1.5)
            kept.append(ready_count(hub, servers))
        during = hub.log_text()[log_mark:]
        states = slurm_states(list(ids.values()))
        flag.unlink()
        cleared = time.monotonic()

        # 5/5 kept, nothing cancelled, every job still running in Slurm
        assert kept and min(kept) == 5, f"{fault}/{target}: servers ready while faulty: {kept}"
        assert not re.search(r"cancelling job", during), f"{fault}/{target}: a cancel was sent during the fault"
        assert sorted(states.values()) == ["RUNNING"] * 5, f"{fault}/{target}: {states}"

        # known again within two rounds after the fault clears
        start = batched_rounds(log)
        assert wait_until(lambda: batched_rounds(log) >= start + 2, 15), f"{fault}/{target}: no rounds"
        time.sleep(0.3)
        g = gauge(hub)
        assert (g["running"], g["unknown"]) == (5, 0), f"{fault}/{target}: after two rounds {g}"
        recovered = time.monotonic() - cleared

        # a real scancel of one job is noticed within two rounds; the other four stay
        victim = servers[n % 5]
        job = ids[victim]
        before = batched_rounds(log)
        t0 = time.monotonic()
        subprocess.run(["scancel", job], check=True, timeout=20)  # a job this test's hub submitted
        noticed = wait_until(lambda: not (hub.server_model(*victim) or {}).get("ready"), 15)
        seconds = time.monotonic() - t0
        rounds = batched_rounds(log) - before
        assert noticed, f"{fault}/{target}: scancel of {job} not noticed"
        assert rounds <= 2, f"{fault}/{target}: scancel noticed after {rounds} rounds"
        others = [s for s in servers if s != victim]
        assert ready_count(hub, others) == 4, f"{fault}/{target}: the other four"
        assert wait_until(lambda: f"job {job} has ended" in hub.log_text(), 10)
        assert scontrol_state(job) in ("CANCELLED", "slurm_load_jobs error: Invalid job id specified")
        report.append(f"{fault}/{target}: kept {min(kept)}/5, known again {recovered:.1f} s, "
                      f"scancel noticed in {seconds:.1f} s ({rounds} rounds)")

        # the next fault starts with 5 servers again
        assert wait_until(lambda: hub.server_model(*victim) is None, 30), hub.log_tail()
        assert spawn_many(hub, [victim], timeout=120) is not None, hub.log_tail()
        every_id |= set(job_ids(hub, [victim]))
    print("\n".join(report))
    stop_many(hub, servers)
    live = slurmtools.live_jobs(("alice",))
    assert not [j for j in every_id if j in live], "no job orphaned"
