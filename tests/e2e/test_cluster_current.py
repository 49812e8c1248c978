"""The hub off the cluster: Slurm 26.05 (Debian sid) on real machines in namespaces.

Cluster ``current`` (scripts/cluster/cluster.sh): a controller, compute nodes n1 and n2 (one CPU
each, so a second job lands on the other node) and a login node with sshd, each in its own
network namespace with its own hostname and IPv4+IPv6 address on a host bridge. The hub runs on
the host with its API on the bridge address and reaches the cluster only through the login node
(``exec_prefix`` = ssh as the user, as batchspawner 1.3 sites do); the single-user server runs
from the node's own Python (a venv of sid's python3), not the hub's venv. One hub serves the
module; each test leaves no server and no job behind.
"""

from __future__ import annotations

import secrets
import shutil
import time

import clustertools
import pytest
import requests
from hubharness import ARTIFACTS, Hub

from batchspawner.hub.sessions import ENDED_WORDS
from e2e.conftest import require

NODE_CMD = "/opt/jhpc/venv/bin/batchspawner-singleuser"

CONFIG = """
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.spawner_class = 'batchspawner.MultiSlurmSpawner'
c.Spawner.poll_interval = 2
c.SlurmSpawner.exec_prefix = {prefix!r}
c.SlurmSpawner.batchspawner_singleuser_cmd = {node_cmd!r}
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.status_interval = 2
c.MultiSlurmSpawner.daemon_resolver = {resolver!r}
c.JupyterHub.allow_named_servers = True
"""

# the package's pages (session cards, job-ended notes), as the example config enables them
WEB_CONFIG = """
import batchspawner.hub.web
c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
"""


@pytest.fixture(scope="module")
def current():
    ok, why = clustertools.available()
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    return clustertools.start("current")


@pytest.fixture(scope="module")
def hub(current, tmp_path_factory, jupyterhub_version):
    hub = clustertools.cluster_hub(current, CONFIG + WEB_CONFIG, tmp_path_factory.mktemp("hub-current"),
                                   node_cmd=NODE_CMD).start()  # fmt: skip
    yield hub
    # jobs of this hub's users still alive: cancelled by the controller (only this cluster's)
    clustertools.finish_hub(hub, "cluster-current", [current])


def routes(hub):
    r = requests.get(f"http://127.0.0.1:{hub.proxy_api_port}/api/routes",
                     headers={"Authorization": f"token {hub.proxy_token}"}, timeout=10)  # fmt: skip
    r.raise_for_status()
    return r.json()


def route_target(hub, name, server=""):
    path = f"/user/{name}/{server + '/' if server else ''}"
    for spec, route in routes(hub).items():
        if spec.rstrip("/") == path.rstrip("/"):
            return route["target"]
    return None


def job_of(hub, name, server=""):
    return hub.api("GET", f"/users/{name}").json()["servers"][server]["state"]["job_id"]


def wait_job_gone(cluster, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_id not in [j[0] for j in cluster.live_jobs()]:
            return True
        time.sleep(0.5)
    return False


def check_views(cluster, jobs, cpus_per_node, accounts=None):
    """This Slurm version's squeue/scontrol/sinfo answers, parsed by the package's own parsers:
    the shared status query, the session card's details and the form's partition facts.
    ``accounts``: alice's accounts as sacctmgr lists them (None: the cluster has no slurmdbd)."""
    views = clustertools.parsed_views(cluster, [j[0] for j in jobs])
    raw = views["raw"]
    for job_id, _, node in jobs:
        status = views["status"][job_id]
        assert status.state.name == "RUNNING" and status.host == node, (status, raw)
        card = views["details"][job_id]
        assert card["native"] == "RUNNING" and card["node"] == node, (card, raw["details"])
        assert card["partition"] == "debug" and card["cores"] == "1", (card, raw["details"])
        assert card["time_limit"] == 1800 and card["start"] and card["submit"], (card, raw["details"])
    debug = views["partitions"]["debug"]
    assert debug.up and debug.nodes == len(cluster.nodes) and debug.max_time is None, (debug, raw["scontrol"])
    total = cpus_per_node * len(cluster.nodes)
    assert debug.cpus_total == total and debug.cpus_idle <= total - len(jobs), (debug, raw["sinfo"])
    # the form's words for the partition (sinfo's idle cores of scontrol's partition)
    assert views["form"]["debug"] == f"debug: {debug.cpus_idle} of {total} cores free now; no time limit", views["form"]
    # with an accounting database (current: scripts/cluster/accounting.sh) alice's own accounts;
    # without (lts), this version's sacctmgr refusal means "no account list" on the form, never
    # its words taken for account names
    assert views["accounts"] == accounts, raw["sacctmgr"]


def spawn_ready(hub, name, server=""):
    r, seconds = hub.spawn(name, server=server)
    assert r.status_code in (201, 202), r.text
    model = hub.server_model(name, server)
    assert model and model["ready"], hub.log_tail()
    return seconds


def test_spawn_through_login_node_runs_on_the_nodes_own_python(current, hub):
    seconds = spawn_ready(hub, "alice")
    job_id = job_of(hub, "alice")
    state = {j[0]: j for j in current.jobs("alice")}[job_id]
    assert state[1] == "RUNNING" and state[2] in current.nodes, state
    node = state[2]
    # the proxy routes to the node's own address, never to loopback
    target = route_target(hub, "alice")
    assert target and target.startswith(f"http://{current.addr[node]}:"), (target, routes(hub))
    resp = hub.user_request("alice", "api")
    assert resp.status_code == 200, resp.text
    # the server's process on the node runs the node's Python (sid's python3 venv), as alice
    ps = current.run(node, ["ps", "-o", "user=,args=", "-u", "alice"]).stdout
    assert "/opt/jhpc/venv/bin/python" in ps and "jupyterhub-singleuser" in ps, ps
    # every scheduler command went through the login node: the hub's own 22.05 client never ran
    # against this cluster (it could not talk to 26.05 anyway)
    log = hub.log_text()
    assert "ssh -i" in log and f"alice@{current.addr['login']}" in log
    print(f"current: submit->ready {seconds:.2f} s on {node} (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_job_gone(current, job_id), current.jobs("alice")


def restart_keeps_server(hub, name="alice"):
    """A hub restart keeps the running server: the same job, the same route, and it answers."""
    job_id, target = job_of(hub, name), route_target(hub, name)
    assert job_id and target, routes(hub)
    hub.restart()
    model = hub.server_model(name)
    assert model and model["ready"], hub.log_tail()
    assert job_of(hub, name) == job_id
    assert route_target(hub, name) == target, routes(hub)
    assert hub.user_request(name, "api").status_code == 200
    return job_id


def outside_cancel_is_noticed(hub, cancel, gone, ended_state, name="alice", timeout=45):
    """An administrator ends the job outside the hub (``cancel(job_id)``): the hub drops the server,
    the job is gone (``gone(job_id)``), and the hub says how it ended: the server's saved state
    and the user's job-ended note (``/hub/hpc/cards``) name the job and ``ended_state``.
    Returns the seconds from the cancel to the server's drop."""
    job_id = job_of(hub, name)
    cancel(job_id)
    t0 = time.monotonic()
    while time.monotonic() < t0 + timeout and hub.server_model(name) is not None:
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    assert hub.server_model(name) is None, hub.log_tail()
    assert gone(job_id)
    user = hub.api("GET", f"/users/{name}", params={"include_stopped_servers": "1"}).json()
    ended = user["servers"][""]["state"].get("last_ended") or {}
    assert ended.get("job_id") == job_id and ended.get("state") == ended_state, user["servers"]
    note = hub.login_session(name).get(hub.url + "/hub/hpc/cards", timeout=30).text
    assert 'id="hpc-ended-default"' in note and f'data-job-id="{job_id}"' in note, note
    assert f'data-state="{ended_state}"' in note and ENDED_WORDS[ended_state] in note, note
    return seconds


def restart_then_outside_scancel(cluster, hub):
    """Spawn, restart the hub (the server stays), then an administrator's ``scancel`` as root on the
    cluster's controller: the hub notices, drops the server and says the job was cancelled."""
    spawn_ready(hub, "alice")
    job_id = restart_keeps_server(hub)
    seconds = outside_cancel_is_noticed(hub, lambda job: cluster.run("ctl", ["scancel", job]),
                                        lambda job: wait_job_gone(cluster, job), "CANCELLED")  # fmt: skip
    print(f"{cluster.name}: scancel of job {job_id} -> server dropped {seconds:.1f} s")


def test_hub_restart_keeps_server_then_outside_scancel_is_noticed(current, hub):
    restart_then_outside_scancel(current, hub)


def test_two_servers_of_one_user_on_two_nodes(current, hub):
    spawn_ready(hub, "alice", "one")
    spawn_ready(hub, "alice", "two")
    jobs = {j[0]: j for j in current.jobs("alice")}
    first, second = jobs[job_of(hub, "alice", "one")], jobs[job_of(hub, "alice", "two")]
    assert first[1] == second[1] == "RUNNING"
    # one CPU per node: the second job had to land on the other node
    assert {first[2], second[2]} == set(current.nodes), (first, second)
    for server, job in (("one", first), ("two", second)):
        target = route_target(hub, "alice", server)
        assert target and target.startswith(f"http://{current.addr[job[2]]}:"), (server, target)
        assert hub.user_request("alice", "api", server=server).status_code == 200
    check_views(current, [first, second], cpus_per_node=1, accounts=["chem", "physics"])
    for server, job in (("one", first), ("two", second)):
        assert hub.stop_server("alice", server)
        assert wait_job_gone(current, job[0])


def test_ipv6_only_hub_login_and_route(current, tmp_path, jupyterhub_version):
    """The same cluster over IPv6 alone: the hub's API on the bridge's IPv6 address, ssh to the
    login node's IPv6 address, the server bound to ``::`` and routed at the node's IPv6 address."""
    known_hosts = tmp_path / "known_hosts"
    proxy_token = secrets.token_hex(16)
    config = CONFIG.format(hub_ip=current.hub_ip6, prefix=current.ssh_prefix(str(known_hosts), ipv6=True),
                           node_cmd=NODE_CMD, resolver={n: current.addr6[n] for n in current.nodes})  # fmt: skip
    hub = Hub(tmp_path / "hub6", config + "c.Spawner.ip = '::'\n", env={"CONFIGPROXY_AUTH_TOKEN": proxy_token})
    hub.proxy_token = proxy_token
    hub.start()
    try:
        spawn_ready(hub, "alice")
        job_id = job_of(hub, "alice")
        node = {j[0]: j for j in current.jobs("alice")}[job_id][2]
        target = route_target(hub, "alice")
        assert target and target.startswith(f"http://[{current.addr6[node]}]:"), (target, routes(hub))
        assert hub.user_request("alice", "api").status_code == 200
        assert hub.stop_server("alice")
        assert wait_job_gone(current, job_id)
    finally:
        hub.stop()
        ARTIFACTS.joinpath("hub-logs").mkdir(parents=True, exist_ok=True)
        if hub.log_path.exists():
            shutil.copy(hub.log_path, ARTIFACTS / "hub-logs" / "cluster-current-ipv6.log")
        for job_id, _, _ in current.live_jobs("alice"):
            current.run("ctl", ["scancel", job_id], check=False)
