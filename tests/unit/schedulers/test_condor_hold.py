"""HTCondor held jobs (JobStatus 5): a spawn fails at once, a running server is kept (see condor.py)."""

import asyncio
import time

import pytest
from fakes import FakeRunner, Reply, fixture
from unit.helpers import make_spawner

from batchspawner import CondorSpawner, JobState, SpawnFailed

HOLD_REASON = "Error from slot1@host.domain: Failed to execute /bin/bash"  # condor/held.txt


def answers(*condor_q):
    """condor_submit prints cluster 42; successive condor_q calls answer with the fixtures in turn."""
    queue = list(condor_q)

    def answer(argv, stdin):
        name = argv[0]
        if name == "condor_submit":
            return Reply(fixture("condor/submit.txt"))
        if name == "condor_q":
            return Reply(fixture(queue.pop(0) if len(queue) > 1 else queue[0]))
        return Reply()  # condor_rm, tail of the (empty) job output

    return answer


def condor(runner, **traits):
    # per-job queries: this is about what a held answer means, not about the shared poller
    traits = dict(shared_status=False, startup_poll_interval=0.01, running_check_interval=0.05) | traits
    return make_spawner(CondorSpawner, runner, **traits)


async def test_held_job_fails_the_spawn_at_once_with_the_hold_reason():
    runner = FakeRunner(answers("condor/pending.txt", "condor/held.txt"))
    spawner = condor(runner, start_timeout=600)
    began = time.monotonic()
    with pytest.raises(SpawnFailed) as err:
        await asyncio.wait_for(spawner.start(), 5)
    assert time.monotonic() - began < 2  # not start_timeout
    assert HOLD_REASON in str(err.value) and "on hold" in str(err.value)
    assert err.value.jupyterhub_message == str(err.value)  # shown on the spawn page
    assert runner.commands().count("condor_q") == 2  # idle, then held: no further waiting
    # the hub stops a server whose start failed: the held job is removed
    await spawner.stop(now=True)
    assert ["condor_rm", "42"] in [c.argv for c in runner.calls]


async def test_hold_while_the_server_starts_fails_the_spawn():
    runner = FakeRunner(answers("condor/running.txt", "condor/held.txt"))
    spawner = condor(runner)
    with pytest.raises(SpawnFailed, match="Failed to execute /bin/bash"):
        await asyncio.wait_for(spawner.start(), 5)  # the port is never reported


async def test_hold_of_a_running_server_keeps_it():
    runner = FakeRunner(answers("condor/running.txt", "condor/held.txt"))
    spawner = condor(runner)
    spawner.job_id = "42"
    assert await spawner.poll() is None  # running
    assert await spawner.poll() is None  # held: kept, it may be released
    assert await spawner.poll() is None
    status = await spawner.query_job_status()
    assert (status.state, status.native, status.reason) == (JobState.PENDING, "Held", HOLD_REASON)
    assert "condor_rm" not in runner.commands()
    assert spawner.job_id == "42"


def test_only_a_hold_with_a_reason_blocks_a_start():
    spawner = condor(FakeRunner())
    spawner.job_id = "42"
    held = spawner.parse_query_output(0, fixture("condor/held.txt"), "")
    assert HOLD_REASON in spawner.start_blocker(held)
    for path in ("condor/pending.txt", "condor/running.txt", "condor/finished.txt"):
        assert spawner.start_blocker(spawner.parse_query_output(0, fixture(path), "")) == "", path
    # JobStatus 5 with HoldReason undefined ("-af:t" prints undefined for an unset attribute)
    no_reason = spawner.parse_query_output(0, "5\tundefined\tundefined\tundefined\n", "")
    assert no_reason.state is JobState.PENDING and spawner.start_blocker(no_reason) == ""
