"""slurmctld stopped for 60 s and started again while 5 servers run (real Slurm, real hub).

The test stops the slurmctld that scripts/setup-slurm.sh started (by its PID file) and
starts it again the same way; running jobs live on in slurmd meanwhile.
"""

import os
import signal
import subprocess
import time

import slurmtools
from scale_helpers import job_ids, ready_count, scale_config, spawn_many, stop_many, write_shims

PIDFILE = "/run/slurmctld.pid"


def _pid():
    with open(PIDFILE) as f:
        return int(f.read().strip())


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _start_slurmctld():
    subprocess.run(["/usr/sbin/slurmctld"], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ok, _ = slurmtools.available()
        if ok:
            return
        time.sleep(0.5)
    raise RuntimeError("slurmctld did not come back")


def test_slurmctld_down_for_60_s_drops_and_orphans_nothing(slurm, hubs, shared_dir):
    shim, _, _ = write_shims(shared_dir)
    hub = hubs(scale_config(shim, status_interval=2) + "\nc.SlurmSpawner.status_max_interval = 8\n").start()
    servers = [("alice", f"o{i}") for i in range(5)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    ids = job_ids(hub, servers)

    pid = _pid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)
    try:
        down_until = time.monotonic() + 60
        while time.monotonic() < down_until:
            time.sleep(10)
            assert ready_count(hub, servers) == 5
            for user, name in servers:
                assert hub.user_request(user, "", server=name).status_code in (200, 404)
        assert "Unable to contact slurm controller" in hub.log_text()
    finally:
        if not _alive(_pid()):
            _start_slurmctld()

    time.sleep(10)  # the poller's backoff is capped at 8 s: it has asked again by now
    # each spawner's own poll sees its job running again (and says so in the hub log)
    recovered = [f"job {j} state known again: RUNNING" for j in ids]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(line in hub.log_text() for line in recovered):
        time.sleep(0.5)
    assert all(line in hub.log_text() for line in recovered), hub.log_tail()
    assert ready_count(hub, servers) == 5
    live = slurmtools.live_jobs()
    assert all(live.get(j) == "RUNNING" for j in ids), live
    assert "cancelling job" not in hub.log_text()
    stop_many(hub, servers)
    live = slurmtools.live_jobs()
    assert not [j for j in ids if j in live]
