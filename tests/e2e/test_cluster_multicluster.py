"""A Slurm multi-cluster profile (``req_cluster``) on a real cluster: Slurm 26.05 with slurmdbd.

Cluster ``current`` (scripts/cluster/cluster.sh, tests/e2e/test_cluster_current.py) runs slurmdbd,
which ``--clusters``/``-M`` needs. The hub reaches it only through its login node (``exec_prefix`` =
ssh as the user); the profile's child names the cluster (``req_cluster = "current"``), so every
command it runs there says ``--clusters=current``: sbatch (``#SBATCH --clusters``, ``--parsable``
prints ``ID;current``), squeue, scontrol, scancel, and the form's facts (``scontrol``/``sinfo
--clusters=current``, ``sacctmgr ... cluster=current``: wrapspawner/factsource.py). A partition with
limits (20 min, 1 core per node) is made live on the controller for the module and deleted after.
"""

from __future__ import annotations

import re
import time

import clustertools
import pytest
from test_cluster_current import NODE_CMD, WEB_CONFIG, current, route_target, wait_job_gone  # noqa: F401 (fixture)

from e2e.conftest import require

LIMITED = "mclimited"  # made live by this module only (test_cluster_lts.py makes its own "short")

CONFIG = clustertools.PROFILES_HUB + """
c.ProfilesSpawner.cluster_wait = 15
c.ProfilesSpawner.profiles = [
    {{'key': 'mc', 'display': 'Cluster current (--clusters=current)', 'class': 'batchspawner.MultiSlurmSpawner',
      'config': {{'req_cluster': 'current', 'exec_prefix': {prefix!r}, 'batchspawner_singleuser_cmd': {node_cmd!r},
                 'daemon_resolver': {resolver!r}}},
      'fields': {{'partition': {{'type': 'choice', 'choices': {{'debug': 'debug', {limited!r}: {limited!r}}},
                                'default': 'debug'}},
                 'nprocs': {{'type': 'int', 'min': 1, 'max': 4, 'default': 1, 'label': 'Cores'}},
                 'runtime': {{'type': 'walltime', 'max': '08:00:00', 'default': '00:10:00'}},
                 'account': {{'type': 'account'}}}}}},
]
"""


@pytest.fixture(scope="module")
def limited(current):
    """test_cluster_current's ``current``, with slurmdbd knowing it and the partition LIMITED live."""
    known = current.run("ctl", ["sacctmgr", "-nP", "show", "cluster", "format=cluster"], check=False).stdout.split()
    require("current" in known, "cluster current has no slurmdbd that knows it (multi-cluster -M needs one)")
    current.run("ctl", ["scontrol", "delete", f"PartitionName={LIMITED}"], check=False)
    current.run("ctl", ["scontrol", "create", f"PartitionName={LIMITED}", "Nodes=n1,n2", "MaxTime=00:20:00",
                        "MaxCPUsPerNode=1", "State=UP"])  # fmt: skip
    yield current
    current.run("ctl", ["scontrol", "delete", f"PartitionName={LIMITED}"], check=False)


@pytest.fixture(scope="module")
def hub(current, limited, tmp_path_factory, jupyterhub_version):
    hub = clustertools.cluster_hub(current, CONFIG + WEB_CONFIG, tmp_path_factory.mktemp("hub-multicluster"),
                                   node_cmd=NODE_CMD, limited=LIMITED).start()  # fmt: skip
    yield hub
    clustertools.finish_hub(hub, "cluster-multicluster", [current], user="alice")


def form_of(hub, user="alice"):
    form = hub.login_session(user).get(f"{hub.url}/hub/spawn/{user}/formcheck", timeout=60)
    assert form.status_code == 200, form.text[:500]
    return form.text


def described(form):
    return dict(re.findall(r'<li class="hpc-partition" data-partition="([^"]+)">([^<]*)</li>', form))


def child_state(hub, user, server):
    return hub.api("GET", f"/users/{user}").json()["servers"][server]["state"]["child_state"]


def test_the_form_shows_current_partitions_limits_and_accounts(current, limited, hub):
    t0 = time.monotonic()
    form = form_of(hub)
    seconds = time.monotonic() - t0
    facts = described(form)
    assert set(facts) == {"debug", LIMITED}, (facts, hub.log_tail())
    assert facts["debug"].startswith("debug: ") and " of 2 cores free now" in facts["debug"], facts
    assert f"{LIMITED}: " in facts[LIMITED] and "at most 1 cores per node, 20 min per job" in facts[LIMITED], facts
    limited = re.search(rf'<option value="{LIMITED}"[^>]*>', form).group(0)
    assert 'data-max-time="1200"' in limited and 'data-max-cores="1"' in limited, limited
    # the user's associations on current (sacctmgr ... cluster=current through the login node)
    select = re.search(r'<select[^>]*name="mc\.account".*?</select>', form, re.S).group(0)
    assert re.findall(r'value="([^"]*)"', select) == ["", "chem", "physics"], select
    print(f"multi-cluster form (facts over ssh with --clusters=current): {seconds:.2f} s")


@pytest.mark.parametrize("options,field", [
    ({"runtime": "01:00:00"}, "runtime"),
    ({"nprocs": "2"}, "nprocs"),
])
def test_over_currents_limit_is_400_naming_the_field(current, limited, hub, options, field):
    before = set(current.live_jobs("alice"))
    r = hub.api("POST", "/users/alice/servers/toolong", json={"profile": "mc", "partition": LIMITED, **options})
    assert r.status_code == 400 and field in r.text.lower() and LIMITED in r.text, (r.status_code, r.text)
    assert hub.wait_stopped("alice", "toolong", timeout=20)
    assert set(current.live_jobs("alice")) == before  # nothing submitted
    assert "Traceback" not in hub.log_tail()


def test_a_spawn_within_the_limits_reaches_ready_on_current_and_stops(current, limited, hub):
    t0 = time.monotonic()
    r = hub.api("POST", "/users/alice/servers/mc",
                json={"profile": "mc", "partition": LIMITED, "runtime": "00:15:00", "nprocs": "1",
                      "account": "physics"})  # fmt: skip
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (hub.server_model("alice", "mc") or {}).get("ready"):
        assert hub.server_model("alice", "mc") is not None, hub.log_tail()
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    assert (hub.server_model("alice", "mc") or {}).get("ready"), hub.log_tail()
    state = child_state(hub, "alice", "mc")
    job_id = state["job_id"]
    assert state.get("job_cluster") == "current", state  # sbatch --parsable said "ID;current"
    jobs = {j[0]: j for j in current.jobs("alice")}
    assert jobs[job_id][1] == "RUNNING", jobs
    node = jobs[job_id][2]
    detail = current.run("ctl", ["scontrol", "-o", "show", "job", job_id]).stdout
    assert f"Partition={LIMITED}" in detail and "Account=physics" in detail and "TimeLimit=00:15:00" in detail, detail
    assert route_target(hub, "alice", "mc").startswith(f"http://{current.addr[node]}:")
    assert hub.user_request("alice", "api", server="mc").status_code == 200
    log = hub.log_text()
    assert "--clusters=current" in log, hub.log_tail()
    print(f"multi-cluster spawn on current: submit->ready {seconds:.2f} s on {node} (job {job_id})")
    assert hub.stop_server("alice", "mc")  # scancel --clusters=current, then squeue --clusters=current
    assert wait_job_gone(current, job_id), current.jobs("alice")
