"""End to end on the real Slurm: real hub + proxy, real jupyterhub-singleuser as alice via sudo."""

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
