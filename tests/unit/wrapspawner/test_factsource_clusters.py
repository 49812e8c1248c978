"""Profiles on clusters of a Slurm multi-cluster client (``req_cluster``: ``--clusters=NAME``) get
THAT cluster's form facts (wrapspawner/factsource.py, issue 26), asked the way their spawner asks.

Two profiles on the hub's own client, one on cluster ``alpha`` and one on ``beta``, each with an
injected status runner answering in Slurm's real -M format (fixtures slurm/*clusters*). Both
clusters have partitions ``debug`` and ``short`` with different limits, so a fact of the wrong
cluster shows up.
"""

from __future__ import annotations

import re

import pytest
from fakes import FakeRunner, Reply, fixture
from test_factsource import described, section
from wraphelpers import make_wrapper

from batchspawner.core.options import OptionError
from batchspawner.polling.cluster import ClusterInfo
from wrapspawner import ProfilesSpawner

ALPHA_SCONTROL = fixture("slurm/scontrol_clusters_partitions.txt")  # short: 1 core per node, 20 min, 1000M
ALPHA_SINFO = fixture("slurm/sinfo_clusters_cpus.txt").replace("CLUSTER: current", "CLUSTER: alpha")
BETA_SCONTROL = (
    "PartitionName=debug State=UP MaxTime=UNLIMITED MaxCPUsPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TotalNodes=4\n"
    "PartitionName=short State=UP MaxTime=04:00:00 MaxCPUsPerNode=8 MaxMemPerNode=UNLIMITED TotalNodes=4\n"
)
BETA_SINFO = "CLUSTER: beta\nPARTITION|AVAIL|CPUS(A/I/O/T)|GRES\ndebug|up|0/32/0/32|(null)\nshort|up|8/24/0/32|gpu:a100:4(S:0-1)\n"
UNKNOWN = fixture("slurm/sinfo_clusters_unknown.stderr")

FIELDS = {
    "partition": {"type": "choice", "choices": {"debug": "debug", "short": "short"}, "default": "debug"},
    "nprocs": {"type": "int", "min": 1, "max": 16, "default": 1, "label": "Cores"},
    "runtime": {"type": "walltime", "max": "08:00:00", "default": "00:10:00"},
    "account": {"type": "account"},
}


def cluster_answers(cluster, scontrol, sinfo, assoc=""):
    def respond(argv, stdin):
        if argv[0] in ("scontrol", "sinfo"):
            assert argv[1] == f"--clusters={cluster}", argv  # every query names its own cluster
            return scontrol if argv[0] == "scontrol" else sinfo
        if argv[0] == "sacctmgr":
            assert f"cluster={cluster}" in argv and "user=alice" in argv, argv
            return Reply(stdout=assoc)
        raise AssertionError(argv)

    return respond


def reply(value):
    return value if isinstance(value, Reply) else Reply(stdout=value)


def runner_for(cluster, scontrol, sinfo, assoc="", **kw):
    def respond(argv, stdin):
        return reply(cluster_answers(cluster, scontrol, sinfo, assoc)(argv, stdin))

    return FakeRunner(respond, **kw)


def profiles(alpha, beta, fields=FIELDS):
    return [
        {"key": "alpha", "display": "Alpha", "class": "batchspawner.MultiSlurmSpawner", "fields": fields,
         "config": {"req_cluster": "alpha", "status_runner": alpha}},
        {"key": "beta", "display": "Beta", "class": "batchspawner.SlurmSpawner", "fields": fields,
         "config": {"req_cluster": "beta", "status_runner": beta}},
        {"key": "home", "display": "Default cluster", "class": "batchspawner.SlurmSpawner", "fields": fields},
    ]


def two_clusters(**kw):
    alpha = runner_for("alpha", ALPHA_SCONTROL, ALPHA_SINFO, fixture("slurm/sacctmgr_assoc_cluster.txt"))
    beta = runner_for("beta", BETA_SCONTROL, BETA_SINFO, "chem-lab|normal\n")
    return alpha, beta, make_wrapper(ProfilesSpawner, profiles=profiles(alpha, beta), cluster_wait=1, **kw)


async def test_two_profiles_on_two_clusters_show_each_their_own_facts():
    alpha, beta, wrapper = two_clusters()
    form = await wrapper.get_options_form()
    a, b = described(section(form, "alpha")), described(section(form, "beta"))
    assert a["short"] == "short: 2 of 2 cores free now; at most 1 cores per node, 1000M memory per node, 20 min per job"
    assert b["short"] == "short: 24 of 32 cores free now; at most 8 cores per node, 4 h 00 min per job"
    assert a["debug"] != b["debug"] and "32 cores" in b["debug"]
    # the default cluster's profile keeps the hub's registered "slurm" facts (none here): never alpha's or beta's
    assert described(section(form, "home")) == {}
    # each profile's accounts are its own cluster's associations
    accounts = {key: re.findall(r'value="([^"]*)"', re.search(r'<select[^>]*name="%s.account".*?</select>' % key,
                                                             section(form, key), re.S).group(0))
                for key in ("alpha", "beta")}  # fmt: skip
    assert accounts == {"alpha": ["", "chem", "physics"], "beta": ["", "chem-lab"]}
    short = re.search(r'<option value="short"[^>]*>', section(form, "alpha")).group(0)
    assert 'data-max-cores="1"' in short
    infos = [wrapper.cluster_info(wrapper.profile(k)) for k in ("alpha", "beta", "home")]
    assert [i.cluster for i in infos] == ["alpha", "beta", ""] and len({id(i) for i in infos}) == 3
    assert {c.argv[0] for c in alpha.calls} == {"scontrol", "sinfo", "sacctmgr"}
    # queries on this machine get the scheduler variables, as the status query does (never the hub's tokens)
    assert all(c.env is not None and not any("TOKEN" in k for k in c.env) for c in alpha.calls)


async def test_over_the_clusters_limit_is_400_naming_the_field():
    _, _, wrapper = two_clusters()
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "alpha", "partition": "short", "nprocs": "2"})
    assert err.value.field == "nprocs" and "at most 1 cores per node" in str(err.value)
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "alpha", "partition": "short", "runtime": "01:00:00"})
    assert err.value.field == "runtime"
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "beta", "account": "physics"})  # alpha's account, not beta's
    assert err.value.field == "account"
    # beta allows 8 cores on short; alpha's debug has no limit
    await wrapper.validate_options({"profile": "beta", "partition": "short", "nprocs": "8"})
    await wrapper.validate_options({"profile": "alpha", "partition": "debug", "nprocs": "2"})
    await wrapper.validate_options({"profile": "alpha", "partition": "short", "nprocs": "1", "account": "physics"})


async def test_a_profile_over_ssh_asks_its_cluster_through_the_login_node():
    remote = runner_for("alpha", ALPHA_SCONTROL, ALPHA_SINFO, prefix=["ssh", "svc@login"], remote_shell=True)
    prof = [{"key": "c", "class": "batchspawner.SlurmSpawner", "fields": FIELDS,
             "config": {"req_cluster": "alpha", "exec_prefix": "ssh svc@login", "status_runner": remote}}]
    wrapper = make_wrapper(ProfilesSpawner, profiles=prof, cluster_wait=1)
    form = await wrapper.get_options_form()
    assert "at most 1 cores per node" in described(section(form, "c"))["short"]
    info = wrapper.cluster_info(wrapper.profile("c"))
    assert info.label == "cluster alpha, over ssh to svc@login" and info.idle_after is not None
    assert all(c.env == {} for c in remote.calls)  # the login sets its own Slurm variables


def test_one_poller_per_cluster_and_identity():
    same = [{"key": k, "class": "batchspawner.SlurmSpawner", "config": {"req_cluster": c}}
            for k, c in (("a1", "alpha"), ("a2", "alpha"), ("b", "beta"))]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=same)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=same)
    a1, a2, b = (alice.cluster_info(alice.profile(k)) for k in ("a1", "a2", "b"))
    assert a1 is a2 is bob.cluster_info(bob.profile("a1"))  # the hub's own identity: shared by everyone
    assert a1 is not b and a1 is not ClusterInfo._registry["slurm"] and a1.idle_after is None
    per_user = [{"key": "c", "class": "batchspawner.SlurmSpawner",
                 "config": {"req_cluster": "alpha", "exec_prefix": "ssh {username}@login"}}]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=per_user)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=per_user)
    assert alice.cluster_info(alice.profile("c")) is not bob.cluster_info(bob.profile("c"))


@pytest.mark.parametrize("name", ["alpha,beta", "all", "alpha; touch /tmp/x", "a\n#SBATCH -p x"])
def test_a_name_that_is_not_one_cluster_gets_no_facts_and_runs_nothing(name, caplog):
    runner = FakeRunner()
    prof = [{"key": "c", "class": "batchspawner.SlurmSpawner", "config": {"req_cluster": name, "status_runner": runner}}]
    wrapper = make_wrapper(ProfilesSpawner, profiles=prof)
    caplog.set_level("WARNING", logger="wrapspawner.factsource")
    assert wrapper.cluster_info(wrapper.profile("c")) is None
    assert runner.calls == [] and "not one Slurm cluster name" in caplog.text


@pytest.mark.parametrize("scontrol,sinfo", [
    pytest.param(ALPHA_SCONTROL, Reply(returncode=1, stderr=UNKNOWN), id="unknown-cluster"),
    pytest.param(Reply(returncode=1, stderr="scontrol: error: Unable to contact slurm controller"), ALPHA_SINFO,
                 id="error"),
    pytest.param("", "", id="empty"),
    pytest.param("<html>502 Bad Gateway</html>", "\x1b[31mgarbage|||\n", id="garbage"),
    pytest.param(ALPHA_SCONTROL, BETA_SINFO, id="another-clusters-answer"),
])
async def test_no_facts_fails_open_and_the_form_still_renders(scontrol, sinfo):
    alpha = runner_for("alpha", scontrol, sinfo)
    beta = runner_for("beta", BETA_SCONTROL, BETA_SINFO)
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(alpha, beta), cluster_wait=0.5)
    form = await wrapper.get_options_form()  # never raises (the hub would answer 500)
    assert described(section(form, "alpha")) == {}
    assert "at most 8 cores per node" in described(section(form, "beta"))["short"]
    # nothing known about alpha: nothing refused over limits, the scheduler judges at submission
    profile, values = await wrapper.validate_options({"profile": "alpha", "partition": "short", "nprocs": "16"})
    assert profile.key == "alpha" and str(values["nprocs"]) == "16"
    with pytest.raises(OptionError):  # beta still knows its limits
        await wrapper.validate_options({"profile": "beta", "partition": "short", "nprocs": "9"})
