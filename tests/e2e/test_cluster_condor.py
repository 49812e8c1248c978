"""A real HTCondor pool (Debian trixie, HTCondor 23.9) with the hub off the pool.

Cluster ``condor`` (scripts/cluster/cluster.sh): ``login`` (central manager: collector,
negotiator, schedd; sshd) and execute node ``n1``, each in its own network namespace. The hub
submits over ssh to ``login`` as the user; the job runs as that user on ``n1`` from the node's own
Python. The hub resolves the pool's names as site DNS would (a private /etc/hosts for the hub
process only, in its own mount namespace). One hub serves the module: spawn to ready, route at
``n1``, the session card (HTCondor has no details command: the status poller's condor_q facts),
stop; then a hub restart keeps a server and an outside ``condor_rm`` is noticed and said.
"""

from __future__ import annotations

import secrets
import shutil
import time

import clustertools
import pytest
from hubharness import Hub
from test_cluster_current import (NODE_CMD, WEB_CONFIG, job_of, outside_cancel_is_noticed, restart_keeps_server,
                                  route_target, spawn_ready)

from batchspawner.schedulers.condor import CondorSpawner
from batchspawner.commands.runner import split_command
from e2e.conftest import require

CONFIG = """
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.spawner_class = 'condor'
c.Spawner.poll_interval = 2
c.CondorSpawner.exec_prefix = {prefix!r}
c.CondorSpawner.batchspawner_singleuser_cmd = {node_cmd!r}
c.CondorSpawner.startup_poll_interval = 0.25
c.CondorSpawner.status_interval = 2
"""


@pytest.fixture(scope="module")
def pool():
    ok, why = clustertools.available()
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    return clustertools.start("condor")


def condor_spawner():
    from types import SimpleNamespace

    from jupyterhub.objects import Hub as HubObject

    user = SimpleNamespace(name="alice", escaped_name="alice", url="/user/alice/", base_url="/",
                           public_url=lambda *a, **k: "", spawners={}, server=None, kind="user")  # fmt: skip
    return CondorSpawner(user=user, hub=HubObject(ip="127.0.0.1", port=8081, base_url="/hub/"))


def condor_jobs(pool):
    out = pool.run("login", ["condor_q", "-allusers", "-af", "ClusterId", "JobStatus"]).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def wait_condor_gone(pool, job_id, timeout=30):
    """True once the schedd no longer lists the job (condor_q as root on ``login``)."""
    cluster_id = job_id.split(".")[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cluster_id in condor_jobs(pool):
        time.sleep(0.5)
    return cluster_id not in condor_jobs(pool)


@pytest.fixture(scope="module")
def hub(pool, tmp_path_factory, jupyterhub_version):
    """One hub on the pool for the module; each test leaves no server and no job behind."""
    workdir = tmp_path_factory.mktemp("hub-condor")
    hosts = workdir / "hosts"
    hosts.write_text(open("/etc/hosts").read() + "".join(f"{pool.addr[n]} {n}\n" for n in pool.nodes))
    hosts.chmod(0o644)
    token = secrets.token_hex(16)
    config = CONFIG.format(hub_ip=pool.hub_ip, prefix=pool.ssh_prefix(str(workdir / "known_hosts")), node_cmd=NODE_CMD)
    hub = Hub(workdir / "hub", config + WEB_CONFIG, env={"CONFIGPROXY_AUTH_TOKEN": token})
    hub.proxy_token = token
    hub.command_prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                          'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]  # fmt: skip
    hub.start()
    yield hub
    clustertools.finish_hub(hub, "cluster-condor", cancel=lambda: [pool.run("login", ["condor_rm", cluster_id], check=False)
                                                                   for cluster_id in condor_jobs(pool)])  # fmt: skip


def test_condor_spawn_route_stop(pool, hub):
    seconds = spawn_ready(hub, "alice")
    job_id = job_of(hub, "alice")
    cluster_id = job_id.split(".")[0]
    assert condor_jobs(pool).get(cluster_id) == "2", condor_jobs(pool)
    target = route_target(hub, "alice")
    assert target and target.startswith(f"http://{pool.addr['n1']}:"), target
    assert hub.user_request("alice", "api").status_code == 200
    ps = pool.run("n1", ["ps", "-o", "user=,args=", "-u", "alice"]).stdout
    assert "/opt/jhpc/venv/bin/python" in ps, ps
    # this version's shared status answer, parsed by the package's parser
    spawner = condor_spawner()
    status_argv = split_command(spawner.batch_status_cmd, **(spawner.command_vars(job_id) | {"job_id_args": [job_id]}))
    out = pool.run("login", status_argv, user="alice")
    status = spawner.parse_batch_status(out.returncode, out.stdout, out.stderr, [job_id])[job_id]
    assert status.state.name == "RUNNING" and status.host == "n1", (status, out.stdout)
    # the session card: HTCondor has no details command, so the card holds what the hub's status
    # poller read from this pool's condor_q (state, RemoteHost's node) and the job's own facts
    assert not spawner.batch_details_cmd
    card = hub.login_session("alice").get(hub.url + "/hub/hpc/cards?format=json", timeout=30).json()["sessions"][0]
    assert (card["scheduler"], card["job_id"], card["state"], card["native_state"], card["node"]) == (
        "Condor", job_id, "running", "Running", "n1"), card
    assert card["log_path"].endswith(f"-job{job_id}.log"), card
    html = hub.login_session("alice").get(hub.url + "/hub/hpc/cards", timeout=30).text
    assert f'data-job-id="{job_id}"' in html and 'data-state="running"' in html, html
    assert f"Condor job {job_id} (Running)" in html and '<dd class="col-sm-9 hpc-node">n1</dd>' in html, html
    version = pool.run("login", ["condor_version"]).stdout.splitlines()[0]
    print(f"condor ({version}): submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_condor_gone(pool, job_id), condor_jobs(pool)
    # out of the queue: this version's condor_history record, parsed as the spawner does
    history_argv = split_command(spawner.batch_history_cmd, **spawner.command_vars(job_id))
    out = pool.run("login", history_argv, user="alice")
    record = spawner.parse_query_output(out.returncode, out.stdout, out.stderr)
    assert record.state.name == "FINISHED" and record.native == "Removed", (record, out.stdout)


def test_condor_hub_restart_keeps_server_then_outside_condor_rm_is_noticed(pool, hub):
    spawn_ready(hub, "alice")
    job_id = restart_keeps_server(hub)
    # the pool's administrator removes the job on the schedd (root is a queue superuser): the hub
    # notices, drops the server and says so (condor_history: JobStatus 3, Removed)
    seconds = outside_cancel_is_noticed(hub, lambda job: pool.run("login", ["condor_rm", job]),
                                        lambda job: wait_condor_gone(pool, job), "REMOVED", timeout=60)  # fmt: skip
    print(f"condor: condor_rm of job {job_id} -> server dropped {seconds:.1f} s")
