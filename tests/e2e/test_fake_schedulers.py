"""End to end with FAKE Torque, PBS Pro, Moab, LSF and HTCondor tools (tests/fakesched).

Those schedulers' daemons cannot be installed here, so their command-line tools
are fakes: a job table on disk, jobs really run as the submitting user. All
the rest is real: JupyterHub + configurable-http-proxy, the spawner's own
commands (through ``sudo -E -u alice``, PATH pointed at the fake tools), the
job running batchspawner-singleuser and jupyterhub-singleuser as alice, a
request through the proxy, and stop -> the job cancelled and its process gone.
"""

import os
import pwd
import shutil
import tempfile
import time

import pytest

import fakesched
from e2e.conftest import require

CONFIG = """
c.JupyterHub.spawner_class = {spawner_class!r}
c.BatchSpawnerBase.exec_prefix = 'sudo -E -u {{username}} env PATH={bindir}:/usr/bin:/bin'
c.BatchSpawnerBase.status_exec_prefix = 'env PATH={bindir}:/usr/bin:/bin'
c.BatchSpawnerBase.req_runtime = '00:30:00'
c.BatchSpawnerBase.req_nprocs = '2'
c.BatchSpawnerBase.startup_poll_interval = 0.25
"""

FLAVOURS = [
    ("torque", "torque"),
    ("pbs", "pbs"),
    ("moab", "moab"),
    ("lsf", "lsf"),
    ("condor", "condor"),
]


@pytest.fixture
def fake_cluster(request):
    # alice must reach the tools: not under root's private pytest tmp directory
    directory = tempfile.mkdtemp(prefix="jhpc-fakesched-")
    os.chmod(directory, 0o755)
    yield directory
    fakesched.kill_leftovers(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("spawner_class,flavour", FLAVOURS, ids=[f[0] for f in FLAVOURS])
def test_fake_scheduler_spawn_proxy_stop(hubs, fake_cluster, spawner_class, flavour):
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    require(bool(shutil.which("sudo")), "sudo not installed")
    bindir = fakesched.install(fake_cluster, flavour)
    hub = hubs(CONFIG.format(spawner_class=spawner_class, bindir=bindir)).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()

    jobs = fakesched.jobs(fake_cluster)
    assert len(jobs) == 1, jobs
    job = next(iter(jobs.values()))
    assert job["owner"] == "alice" and job["state"] == "running"
    assert str(job["id"]) in model["state"]["job_id"]
    assert fakesched.pid_alive(job["pid"])
    assert os.stat(f"/proc/{job['pid']}").st_uid == pwd.getpwnam("alice").pw_uid  # the job runs as alice

    resp = hub.user_request("alice", "api")
    assert resp.status_code == 200, resp.text
    assert "version" in resp.json()
    print(f"{flavour}: submit->ready {seconds:.2f} s (job {model['state']['job_id']})")

    t0 = time.monotonic()
    assert hub.stop_server("alice")
    job = fakesched.jobs(fake_cluster)[job["id"]]
    assert job["state"] == "cancelled", job
    deadline = time.monotonic() + 10
    while fakesched.pid_alive(job["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not fakesched.pid_alive(job["pid"])
    print(f"{flavour}: stop->job gone {time.monotonic() - t0:.2f} s")


# the command each module's batch_status_cmd starts with
STATUS_TOOL = {"torque": "qstat", "pbs": "qstat", "moab": "mdiag", "lsf": "bjobs", "condor": "condor_q"}


@pytest.mark.parametrize("spawner_class,flavour", FLAVOURS, ids=[f[0] for f in FLAVOURS])
def test_fake_scheduler_shared_status_one_query_per_round(hubs, fake_cluster, spawner_class, flavour):
    """Three servers, the hub polling each every second: one batched status command per
    status_interval answers for all three, run as the hub's user; no per-job queries."""
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    require(bool(shutil.which("sudo")), "sudo not installed")
    bindir = fakesched.install(fake_cluster, flavour)
    config = CONFIG.format(spawner_class=spawner_class, bindir=bindir) + """
c.JupyterHub.allow_named_servers = True
c.Spawner.poll_interval = 1
c.BatchSpawnerBase.status_interval = 2
"""
    hub = hubs(config).start()
    servers = ["a", "b", "c"]
    for name in servers:
        r, _ = hub.spawn("alice", server=name)
        assert r.status_code in (201, 202), r.text
    job_ids = {str(j["id"]) for j in fakesched.jobs(fake_cluster).values() if j["state"] == "running"}
    assert len(job_ids) == 3, fakesched.jobs(fake_cluster)

    fakesched.start_call_log(fake_cluster)
    time.sleep(12.5)  # about 36 hub polls of the three servers
    seen = fakesched.calls(fake_cluster)
    tool = STATUS_TOOL[flavour]
    queries = [c for c in seen if c["argv"][0] in (tool, "condor_history")]
    assert queries, seen
    # one round per status_interval (2 s, plus the query's own time on a loaded machine), at most one
    # more for a fresh answer: never one query per server per poll (that would be ~36)
    assert 3 <= len(queries) <= 8, queries
    for call in queries:
        assert call["user"] == "root", call  # the shared query runs as the hub's user
        if flavour != "moab":  # mdiag -j --xml lists the whole queue; the others name the jobs
            asked = {a.split(".")[0] for a in call["argv"][1:]}
            assert job_ids <= asked, call
    for name in servers:
        model = hub.server_model("alice", server=name)
        assert model and model["ready"], hub.log_tail()
        assert hub.stop_server("alice", server=name)
