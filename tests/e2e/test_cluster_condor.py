"""A real HTCondor pool (Debian trixie, HTCondor 23.9) with the hub off the pool.

Cluster ``condor`` (scripts/cluster/cluster.sh): ``login`` (central manager: collector,
negotiator, schedd; sshd) and execute node ``n1``, each in its own network namespace. The hub
submits over ssh to ``login`` as the user; the job runs as that user on ``n1`` from the node's own
Python. The hub resolves the pool's names as site DNS would (a private /etc/hosts for the hub
process only, in its own mount namespace).
"""

from __future__ import annotations

import secrets
import shutil
import time

import clustertools
import pytest
from hubharness import ARTIFACTS, Hub
from test_cluster_current import NODE_CMD, route_target, spawn_ready

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


def test_condor_spawn_route_stop(pool, tmp_path, jupyterhub_version):
    hosts = tmp_path / "hosts"
    hosts.write_text(open("/etc/hosts").read() + "".join(f"{pool.addr[n]} {n}\n" for n in pool.nodes))
    hosts.chmod(0o644)
    token = secrets.token_hex(16)
    hub = Hub(tmp_path / "hub", CONFIG.format(hub_ip=pool.hub_ip, prefix=pool.ssh_prefix(str(tmp_path / "known_hosts")),
                                              node_cmd=NODE_CMD),
              env={"CONFIGPROXY_AUTH_TOKEN": token})  # fmt: skip
    hub.proxy_token = token
    hub.command_prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                          'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]  # fmt: skip
    hub.start()
    try:
        seconds = spawn_ready(hub, "alice")
        job_id = hub.api("GET", "/users/alice").json()["servers"][""]["state"]["job_id"]
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
        version = pool.run("login", ["condor_version"]).stdout.splitlines()[0]
        print(f"condor ({version}): submit->ready {seconds:.2f} s (job {job_id})")
        assert hub.stop_server("alice")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and cluster_id in condor_jobs(pool):
            time.sleep(0.5)
        assert cluster_id not in condor_jobs(pool)
        # out of the queue: this version's condor_history record, parsed as the spawner does
        history_argv = split_command(spawner.batch_history_cmd, **spawner.command_vars(job_id))
        out = pool.run("login", history_argv, user="alice")
        record = spawner.parse_query_output(out.returncode, out.stdout, out.stderr)
        assert record.state.name == "FINISHED" and record.native == "Removed", (record, out.stdout)
    finally:
        hub.stop()
        ARTIFACTS.joinpath("hub-logs").mkdir(parents=True, exist_ok=True)
        if hub.log_path.exists():
            shutil.copy(hub.log_path, ARTIFACTS / "hub-logs" / "cluster-condor.log")
        for cluster_id in condor_jobs(pool):
            pool.run("login", ["condor_rm", cluster_id], check=False)
