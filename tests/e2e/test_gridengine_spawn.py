"""End to end on the real Son of Grid Engine: real hub + proxy, real jupyterhub-singleuser as alice via sudo."""

import re
import shutil
import subprocess
import time

import pytest

import sgetools
from conftest import require

SGE_CONFIG = """
c.JupyterHub.spawner_class = {spawner_class!r}
c.GridengineSpawner.req_runtime = '00:30:00'
c.GridengineSpawner.startup_poll_interval = 0.25
"""


@pytest.fixture(scope="session")
def gridengine():
    ok, why = sgetools.available()
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    return True


@pytest.fixture
def sge_hubs(hubs):
    """The `hubs` factory, plus: qdel every SGE job these hubs submitted that is still queued."""
    made = []

    def make(extra_config):
        hub = hubs(extra_config)
        made.append(hub)
        return hub

    yield make
    ids = set()
    for hub in made:
        if hub.log_path.exists():
            ids |= set(re.findall(r"Job (\d+) submitted", hub.log_text()))
    sgetools.delete(sorted(ids))


def job_id_of(hub, name, server=""):
    return hub.api("GET", f"/users/{name}").json()["servers"][server]["state"]["job_id"]


@pytest.mark.parametrize("spawner_class", ["gridengine", "batchspawner.GridengineSpawner"])
def test_spawn_ready_proxy_stop(gridengine, sge_hubs, spawner_class):
    hub = sge_hubs(SGE_CONFIG.format(spawner_class=spawner_class)).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    assert sgetools.job_state(job_id) == "r"
    # any user can read a job's env_list with qstat -j: the token must not be in it
    shown = subprocess.run(["sudo", "-u", "bob", "qstat", "-j", job_id], capture_output=True, text=True).stdout
    assert "JUPYTERHUB_API_TOKEN_FILE=" in shown
    assert "JUPYTERHUB_API_TOKEN=" not in shown and "JPY_API_TOKEN=" not in shown
    resp = hub.user_request("alice", "api")
    assert resp.status_code == 200, resp.text
    assert "version" in resp.json()
    print(f"submit->ready {seconds:.2f} s (SGE job {job_id})")
    t0 = time.monotonic()
    assert hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sgetools.job_state(job_id):
        time.sleep(0.25)
    assert sgetools.job_state(job_id) == "", "job still queued after stop"
    print(f"stop->job gone {time.monotonic() - t0:.2f} s")


def test_job_that_exits_before_reporting_fails_fast_with_log_tail(gridengine, sge_hubs):
    config = SGE_CONFIG.format(spawner_class="gridengine") + (
        "c.GridengineSpawner.batchspawner_singleuser_cmd = '/nonexistent/batchspawner-singleuser'\n"
    )
    hub = sge_hubs(config).start()
    t0 = time.monotonic()
    r, _ = hub.spawn("alice", timeout=60)
    # within slow_spawn_timeout the POST itself answers 500 with the message; later it lands in the hub log
    assert r.status_code in (500, 202), r.text
    hub.wait_stopped("alice", timeout=60)
    seconds = time.monotonic() - t0
    model = hub.server_model("alice")
    assert model is None or not model.get("ready")
    shown = r.text if r.status_code == 500 else hub.log_text()
    match = re.search(r"The batch job (\d+) ended before your server started \(job state gone", shown)
    assert match, shown[-2000:]
    assert "Last lines of the job's log" in shown
    assert "/nonexistent/batchspawner-singleuser: No such file or directory" in shown, shown[-2000:]
    assert seconds < 30, f"failure took {seconds:.1f} s"
    assert sgetools.job_state(match.group(1)) == ""
    print(f"failing job reported in {seconds:.2f} s")
