"""Each Slurm profile's form facts come from ITS cluster, asked the way its spawner asks the scheduler
(wrapspawner/factsource.py, issue 22: the hub off the nodes).

Two profiles in one hub: one on the hub's own Slurm (the "slurm" key, faked as in tests/conftest.py),
one over ssh (``exec_prefix = "ssh ... login"``) whose status runner is injected (a fake with an
ssh prefix). Both clusters have a partition ``debug`` with different limits, so a fact of the wrong
cluster shows up.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from fakes import FakeRunner, Reply, fixture
from wraphelpers import make_wrapper

from batchspawner.core.options import OptionError
from batchspawner.polling.cluster import ClusterInfo
from wrapspawner import ProfilesSpawner, factsource

HOST_SCONTROL = fixture("slurm/scontrol_partitions.txt")  # debug (no limits), jhpc-small (2 cores, 4 h)
HOST_SINFO = fixture("slurm/sinfo_cpus.txt")
REMOTE_SCONTROL = (
    "PartitionName=debug State=UP MaxTime=00:30:00 MaxCPUsPerNode=1 MaxMemPerNode=UNLIMITED TotalNodes=2\n"
    "PartitionName=batch State=UP MaxTime=2-00:00:00 MaxCPUsPerNode=1 MaxMemPerNode=UNLIMITED TotalNodes=2\n"
)
REMOTE_SINFO = "debug|up|0/2/0/2|(null)\nbatch|up|1/1/0/2|(null)\n"
SSH = "ssh -o BatchMode=yes {username}@login.cluster.example"


def answering(scontrol, sinfo, delay=0.0):
    def respond(argv, stdin):
        if argv[:2] == ["scontrol", "show"]:
            return Reply(stdout=scontrol, delay=delay)
        if argv[0] == "sinfo":
            return Reply(stdout=sinfo, delay=delay)
        if argv[0] == "sacctmgr":
            return Reply(returncode=1, stderr="sacctmgr: error: Problem talking to the database", delay=delay)
        raise AssertionError(argv)

    return respond


FIELDS = {
    "partition": {"type": "choice", "choices": {"debug": "debug", "jhpc-small": "jhpc-small", "batch": "batch"},
                  "default": "debug"},
    "nprocs": {"type": "int", "min": 1, "max": 8, "default": 1, "label": "Cores"},
}


def profiles(remote_runner):
    return [
        {"key": "host", "display": "This host", "class": "batchspawner.SlurmSpawner", "fields": FIELDS},
        {"key": "remote", "display": "Cluster over ssh", "class": "batchspawner.SlurmSpawner", "fields": FIELDS,
         "config": {"exec_prefix": SSH, "status_runner": remote_runner}},
    ]


def ssh_fake(delay=0.0):
    return FakeRunner(answering(REMOTE_SCONTROL, REMOTE_SINFO, delay), prefix=["ssh", "login"], remote_shell=True)


def section(form, key):
    start = form.index(f'id="profile-{key}"')
    end = form.find("<fieldset", start)
    return form[start:end if end > 0 else len(form)]


def described(part):
    return dict(re.findall(r'<li class="hpc-partition" data-partition="([^"]+)">([^<]*)</li>', part))


async def test_each_profile_section_shows_its_own_clusters_partitions():
    host = FakeRunner(answering(HOST_SCONTROL, HOST_SINFO))
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=host)
    remote = ssh_fake()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(remote), cluster_wait=1)
    form = await wrapper.get_options_form()
    here, there = described(section(form, "host")), described(section(form, "remote"))
    assert set(here) == {"debug", "jhpc-small"} and "no time limit" in here["debug"], here
    assert set(there) == {"debug", "batch"}, there
    assert "at most 1 cores per node" in there["debug"] and "30 min" in there["debug"], there
    # the partition options' maxima for the browser: the remote debug is capped, the host's is not
    remote_debug = re.search(r'<option value="debug"[^>]*>', section(form, "remote")).group(0)
    host_debug = re.search(r'<option value="debug"[^>]*>', section(form, "host")).group(0)
    assert 'data-max-cores="1"' in remote_debug and "data-max-cores" not in host_debug
    # each cluster was asked by its own runner; the remote queries get none of the hub's variables
    assert {c.argv[0] for c in remote.calls} >= {"scontrol", "sinfo"}
    assert all(c.env == {} for c in remote.calls), [c.env for c in remote.calls]
    assert {c.argv[0] for c in host.calls} >= {"scontrol", "sinfo"}


async def test_server_refuses_above_the_ssh_clusters_limit_and_allows_it_on_the_host():
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=FakeRunner(answering(HOST_SCONTROL, HOST_SINFO)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(ssh_fake()), cluster_wait=1)
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "remote", "partition": "debug", "nprocs": "2"})
    assert err.value.field == "nprocs" and "at most 1" in str(err.value)
    profile, values = await wrapper.validate_options({"profile": "host", "partition": "debug", "nprocs": "2"})
    assert profile.key == "host" and str(values["nprocs"]) == "2"
    # the host's own limit still holds on the host profile (jhpc-small: 2 cores)
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "host", "partition": "jhpc-small", "nprocs": "3"})
    assert err.value.field == "nprocs"


async def test_a_hanging_remote_cluster_holds_the_form_at_most_the_bound_and_borrows_nothing():
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=FakeRunner(answering(HOST_SCONTROL, HOST_SINFO)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(ssh_fake(delay=30)), cluster_wait=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    form = await wrapper.get_options_form()
    assert loop.time() - t0 < 1.0
    assert described(section(form, "remote")) == {}  # never the host's partitions
    assert "not known yet" in section(form, "remote") and "not known yet" not in section(form, "host")
    assert set(described(section(form, "host"))) == {"debug", "jhpc-small"}
    t0 = loop.time()
    # unknown facts: nothing refused, the scheduler judges at submission
    await wrapper.validate_options({"profile": "remote", "partition": "debug", "nprocs": "8"})
    assert loop.time() - t0 < 1.0


def test_local_profiles_keep_the_slurm_key():
    ClusterInfo._registry["slurm"] = local = ClusterInfo(runner=FakeRunner())
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(ssh_fake()))
    assert wrapper.cluster_info(wrapper.profile("host")) is local
    assert wrapper.cluster_info(wrapper.profile("remote")) is not local
    not_slurm = make_wrapper(ProfilesSpawner, profiles=[{"key": "l", "class": "jupyterhub.spawner.LocalProcessSpawner"}])
    assert not_slurm.cluster_info(not_slurm.profile("l")) is None


def test_ssh_users_share_a_poller_only_with_the_same_identity():
    per_user = [{"key": "c", "class": "batchspawner.SlurmSpawner", "config": {"exec_prefix": SSH}}]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=per_user)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=per_user)
    a, b = alice.cluster_info(alice.profile("c")), bob.cluster_info(bob.profile("c"))
    assert a is not None and b is not None and a is not b
    assert a is not ClusterInfo._registry["slurm"] and b is not ClusterInfo._registry["slurm"]
    assert a.runner.prefix[-1] == "alice@login.cluster.example" and b.runner.prefix[-1] == "bob@login.cluster.example"
    assert a is alice.cluster_info(alice.profile("c"))  # one poller per endpoint, not per render
    # one service identity for everyone: one poller, whoever asks
    shared = [{"key": "c", "class": "batchspawner.SlurmSpawner",
               "config": {"exec_prefix": "ssh -i /etc/jhpc/facts_key svc@login.cluster.example"}}]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=shared)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=shared)
    assert alice.cluster_info(alice.profile("c")) is bob.cluster_info(bob.profile("c"))
    # the status identity the spawner uses (status_exec_prefix) is the facts' identity too
    admin = [{"key": "c", "class": "batchspawner.SlurmSpawner",
              "config": {"exec_prefix": SSH, "status_exec_prefix": "ssh svc@login.cluster.example"}}]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=admin)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=admin)
    assert alice.cluster_info(alice.profile("c")) is bob.cluster_info(bob.profile("c"))


def test_submit_hosts_profiles_ask_over_ssh_per_ssh_user():
    hosts = [{"key": "c", "class": "batchspawner.SlurmSpawner",
              "config": {"submit_hosts": ["login1", "login2"], "exec_prefix": ""}}]
    alice = make_wrapper(ProfilesSpawner, name="alice", profiles=hosts)
    bob = make_wrapper(ProfilesSpawner, name="bob", profiles=hosts)
    a, b = alice.cluster_info(alice.profile("c")), bob.cluster_info(bob.profile("c"))
    assert a is not ClusterInfo._registry["slurm"] and a is not b
    assert [h.host for h in a.runner.hosts] == ["login1", "login2"]


def test_a_multi_cluster_profile_gets_its_own_clusters_facts_never_the_default_clusters():
    other = [{"key": "c", "class": "batchspawner.SlurmSpawner", "config": {"req_cluster": "beta"}}]
    wrapper = make_wrapper(ProfilesSpawner, profiles=other)
    info = wrapper.cluster_info(wrapper.profile("c"))
    assert info is not ClusterInfo._registry["slurm"] and info.cluster == "beta"  # test_factsource_clusters.py


async def test_kick_at_start_starts_each_profiles_cluster():
    ClusterInfo._registry["slurm"] = local = ClusterInfo(runner=FakeRunner(answering(HOST_SCONTROL, HOST_SINFO)))
    remote = ssh_fake()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(remote))
    info = wrapper.cluster_info(wrapper.profile("remote"))
    assert local.running() and info.running()
    await asyncio.sleep(0.05)
    assert "scontrol" in remote.commands()
    assert factsource.LOCAL_KEY == "slurm"


async def test_account_fields_offer_and_check_the_users_associations_on_its_own_cluster():
    def with_assoc(scontrol, sinfo, assoc):
        base = answering(scontrol, sinfo)

        def respond(argv, stdin):
            if argv[0] == "sacctmgr":
                assert "user=alice" in argv
                return Reply(stdout=assoc)
            return base(argv, stdin)

        return respond

    ClusterInfo._registry["slurm"] = ClusterInfo(runner=FakeRunner(with_assoc(HOST_SCONTROL, HOST_SINFO, "hostproj|normal\n")))
    remote = FakeRunner(with_assoc(REMOTE_SCONTROL, REMOTE_SINFO, "farproj|long\n"), prefix=["ssh", "login"],
                        remote_shell=True)
    both = [dict(p, fields={**p["fields"], "account": {"type": "account"}}) for p in profiles(remote)]
    wrapper = make_wrapper(ProfilesSpawner, profiles=both, cluster_wait=1)
    form = await wrapper.get_options_form()
    accounts = {key: re.findall(r'value="([^"]*)"', re.search(r'<select[^>]*name="%s.account".*?</select>' % key,
                                                             section(form, key), re.S).group(0))
                for key in ("host", "remote")}  # fmt: skip
    assert accounts == {"host": ["", "hostproj"], "remote": ["", "farproj"]}
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "remote", "account": "hostproj"})
    assert err.value.field == "account"
    await wrapper.validate_options({"profile": "remote", "account": "farproj"})
    await wrapper.validate_options({"profile": "host", "account": "hostproj"})
    assert any(c.argv[0] == "sacctmgr" for c in remote.calls)


async def test_a_failing_remote_cluster_is_named_in_the_log(caplog):
    def refuse(argv, stdin):
        return Reply(returncode=255, stderr="ssh: connect to host login port 22: Connection refused")

    remote = FakeRunner(refuse, prefix=["ssh", "-i", "/etc/jhpc/key", "svc@login"], remote_shell=True)
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(remote), cluster_wait=0.5)
    caplog.set_level("WARNING", logger="batchspawner.polling.cluster")
    form = await wrapper.get_options_form()
    assert "not known yet" in section(form, "remote")
    assert any("over ssh to svc@login" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert not any("/etc/jhpc/key" in r.getMessage() for r in caplog.records)
