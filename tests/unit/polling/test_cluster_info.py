"""Fields that know the cluster: partitions, limits and free cores from captured scontrol/sinfo output,
checked on the server; accounts from sacctmgr, absent gracefully; never a query per form render."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fakes import FakeRunner, Reply, fixture
from wraphelpers import make_wrapper

from batchspawner.polling.cluster import ClusterInfo, parse_scontrol_partitions, parse_sinfo_cpus
from batchspawner.core.options import OptionError
from wrapspawner import ProfilesSpawner

SCONTROL = fixture("slurm/scontrol_partitions.txt")
SINFO = fixture("slurm/sinfo_cpus.txt")
NO_DB = fixture("slurm/sacctmgr_no_db.stderr")


def respond(argv, stdin):
    if argv[:2] == ["scontrol", "show"]:
        return Reply(stdout=SCONTROL)
    if argv[0] == "sinfo":
        return Reply(stdout=SINFO)
    if argv[0] == "sacctmgr":
        return Reply(returncode=1, stderr=NO_DB)
    raise AssertionError(argv)


PROFILES = [{
    "key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner",
    "fields": {
        "partition": {"type": "choice", "choices": {"debug": "debug", "jhpc-small": "jhpc-small"}, "default": "debug"},
        "nprocs": {"type": "int", "min": 1, "max": 8, "default": 1},
        "runtime": {"type": "walltime", "max": "08:00:00", "default": "01:00:00"},
    },
}]


def test_partitions_parsed_from_captured_output_and_described_in_words():
    parts = parse_scontrol_partitions(SCONTROL)
    small, debug = parts["jhpc-small"], parts["debug"]
    assert (small.max_cpus_per_node, small.max_time, small.nodes) == (2, 4 * 3600, 1)
    assert debug.max_cpus_per_node is None and debug.max_time is None
    for name, (idle, total) in parse_sinfo_cpus(SINFO).items():
        parts[name].cpus_idle, parts[name].cpus_total = idle, total
    assert small.describe() == "jhpc-small: 2 of 2 cores free now; at most 2 cores per node, 4 h 00 min per job"
    assert debug.describe() == "debug: 160 of 160 cores free now; no time limit"


async def test_first_form_waits_once_for_the_cluster_then_renders_read_the_cache():
    runner = FakeRunner(respond)
    info = ClusterInfo._registry["slurm"] = ClusterInfo(runner=runner)
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES)
    # the first render after a hub start waits for the first answer (issue 26: it showed no facts)
    form = await wrapper.get_options_form()
    assert "jhpc-small: 2 of 2 cores free now" in form
    assert [c.argv[0] for c in runner.calls] == ["scontrol", "sinfo"]
    calls = len(runner.calls)
    for _ in range(20):
        await wrapper.get_options_form()
    assert len(runner.calls) == calls  # renders read the cache
    # above the chosen partition's maximum: 400 naming the field, in words
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "custom", "partition": "jhpc-small", "nprocs": "4"})
    assert err.value.field == "nprocs" and "at most 2 cores per node" in str(err.value)
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "custom", "partition": "jhpc-small", "runtime": "05:00:00"})
    assert err.value.field == "runtime" and "at most 4 h" in str(err.value)
    profile, values = await wrapper.validate_options({"profile": "custom", "partition": "debug", "nprocs": "8"})
    assert values["nprocs"] == "8"
    assert info.rounds == 1


async def test_first_form_waits_at_most_cluster_wait_for_a_slow_scheduler():
    def slow(argv, stdin):
        return Reply(stdout=SCONTROL if argv[0] == "scontrol" else SINFO, delay=5)

    runner = FakeRunner(slow)
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=runner)
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES, cluster_wait=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    form = await wrapper.get_options_form()
    assert loop.time() - t0 < 1.5 and "hpc-partition" not in form  # no facts yet, but no long wait
    t0 = loop.time()
    await wrapper.get_options_form()  # still no answer: waits again at most cluster_wait
    assert loop.time() - t0 < 1.5
    ClusterInfo._registry["slurm"]._task.cancel()


async def test_accounts_without_an_accounting_database_are_unknown_not_an_error(caplog):
    caplog.set_level(logging.INFO, "batchspawner.polling.cluster")
    runner = FakeRunner(respond)
    info = ClusterInfo(runner=runner)
    assert await info.user_accounts("carol") is None
    assert await info.user_accounts("carol") is None
    assert [c.argv[0] for c in runner.calls] == ["scontrol", "sacctmgr"]  # its name, then cached
    assert sum("no Slurm accounts" in r.message for r in caplog.records) == 1
    runner.responder = lambda argv, stdin: Reply(stdout="proj001\nproj042\n")
    assert await ClusterInfo(runner=runner).user_accounts("dave") == ["proj001", "proj042"]


def test_text_field_rule_in_words():
    from wrapspawner.options import make_field

    words = make_field("account", {"type": "text", "regex": r"proj[0-9]{3}", "rule": "a project code like proj042"})
    assert words.rule.startswith("must be a project code like proj042") and "[0-9]" not in words.rule
    with pytest.raises(OptionError) as err:
        words.parse("x")
    assert "project code like proj042" in str(err.value)


async def test_an_idle_remote_facts_task_stops_and_a_later_form_asks_afresh():
    from batchspawner.polling.base import ManualClock

    clock = ManualClock()
    runner = FakeRunner(respond)
    info = ClusterInfo(runner=runner, clock=clock, interval=100, idle_after=300)
    assert await info.first_answer(1) and info.rounds == 1
    for _ in range(3):
        await clock.advance(100)
    assert info.rounds <= 4 and not info.running()  # nobody kicked it for 300 s: it stopped
    stopped_at = info.rounds
    await clock.advance(1000)
    assert info.rounds == stopped_at and info.partitions  # no more queries while unused
    info.kick()  # a form again: the old facts are forgotten, a fresh round answers
    assert not info.partitions and not info.updated_at
    assert await info.first_answer(1) and info.rounds == stopped_at + 1 and info.running()
    info._task.cancel()
    # the hub's own cluster (no idle_after) keeps refreshing unused, as before
    local = ClusterInfo(runner=FakeRunner(respond), clock=clock, interval=100)
    await local.first_answer(1)
    for _ in range(5):
        await clock.advance(100)
    assert local.running() and local.rounds >= 5
    local._task.cancel()


async def test_real_26_05_gres_and_associations_of_cluster_current():
    """What Slurm 26.05.5 with slurmdbd and a GPU node really prints (cluster current,
    scripts/cluster/accounting.sh): a partition over a GPU and a CPU node comes as two sinfo lines
    (CPUs added, the GPUs one node has); alice's associations; bob's empty answer (no association,
    exit 0) is "no accounts", not "unknown"."""
    sinfo = fixture("slurm/sinfo_gres_current.txt")
    assoc = fixture("slurm/sacctmgr_assoc_cluster.txt")
    scontrol = "".join(f"PartitionName={p} State=UP MaxTime=UNLIMITED MaxCPUsPerNode=UNLIMITED TotalNodes={n}\n"
                       for p, n in (("debug", 2), ("gpu", 1), ("cpu", 1)))

    def answer(argv, stdin):
        if argv[0] == "sacctmgr":
            return Reply(stdout=assoc if "user=alice" in argv else "")
        return Reply(stdout=scontrol if argv[0] == "scontrol" else sinfo)

    info = ClusterInfo(runner=FakeRunner(answer))
    await info.refresh()
    parts = info.partitions
    assert {n: (p.cpus_idle, p.cpus_total, p.gpus) for n, p in parts.items()} == {
        "debug": (2, 2, {"a100": 2}), "gpu": (1, 1, {"a100": 2}), "cpu": (1, 1, {})}
    assert await info.user_associations("alice") == {"chem": {"long"}, "physics": {"normal"}}
    assert await info.user_associations("bob") == {}
    assert await info.user_accounts("bob") == []
