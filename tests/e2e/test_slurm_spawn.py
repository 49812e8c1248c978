"""End to end on the real Slurm: real hub + proxy, real jupyterhub-singleuser as alice via sudo."""

import json
import time

import pytest

import slurmtools

SLURM_CONFIG = """
c.JupyterHub.spawner_class = {spawner_class!r}
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
"""


def job_id_of(hub, name, server=""):
    model = hub.api("GET", f"/users/{name}").json()["servers"][server]
    return model["state"]["job_id"]


@pytest.mark.parametrize("spawner_class", ["slurm", "batchspawner.SlurmSpawner"])
def test_spawn_ready_proxy_stop(slurm, hubs, spawner_class):
    hub = hubs(SLURM_CONFIG.format(spawner_class=spawner_class)).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    assert slurmtools.job_state(job_id) == "RUNNING"
    # a request through the proxy reaches the single-user server
    resp = hub.user_request("alice", "api")
    assert resp.status_code == 200, resp.text
    assert "version" in resp.json()
    print(f"submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and slurmtools.job_state(job_id) not in ("", "CANCELLED", "COMPLETED"):
        time.sleep(0.5)
    assert slurmtools.job_state(job_id) in ("", "CANCELLED", "COMPLETED")
    assert job_id not in slurmtools.live_jobs()


def test_spawn_with_a_bare_system_path(slurm, hubs):
    """The hub runs with PATH=/usr/sbin:/usr/bin:/sbin:/bin (no venv on it, as from an init
    system); sudo's secure_path replaces PATH anyway: the default config still spawns."""
    hub = hubs(SLURM_CONFIG.format(spawner_class="slurm"), env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).start()
    r, _ = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    assert hub.user_request("alice", "api").status_code == 200
    assert hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job_id in slurmtools.live_jobs():
        time.sleep(0.5)
    assert job_id not in slurmtools.live_jobs()


def test_job_that_dies_before_reporting_fails_fast_with_log_tail(slurm, hubs):
    hub = hubs(
        """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_prologue = 'echo "module load failed: boom-marker-4711" >&2; exit 3'
c.SlurmSpawner.startup_poll_interval = 0.25
"""
    ).start()
    hub.ensure_user("alice")
    t0 = time.monotonic()
    r = hub.api("POST", "/users/alice/server", json={})
    # the hub answers 500 with our message when the spawn fails within its slow_spawn_timeout
    seconds = time.monotonic() - t0
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert "boom-marker-4711" in message
    assert "ended before your server started (job state FAILED" in message and "exit code 3" in message
    assert seconds < 15, seconds
    assert hub.server_model("alice") is None


def test_hub_restart_keeps_running_server(slurm, hubs):
    hub = hubs(SLURM_CONFIG.format(spawner_class="slurm")).start()
    r, _ = hub.spawn("alice")
    assert hub.server_model("alice")["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    hub.restart()
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    assert job_id_of(hub, "alice") == job_id
    assert slurmtools.job_state(job_id) == "RUNNING"
    assert hub.user_request("alice", "api").status_code == 200
    assert hub.stop_server("alice")


FLAKY_SQUEUE = """#!/bin/sh
# A query command that fails like a broken munge while {flag} exists (test only).
if [ -e {flag} ]; then
  echo "squeue: error: Munge decode failed: Expired credential" >&2
  echo "slurm_load_jobs error: Protocol authentication error" >&2
  exit 1
fi
exec squeue -h -t all -j "$1" -o "$2"
"""

QUERY_MODES = {
    # the shared poller: one query for all jobs
    "shared": "c.SlurmSpawner.batch_status_cmd = \"{script} {{job_ids}} '%i %T %B %r'\"",
    # one query per job, as batchspawner 1.3 did
    "per-job": "c.SlurmSpawner.shared_status = False\n"
    "c.SlurmSpawner.batch_query_cmd = \"{script} {{job_id}} '%T %B %r'\"",
}


@pytest.mark.parametrize("mode", QUERY_MODES)
def test_query_failures_keep_server_alive(slurm, hubs, shared_dir, mode):
    flag = shared_dir / "broken"
    script = shared_dir / "flaky-squeue"
    script.write_text(FLAKY_SQUEUE.format(flag=flag))
    script.chmod(0o755)
    hub = hubs(
        f"""
c.JupyterHub.spawner_class = 'slurm'
{QUERY_MODES[mode].format(script=script)}
c.SlurmSpawner.status_interval = 1
c.SlurmSpawner.status_max_interval = 2
c.SlurmSpawner.poll_interval = 1
c.SlurmSpawner.startup_poll_interval = 0.25
"""
    ).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], f"not ready after {seconds:.0f} s: " + hub.log_tail()
    job_id = job_id_of(hub, "alice")
    flag.touch()
    time.sleep(8)  # several hub polls (poll_interval = 1 s) all fail
    assert "state unknown" in hub.log_text()
    model = hub.server_model("alice")
    assert model and model["ready"]
    assert slurmtools.job_state(job_id) == "RUNNING"
    assert hub.user_request("alice", "api").status_code == 200
    flag.unlink()
    time.sleep(3)
    # the spawner's own poll sees the job running again (and says so in the hub log)
    recovered = f"job {job_id} state known again: RUNNING"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and recovered not in hub.log_text():
        time.sleep(0.5)
    assert recovered in hub.log_text(), hub.log_tail()
    assert hub.server_model("alice")["ready"]
    assert hub.user_request("alice", "api").status_code == 200
    assert hub.stop_server("alice")


def test_progress_shows_the_pending_reason(slurm, hubs):
    """A job Slurm will not start yet: the spawn page's progress stream says why."""
    hub = hubs(
        """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_options = '--begin=now+3600'
c.SlurmSpawner.startup_poll_interval = 0.25
"""
    ).start()
    hub.ensure_user("alice")
    r = hub.api("POST", "/users/alice/server", json={})
    assert r.status_code == 202, r.text
    messages = []
    with hub.api("GET", "/users/alice/server/progress", stream=True, timeout=30) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                if "BeginTime" in event.get("message", ""):
                    break
    assert any(
        "waiting in the queue" in m and "BeginTime: the job may not start before its requested begin time" in m
        for m in messages
    ), messages
    job_id = hub.server_model("alice")["state"]["job_id"]
    assert slurmtools.job_state(job_id) == "PENDING"
    assert hub.stop_server("alice")
    assert slurmtools.job_state(job_id) in ("", "CANCELLED")
