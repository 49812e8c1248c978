"""The shared status poller: one query for many jobs, coalescing, failure handling.

Spawners here are real SlurmSpawners; the FakeRunner answers squeue in the exact
format of ``squeue -h -t all -j ID,ID -o '%i %T %B %r'`` (Slurm 22.05, seen on the real daemons).
"""

import asyncio
import time

import pytest
from helpers import make_spawner

from batchspawner import JobState, SlurmSpawner
from batchspawner.core.states import MISSING
from batchspawner.polling.status import StatusPoller
from fakes import FakeRunner, Reply


class Squeue:
    """Answers the shared squeue for whatever ids it is asked about."""

    def __init__(self, state="RUNNING localhost None"):
        self.state = state
        self.reply = None  # a Reply to give instead (failures, garbage)
        self.calls = []

    def __call__(self, argv, stdin):
        if argv[0] == "scancel":
            return Reply()
        if argv[0] == "scontrol":  # the second source sees what squeue sees
            if self.reply is not None and self.reply.returncode:
                return self.reply
            return Reply(stdout=f"JobId={argv[-1]} JobState={self.state.split()[0]} NodeList=localhost\n")
        assert argv[0] == "squeue", argv
        ids = argv[argv.index("-j") + 1].split(",")
        self.calls.append(ids)
        if self.reply is not None:
            return self.reply
        return Reply(stdout="".join(f"{i} {self.state}\n" for i in ids))


def many_spawners(n, squeue, **traits):
    runner = FakeRunner(squeue)
    spawners = []
    for i in range(n):
        sp = make_spawner(SlurmSpawner, runner, name=f"user{i}", **({"status_min_interval": 0.01} | traits))
        sp.job_id = str(1000 + i)
        spawners.append(sp)
    return spawners, runner


async def test_a_poll_round_of_20_servers_makes_one_query():
    squeue = Squeue()
    spawners, runner = many_spawners(20, squeue)
    results = await asyncio.gather(*(sp.poll() for sp in spawners))
    assert results == [None] * 20
    assert len(squeue.calls) == 1
    assert sorted(squeue.calls[0]) == sorted(sp.job_id for sp in spawners)
    # the next round reads the cache: still one query in all
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None] * 20
    assert len(squeue.calls) == 1


async def test_fresh_requests_from_starting_spawns_are_coalesced():
    squeue = Squeue("PENDING n/a Priority")
    spawners, _ = many_spawners(30, squeue)
    statuses = await asyncio.gather(*(sp.job_status_now(max_age=0) for sp in spawners))
    assert {s.state for s in statuses} == {JobState.PENDING}
    assert {s.reason for s in statuses} == {"Priority"}
    assert len(squeue.calls) <= 2  # one round, plus at most one for the late arrivals


async def test_min_interval_is_a_floor_between_queries():
    squeue = Squeue()
    (sp,), _ = many_spawners(1, squeue, status_min_interval=0.2)
    t0 = time.monotonic()
    for _ in range(3):
        await sp.job_status_now(max_age=0)
    assert len(squeue.calls) == 3
    assert time.monotonic() - t0 >= 0.4


@pytest.mark.parametrize(
    "reply",
    [
        Reply(stderr="squeue: error: Munge decode failed: Expired credential\n", returncode=1),
        Reply(stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", returncode=1),
        Reply(stdout="<html><body>502 Bad Gateway</body></html>\n"),
        Reply(timeout=True),
    ],
    ids=["munge-error", "controller-down", "garbage", "timeout"],
)
async def test_failed_rounds_are_unknown_never_finished_and_back_off(reply):
    squeue = Squeue()
    squeue.reply = reply
    spawners, _ = many_spawners(5, squeue, status_interval=1.0)
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None] * 5
    poller = spawners[0].status_poller()
    assert poller.failures == 1
    assert poller.current_interval() == 1.0  # backs off from status_interval...
    assert all(sp._last_status.state is JobState.UNKNOWN for sp in spawners)
    await spawners[0].job_status_now(max_age=0)
    assert poller.failures == 2 and poller.current_interval() == 2.0  # ...doubling
    squeue.reply = None  # the scheduler is back
    await spawners[0].job_status_now(max_age=0)
    assert poller.failures == 0 and poller.current_interval() == 1.0
    statuses = [await sp.job_status_now() for sp in spawners]
    assert {s.state for s in statuses} == {JobState.RUNNING}


async def test_all_ids_purged_means_finished_only_when_each_jobs_own_sources_agree():
    squeue = Squeue()
    squeue.reply = Reply(stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1)
    spawners, runner = many_spawners(3, squeue)
    # the batch-level error proves nothing; each job's squeue and scontrol then say "no such job"
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [1, 1, 1]
    assert sorted(c.argv[-1] for c in runner.calls if c.argv[0] == "scontrol") == ["1000", "1001", "1002"]
    assert sorted(c.argv[-1] for c in runner.calls if c.argv[0] == "scancel") == ["1000", "1001", "1002"]


def answer_without(spawners, hidden, per_job):
    """squeue that leaves ``hidden`` out of the shared answer; per-job queries get ``per_job``."""
    calls = {"shared": 0, "per_job": []}

    def respond(argv, stdin):
        if argv[0] == "scancel":
            return Reply()
        if argv[0] == "scontrol":  # the second source agrees with the per-job squeue
            if per_job.returncode:
                return per_job
            return Reply(stdout=f"JobId={argv[-1]} JobState={per_job.stdout.split()[0]} NodeList=localhost\n")
        ids = argv[argv.index("-j") + 1]
        if "%i" in argv[argv.index("-o") + 1]:  # the shared query
            calls["shared"] += 1
            return Reply(
                stdout="".join(f"{sp.job_id} RUNNING localhost None\n" for sp in spawners if sp.job_id != hidden)
            )
        calls["per_job"].append(ids)
        return per_job

    return respond, calls


async def test_job_missing_from_a_good_answer_is_confirmed_finished_by_its_own_query():
    spawners, runner = many_spawners(3, Squeue())
    gone = spawners[1].job_id
    runner.responder, calls = answer_without(
        spawners, gone, Reply(stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1)
    )
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None, 1, None]
    assert calls == {"shared": 1, "per_job": [gone]}


async def test_job_hidden_from_the_status_identity_is_kept_and_the_admin_told(caplog):
    # e.g. Slurm PrivateData=jobs: the hub's own squeue does not list other users' jobs
    spawners, runner = many_spawners(3, Squeue())
    hidden = spawners[2].job_id
    runner.responder, calls = answer_without(spawners, hidden, Reply(stdout="RUNNING localhost None\n"))
    for _ in range(2):
        assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None, None, None]
    assert spawners[2]._last_status.state is JobState.RUNNING
    assert calls["per_job"] == [hidden, hidden]
    warnings = [r for r in caplog.records if "status_exec_prefix" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


async def test_slow_query_stretches_the_interval():
    poller = StatusPoller("k", query=None, interval=1.0, max_interval=300)
    poller.last_duration = 2.5
    assert poller.current_interval() == 25.0


async def test_a_hanging_query_does_not_block_the_event_loop():
    squeue = Squeue()
    squeue.reply = Reply(delay=1.0, stdout="1000 RUNNING localhost None\n")
    (sp,), _ = many_spawners(1, squeue)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await sp.poll()
    task.cancel()
    assert ticks > 50  # the loop kept running while the query hung


async def test_background_loop_refreshes_all_jobs_in_one_query_per_interval():
    squeue = Squeue()
    spawners, _ = many_spawners(10, squeue, status_interval=0.1)
    await asyncio.gather(*(sp.poll() for sp in spawners))
    await asyncio.sleep(0.55)
    rounds = len(squeue.calls)
    assert 4 <= rounds <= 7, rounds
    assert all(len(ids) == 10 for ids in squeue.calls)
    # once every job is gone, the loop stops querying
    for sp in spawners:
        sp.clear_state()
    await asyncio.sleep(0.3)
    assert len(squeue.calls) <= rounds + 1


async def test_different_clusters_get_different_pollers():
    squeue = Squeue()
    runner = FakeRunner(squeue)
    a = make_spawner(SlurmSpawner, runner, req_cluster="alpha")
    b = make_spawner(SlurmSpawner, runner, req_cluster="beta")
    a.job_id, b.job_id = "1", "2"
    await asyncio.gather(a.poll(), b.poll())
    assert sorted(squeue.calls) == [["1"], ["2"]]
    assert a.status_poller() is not b.status_poller()


async def test_unknown_longer_than_grace_is_logged_once_and_counted(caplog):
    from batchspawner.core import metrics

    squeue = Squeue()
    squeue.reply = Reply(stderr="squeue: error: Munge decode failed: Expired credential\n", returncode=1)
    (sp,), _ = many_spawners(1, squeue, unknown_grace=0.0)
    before = metrics.UNKNOWN_TOO_LONG._value.get()
    for _ in range(3):
        assert await sp.poll() is None
        await asyncio.sleep(0.01)
        sp.status_poller().cache.clear()
    assert metrics.UNKNOWN_TOO_LONG._value.get() == before + 1
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "keeping the server" in r.getMessage()]
    assert len(errors) == 1


def test_gridengine_one_qstat_answers_for_every_job():
    from batchspawner import GridengineSpawner
    from fakes import fixture

    sp = make_spawner(GridengineSpawner)
    xml = fixture("gridengine/qstat_running_held.xml")
    import re

    running = re.search(r"<JB_job_number>(\d+)</JB_job_number>", xml).group(1)
    answer = sp.parse_batch_status(0, xml, "", [running, "999999"])
    assert answer[running].state is JobState.RUNNING and answer[running].host == "localhost"
    assert answer["999999"].native == MISSING  # confirmed per job by the spawner
    with pytest.raises(ValueError):
        sp.parse_batch_status(0, "<job_info><broken", "", [running])
    with pytest.raises(RuntimeError):
        sp.parse_batch_status(1, "", "error: commlib error: got select error (Connection refused)", [running])


async def test_a_job_added_during_a_round_gets_its_own_answer():
    squeue = Squeue()
    runner = FakeRunner(squeue)
    a = make_spawner(SlurmSpawner, runner, name="a", status_min_interval=0.01)
    b = make_spawner(SlurmSpawner, runner, name="b", status_min_interval=0.01)
    a.job_id, b.job_id = "1", "2"
    runner.responder = lambda argv, stdin: Reply(delay=0.2, stdout=squeue(argv, stdin).stdout)
    first = asyncio.ensure_future(a.job_status_now(max_age=0))
    await asyncio.sleep(0.05)  # a's round is running and does not list job 2
    status_b = await b.job_status_now(max_age=5)
    assert status_b.state is JobState.RUNNING, status_b
    assert (await first).state is JobState.RUNNING
    assert squeue.calls == [["1"], ["1", "2"]]
