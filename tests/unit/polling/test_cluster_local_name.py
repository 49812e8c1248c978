"""The default cluster's associations are that cluster's only (issue 26, forms that know the cluster).

``sacctmgr show assoc user=NAME`` without ``cluster=`` lists the user's associations on every cluster
of the accounting database: on a multi-cluster site the form offered accounts the default cluster
does not know (the submission then failed with "Invalid account"). The default cluster's name comes
from ``scontrol show config`` (real output: Slurm 22.05 on the host, fixture), asked once.
"""

from __future__ import annotations

import pytest
from fakes import FakeRunner, Reply, fixture

from batchspawner.polling.cluster import ClusterInfo, parse_cluster_name

CONFIG_2205 = fixture("slurm/scontrol_show_config_2205.txt")
# two clusters in one accounting database: alice's associations on both (sacctmgr -nP ... format=account,qos)
ALL_CLUSTERS = "physics|normal\nchem|long\nastro|normal\n"
LOCAL_ONLY = "physics|normal\nchem|long\n"


def site(config=CONFIG_2205):
    def respond(argv, stdin):
        if argv[:3] == ["scontrol", "show", "config"]:
            return config if isinstance(config, Reply) else Reply(stdout=config)
        if argv[0] == "sacctmgr":
            return Reply(stdout=LOCAL_ONLY if "cluster=localcluster" in argv else ALL_CLUSTERS)
        raise AssertionError(argv)

    return respond


def test_cluster_name_from_real_scontrol_show_config():
    assert parse_cluster_name(CONFIG_2205) == "localcluster"
    assert parse_cluster_name("ClusterName             = current\n") == "current"
    for text in ("", "garbage", "ClusterName = all\n", "ClusterName = a;rm\n", "ClusterName = \n"):
        assert parse_cluster_name(text) == "", text


async def test_the_default_clusters_accounts_are_its_own_and_its_name_is_asked_once():
    runner = FakeRunner(site())
    info = ClusterInfo(runner=runner)
    assert await info.user_associations("alice") == {"physics": {"normal"}, "chem": {"long"}}
    assert await info.user_accounts("bob") == ["chem", "physics"]
    assert [c.argv for c in runner.calls] == [
        ["scontrol", "show", "config"],
        ["sacctmgr", "-nP", "show", "assoc", "user=alice", "cluster=localcluster", "format=account,qos"],
        ["sacctmgr", "-nP", "show", "assoc", "user=bob", "cluster=localcluster", "format=account,qos"],
    ]


@pytest.mark.parametrize("config", [
    pytest.param(Reply(returncode=1, stderr="slurm_load_ctl_conf error: Unable to contact slurm controller\n"), id="error"),
    pytest.param(Reply(timeout=True), id="hangs"),
    pytest.param("", id="silent"),
    pytest.param("Configuration data as of never\nClusterName = ../../x\n", id="garbage"),
])
async def test_without_a_name_the_accounts_are_asked_as_before(config):
    runner = FakeRunner(site(config))
    info = ClusterInfo(runner=runner)
    assert sorted(await info.user_associations("alice")) == ["astro", "chem", "physics"]
    assert runner.calls[-1].argv == ["sacctmgr", "-nP", "show", "assoc", "user=alice", "format=account,qos"]


async def test_a_named_cluster_of_a_multi_cluster_client_never_asks_for_the_default_name():
    runner = FakeRunner(site())
    info = ClusterInfo(runner=runner, cluster="beta")
    await info.user_associations("alice")
    assert [c.argv[0] for c in runner.calls] == ["sacctmgr"]
    assert "cluster=beta" in runner.calls[0].argv
