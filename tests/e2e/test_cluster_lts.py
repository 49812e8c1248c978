"""Slurm 24.11 (Debian trixie) with the hub off the cluster, and one hub over two Slurm versions.

Cluster ``lts`` (scripts/cluster/cluster.sh): controller, one compute node, a login node; the hub
on the host reaches it through the login node over ssh, as for ``current``
(tests/e2e/test_cluster_current.py): spawn, route at the node, stop, a hub restart that keeps the
server, an outside ``scancel`` noticed, and 24.11's squeue/scontrol/sinfo/sacctmgr answers read by
the package's own parsers (one hub for these). Then one hub with two profiles: the host's own Slurm 22.05
(``sudo`` as the user, the package's default) and cluster ``current`` (Slurm 26.05 over ssh),
both servers of one user running at once.
"""

from __future__ import annotations

import re
import shutil
import time

import clustertools
import pytest
import slurmtools
from test_cluster_current import (NODE_CMD, WEB_CONFIG, check_views, job_of, restart_then_outside_scancel,
                                  route_target, spawn_ready, wait_job_gone)

from e2e.conftest import require

LTS_CONFIG = """
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.spawner_class = 'batchspawner.MultiSlurmSpawner'
c.Spawner.poll_interval = 2
c.SlurmSpawner.exec_prefix = {prefix!r}
c.SlurmSpawner.batchspawner_singleuser_cmd = {node_cmd!r}
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.status_interval = 2
c.MultiSlurmSpawner.daemon_resolver = {resolver!r}
"""

MULTI_CONFIG = clustertools.PROFILES_HUB + """
c.ProfilesSpawner.cluster_wait = 10
_runtime = {{'type': 'walltime', 'max': '08:00:00', 'default': '00:30:00'}}
c.ProfilesSpawner.profiles = [
    {{'key': 'host', 'display': 'This host (Slurm 22.05)', 'class': 'batchspawner.SlurmSpawner', 'config': {{}},
      'fields': {{'partition': {{'type': 'choice', 'choices': {{'debug': 'debug', 'jhpc-small': 'jhpc-small'}},
                                'default': 'debug'}}, 'runtime': _runtime}}}},
    {{'key': 'current', 'display': 'Cluster current (Slurm 26.05)', 'class': 'batchspawner.MultiSlurmSpawner',
      'config': {{'exec_prefix': {prefix!r}, 'batchspawner_singleuser_cmd': {node_cmd!r},
                 'daemon_resolver': {resolver!r}}},
      'fields': {{'partition': {{'type': 'choice', 'choices': {{'debug': 'debug', {short!r}: {short!r}}},
                                'default': 'debug'}}, 'runtime': _runtime}}}},
]
"""
SHORT = "short"  # a partition only cluster current has (made live by the test; the host has jhpc-small)


@pytest.fixture(scope="module")
def lts():
    ok, why = clustertools.available()
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    return clustertools.start("lts")


@pytest.fixture(scope="module")
def hub(lts, tmp_path_factory, jupyterhub_version):
    """One hub on ``lts`` for the module; each test leaves no server and no job behind."""
    hub = clustertools.cluster_hub(lts, LTS_CONFIG + WEB_CONFIG, tmp_path_factory.mktemp("hub-lts"),
                                   node_cmd=NODE_CMD).start()  # fmt: skip
    yield hub
    clustertools.finish_hub(hub, "cluster-lts", [lts])


def test_lts_spawn_route_stop(lts, hub):
    seconds = spawn_ready(hub, "alice")
    job_id = job_of(hub, "alice")
    state = {j[0]: j for j in lts.jobs("alice")}[job_id]
    assert state[1] == "RUNNING" and state[2] == "n1", state
    target = route_target(hub, "alice")
    assert target and target.startswith(f"http://{lts.addr['n1']}:"), target
    assert hub.user_request("alice", "api").status_code == 200
    check_views(lts, [state], cpus_per_node=2)
    banner = lts.run("login", ["sbatch", "--version"]).stdout.strip()
    assert banner.startswith("slurm-wlm 24.11"), banner
    print(f"lts ({banner}): submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_job_gone(lts, job_id)


def test_lts_hub_restart_keeps_server_then_outside_scancel_is_noticed(lts, hub):
    restart_then_outside_scancel(lts, hub)  # on 24.11's controller


def test_one_hub_host_slurm_and_current_at_once(slurm, tmp_path, jupyterhub_version):
    ok, why = clustertools.available()
    require(ok, why)
    current = clustertools.start("current")
    # issue 22: a partition with limits that only current has (20 min, 1 core per node)
    current.run("ctl", ["scontrol", "delete", f"PartitionName={SHORT}"], check=False)
    current.run("ctl", ["scontrol", "create", f"PartitionName={SHORT}", "Nodes=n1,n2", "MaxTime=00:20:00",
                        "MaxCPUsPerNode=1", "State=UP"])  # fmt: skip
    hub = clustertools.cluster_hub(current, MULTI_CONFIG, tmp_path, node_cmd=NODE_CMD, short=SHORT).start()
    here = None
    try:
        t0 = time.monotonic()
        before = set(current.live_jobs("alice"))
        form_shows_each_clusters_own_partitions(hub, current)
        # the server checks current's own limit: 1 h is over short's 20 min there (400 naming the field)...
        r = hub.api("POST", "/users/alice/servers/toolong",
                    json={"profile": "current", "partition": SHORT, "runtime": "01:00:00"})  # fmt: skip
        assert r.status_code == 400 and "runtime" in r.text.lower() and SHORT in r.text, (r.status_code, r.text)
        assert hub.wait_stopped("alice", "toolong", timeout=20) and set(current.live_jobs("alice")) == before
        print(f"form facts of two clusters + the refusal: {time.monotonic() - t0:.2f} s")
        # ...and the same 1 h is fine on the host's jhpc-small (4 h): the spawn below uses it
        options = {"host": {"partition": "jhpc-small", "runtime": "01:00:00"}, "current": {}}
        spawn_ready_with = lambda server, profile: hub.spawn("alice", {"profile": profile, **options[profile]},  # noqa: E731
                                                             server=server)  # fmt: skip
        for server, profile in (("here", "host"), ("there", "current")):
            r, _ = spawn_ready_with(server, profile)
            assert r.status_code in (201, 202), r.text
            assert hub.server_model("alice", server)["ready"], hub.log_tail()
        here = job_of_child(hub, "alice", "here")
        there = job_of_child(hub, "alice", "there")
        # both running at once: one job in the host's 22.05, one in cluster current's 26.05
        assert here in slurmtools.live_jobs()
        assert slurmtools.job_state(here) == "RUNNING"
        states = {j[0]: j for j in current.jobs("alice")}
        assert states[there][1] == "RUNNING", states
        assert route_target(hub, "alice", "there").startswith(f"http://{current.addr[states[there][2]]}:")
        for server in ("here", "there"):
            assert hub.user_request("alice", "api", server=server).status_code == 200
        for server in ("here", "there"):
            assert hub.stop_server("alice", server)
        assert wait_job_gone(current, there)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and here in slurmtools.live_jobs():
            time.sleep(0.5)
        assert here not in slurmtools.live_jobs()
    finally:
        clustertools.finish_hub(hub, "cluster-multi", [current])
        current.run("ctl", ["scontrol", "delete", f"PartitionName={SHORT}"], check=False)
        # job ids of the two clusters overlap: cancel on the host only the job this test saw there
        if here and here in slurmtools.live_jobs():
            slurmtools.cancel([here])


def form_shows_each_clusters_own_partitions(hub, current):
    """The spawn form of the two-profile hub: the host profile's section describes the host's
    partitions (jhpc-small, the host's many cores), current's section current's (its 2 one-core
    nodes, short's 20 min), each asked the way its spawner asks (sudo here, ssh to current's login)."""
    session = hub.login_session("alice")
    form = session.get(f"{hub.url}/hub/spawn/alice/formcheck", timeout=60)
    assert form.status_code == 200, form.text[:500]

    def section(key):
        start = form.text.index(f'id="profile-{key}"')
        end = form.text.find("<fieldset", start)
        return form.text[start:end if end > 0 else len(form.text)]

    def described(key):
        return dict(re.findall(r'<li class="hpc-partition" data-partition="([^"]+)">([^<]*)</li>', section(key)))

    host, there = described("host"), described("current")
    assert set(there) == {"debug", SHORT}, there
    assert there["debug"].startswith("debug: ") and " of 2 cores free now" in there["debug"], there
    assert "at most 1 cores per node, 20 min per job" in there[SHORT], there
    assert "jhpc-small" in host and " of 2 cores free now" not in host["debug"], host
    short = re.search(rf'<option value="{SHORT}"[^>]*>', section("current")).group(0)
    assert 'data-max-time="1200"' in short and 'data-max-cores="1"' in short, short


def job_of_child(hub, name, server):
    state = hub.api("GET", f"/users/{name}").json()["servers"][server]["state"]
    return state["child_state"]["job_id"]
