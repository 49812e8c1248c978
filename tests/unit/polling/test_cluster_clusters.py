"""Partition facts of another cluster of a multi-cluster client (``--clusters=NAME``, issue 26).

Every query names the cluster (scontrol, sinfo, sacctmgr ``cluster=NAME``); the answers are read in
Slurm's own -M format (fixtures slurm/*clusters*: sinfo prints ``CLUSTER: NAME`` and its column
titles without -h, scontrol prints no such line). Another cluster's table, an unknown cluster,
an error, nothing or garbage: no facts, nothing refused, never an exception out of a round.
"""

from __future__ import annotations

import pytest
from fakes import FakeRunner, Reply, fixture

from batchspawner.polling.cluster import ClusterInfo, cluster_name, cluster_table

SCONTROL = fixture("slurm/scontrol_clusters_partitions.txt")
SINFO = fixture("slurm/sinfo_clusters_cpus.txt")
UNKNOWN = fixture("slurm/sinfo_clusters_unknown.stderr")
ASSOC = fixture("slurm/sacctmgr_assoc_cluster.txt")
DBD_DOWN = fixture("slurm/squeue_clusters_dbd_down.stderr").replace("squeue", "scontrol")


def cluster_answers(scontrol=SCONTROL, sinfo=SINFO, assoc=ASSOC):
    def respond(argv, stdin):
        if argv[0] == "scontrol":
            return scontrol if isinstance(scontrol, Reply) else Reply(stdout=scontrol)
        if argv[0] == "sinfo":
            return sinfo if isinstance(sinfo, Reply) else Reply(stdout=sinfo)
        if argv[0] == "sacctmgr":
            return Reply(stdout=assoc)
        raise AssertionError(argv)

    return respond


@pytest.mark.parametrize("name", ["current", "beta-2", "hpc_a", "C1"])
def test_cluster_names_slurm_accepts(name):
    assert cluster_name(name) == name


@pytest.mark.parametrize("name", ["", "all", "ALL", "a,b", "a b", "a;id", "-M", "x\n#SBATCH", "a" * 41, None, 3])
def test_anything_but_one_cluster_name_is_refused(name):
    with pytest.raises(ValueError):
        cluster_name(name)
    with pytest.raises(ValueError):
        ClusterInfo(runner=FakeRunner(), cluster=name) if name else cluster_name(name)


def test_cluster_table_keeps_the_named_clusters_rows_only():
    assert cluster_table(SINFO, "current", header_required=True).splitlines() == [
        "debug|up|0/1/0/1|(null)", "debug|up|0/1/0/1|gpu:a100:2", "gpu|up|0/1/0/1|gpu:a100:2",
        "short|up|0/1/0/1|(null)", "short|up|0/1/0/1|gpu:a100:2"]
    assert cluster_table(SINFO, "CURRENT", header_required=True)  # Slurm stores names in lower case
    with pytest.raises(ValueError, match="cluster 'current', not 'beta'"):
        cluster_table(SINFO, "beta", header_required=True)
    with pytest.raises(ValueError, match="no 'CLUSTER: current' line"):
        cluster_table("debug|up|0/2/0/2|(null)\n", "current", header_required=True)
    assert cluster_table(SCONTROL, "current", header_required=False) == SCONTROL.rstrip("\n")


async def test_every_query_names_the_cluster_and_the_facts_are_its_own():
    runner = FakeRunner(cluster_answers())
    info = ClusterInfo(runner=runner, cluster="current")
    await info.refresh()
    assert [c.argv for c in runner.calls] == [
        ["scontrol", "--clusters=current", "show", "partition", "-o"],
        ["sinfo", "--clusters=current", "-o", "%R|%a|%C|%G"],  # no -h: the CLUSTER line is the proof
    ]
    assert set(info.partitions) == {"debug", "gpu", "short"}
    short = info.partitions["short"]
    assert (short.max_cpus_per_node, short.max_time, short.max_mem_per_node_mb) == (1, 20 * 60, 1000)
    assert (short.cpus_idle, short.cpus_total, short.gpus) == (2, 2, {"a100": 2})
    assert info.describe("short") == "short: 2 of 2 cores free now; at most 1 cores per node, 1000M memory per node, " \
                                     "20 min per job"
    assert info.check("short", nprocs=2) == ("nprocs", "is more than partition short allows (at most 1 cores per node)")
    assert info.check("short", runtime_s=3600)[0] == "runtime"
    assert info.check("debug", nprocs=2) is None
    assert await info.user_associations("alice") == {"chem": {"long"}, "physics": {"normal"}}
    assert runner.calls[-1].argv == ["sacctmgr", "-nP", "show", "assoc", "user=alice", "cluster=current",
                                     "format=account,qos"]


async def test_the_default_cluster_asks_as_before():
    runner = FakeRunner(cluster_answers(scontrol=fixture("slurm/scontrol_partitions.txt"),
                                        sinfo=fixture("slurm/sinfo_cpus.txt")))
    info = ClusterInfo(runner=runner)
    await info.refresh()
    await info.user_associations("alice")
    assert [c.argv for c in runner.calls] == [
        ["scontrol", "show", "partition", "-o"], ["sinfo", "-h", "-o", "%R|%a|%C|%G"],
        ["scontrol", "show", "config"],  # its name (this answer has none: sacctmgr as before)
        ["sacctmgr", "-nP", "show", "assoc", "user=alice", "format=account,qos"]]


@pytest.mark.parametrize("scontrol,sinfo", [
    pytest.param(SCONTROL, Reply(returncode=1, stderr=UNKNOWN), id="unknown-cluster"),
    pytest.param(Reply(returncode=1, stderr=UNKNOWN.replace("sinfo", "scontrol")), SINFO, id="scontrol-refuses"),
    pytest.param(SCONTROL, SINFO.replace("CLUSTER: current", "CLUSTER: beta"), id="another-clusters-table"),
    pytest.param("CLUSTER: beta\n" + SCONTROL, SINFO, id="scontrol-of-another-cluster"),
    pytest.param(SCONTROL, "\n".join(SINFO.splitlines()[1:]), id="sinfo-without-its-cluster-line"),
    pytest.param(SCONTROL, "", id="empty-sinfo"),
    pytest.param(SCONTROL, Reply(timeout=True), id="sinfo-hangs"),
    pytest.param(Reply(returncode=1, stderr=DBD_DOWN), SINFO, id="accounting-database-down"),
])
async def test_no_facts_when_the_answer_is_not_the_named_clusters(scontrol, sinfo):
    info = ClusterInfo(runner=FakeRunner(cluster_answers(scontrol, sinfo)), cluster="current")
    await info.background_round()  # never raises: the round fails, logged
    assert info.partitions == {} and not info.updated_at
    assert info.check("short", nprocs=64, runtime_s=10**6) is None  # nothing refused


@pytest.mark.parametrize("scontrol,sinfo", [
    pytest.param("", "CLUSTER: current\nPARTITION|AVAIL|CPUS(A/I/O/T)|GRES\n", id="empty-tables"),
    pytest.param("\x00garbage PartitionName\n<html>", "CLUSTER: current\n%%%|||\nnot|a|row\n", id="garbage"),
])
async def test_empty_or_garbage_tables_give_no_partitions(scontrol, sinfo):
    info = ClusterInfo(runner=FakeRunner(cluster_answers(scontrol, sinfo)), cluster="current")
    await info.background_round()
    assert info.partitions == {}
    assert info.check("short", nprocs=64) is None and info.describe("short") == ""
