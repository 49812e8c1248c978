"""batchspawner/polling/base.py: the one shared-poller base (registry, clock, backoff, shutdown).

Issue 23: four hand-rolled pollers had a registry each, no shutdown and no injectable clock;
``asyncio.run(spawner.get_options_form())`` run twice in one process never returned (the
cluster-facts task was cancelled by asyncio.run's shutdown in the middle of starting
``scontrol``, which CPython 3.11 cannot finish).
"""

import asyncio
import multiprocessing
import os
import time

from batchspawner.commands.runner import CommandRunner
from wraphelpers import make_wrapper
from wrapspawner import ProfilesSpawner

SLURM_PROFILE = [{"key": "hpc", "display": "Slurm", "class": "batchspawner.SlurmSpawner", "config": {}}]


def _two_forms_then_exit():
    """In a forked child: render the form twice, each under its own asyncio.run, then exit."""
    from batchspawner.polling.cluster import ClusterInfo

    # a real subprocess per cluster command (sh exits at once, printing nothing): no Slurm needed
    ClusterInfo._registry.clear()
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=CommandRunner(prefix=["/bin/sh", "-c", ":", "sh"], timeout=5))
    wrapper = make_wrapper(ProfilesSpawner, profiles=SLURM_PROFILE, cluster_wait=2)
    for _ in range(2):
        form = asyncio.run(wrapper.get_options_form())
        assert 'value="hpc"' in form
    os._exit(0)


def test_asyncio_run_of_the_form_returns():
    child = multiprocessing.get_context("fork").Process(target=_two_forms_then_exit)
    t0 = time.monotonic()
    child.start()
    child.join(4)
    took = time.monotonic() - t0
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0, f"asyncio.run(get_options_form()) twice did not return within 4 s (exit {child.exitcode})"
    assert took < 4


# ---------------------------------------------------------------- the base itself
def _status_poller(clock, interval=10.0, answers=None):
    """A real StatusPoller on an in-process query that answers RUNNING for every job (or ``answers``)."""
    from batchspawner.core.states import JobState, JobStatus
    from batchspawner.polling.status import StatusPoller

    async def query(job_ids):
        if answers is not None:
            return await answers(job_ids)
        return {j: JobStatus(JobState.RUNNING, native="RUNNING") for j in job_ids}

    return StatusPoller.get(("TestSpawner", "k"), query, interval=interval, clock=clock)


async def test_the_clock_is_injectable_and_background_rounds_follow_it():
    from batchspawner.polling import ManualClock

    clock = ManualClock()
    poller = _status_poller(clock)
    poller.watch("11", watcher="a")
    await clock.advance(9.9)  # real time passes too, but the poller only reads its clock
    assert poller.rounds == 0 and clock.sleepers == 1
    await clock.advance(0.2)
    assert poller.rounds == 1
    assert poller.cache["11"][1] == clock.now()  # answers are stamped with the injected clock
    await clock.advance(10)
    assert poller.rounds == 2


async def test_backoff_doubles_per_failure_up_to_the_cap():
    from batchspawner.polling import ManualClock, SharedPoller

    poller = SharedPoller(clock=ManualClock())
    poller.max_interval = 300
    assert [poller.backoff(10, n) for n in (0, 1, 2, 5, 9)] == [10, 20, 40, 300, 300]
    poller.failures = 3
    assert poller.backoff(10) == 80 and poller.backoff(500) == 500  # the cap never shortens an interval

    # a failing status query backs the background loop off on the same clock
    async def broken(job_ids):
        raise RuntimeError("controller down")

    clock = ManualClock()
    status = _status_poller(clock, interval=1.0, answers=broken)
    status.watch("12", watcher="a")
    waits = []
    for _ in range(4):
        due = status.due_in()
        waits.append(round(due, 3))
        await clock.advance(due)
    assert waits == [1.0, 1.0, 2.0, 4.0] and status.rounds == 4 and status.failures == 4


async def test_stop_all_ends_every_task_of_every_kind():
    from batchspawner import polling
    from batchspawner.polling.cluster import ClusterInfo
    from batchspawner.hub.sessions import DetailsPoller
    from batchspawner.polling.status import StatusPoller
    from fakes import FakeRunner, Reply

    clock = polling.ManualClock()
    hold = asyncio.Event()

    async def held(job_ids):  # a round in flight that only stop_all ends
        await hold.wait()
        return {}

    status = _status_poller(clock, answers=held)
    status.watch("13", watcher="a")
    round_ = asyncio.ensure_future(status.refresh(since=clock.now()))
    details = DetailsPoller.get(("details", "k"), held, None, interval=15, clock=clock)
    details.watch("13")
    ClusterInfo._registry.clear()
    cluster = ClusterInfo.get(runner=FakeRunner(lambda argv, stdin: Reply(delay=60)), clock=clock)
    cluster.kick()
    await asyncio.sleep(0)
    tasks = [status._task, status._inflight, details._task, cluster._task]
    assert all(t is not None and not t.done() for t in tasks)
    await polling.stop_all()
    assert all(t.done() for t in tasks)
    assert not StatusPoller._registry and not DetailsPoller._registry and not ClusterInfo._registry
    round_.cancel()


def test_a_poller_of_a_closed_loop_is_dropped_not_reused():
    from batchspawner.polling.cluster import ClusterInfo
    from batchspawner.polling import ManualClock
    from fakes import FakeRunner

    runner = FakeRunner()
    ClusterInfo._registry.clear()
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=runner, clock=ManualClock())

    async def form_time():
        info = ClusterInfo.get()
        assert await info.first_answer(1)
        return info, info._task

    first, task = asyncio.run(form_time())
    assert first.loop_closed() and task.done()
    second, _ = asyncio.run(form_time())
    assert second is not first and ClusterInfo._registry["slurm"] is second
    assert second.runner is runner  # made again with what the dropped one was made with
    assert len([c for c in runner.calls if c.argv[0] == "scontrol"]) == 2  # one round per loop
    ClusterInfo._registry.clear()


async def test_the_hubs_cleanup_stops_the_pollers_before_its_own_work():
    # JupyterHub runs app.cleanup() on SIGTERM/SIGINT/shutdown API and only then cancels every
    # task; the first background task hooks the running hub's instance this way
    from types import SimpleNamespace

    from batchspawner.polling import ManualClock, hook_hub_cleanup
    from batchspawner.polling.status import StatusPoller

    seen = []

    async def hub_cleanup():  # stands for the hub's own cleanup (proxy, database)
        seen.append(dict(StatusPoller._registry))

    app = SimpleNamespace(cleanup=hub_cleanup)
    hook_hub_cleanup(app)
    hook_hub_cleanup(app)  # once only
    poller = _status_poller(ManualClock())
    poller.watch("14", watcher="a")
    task = poller._task
    assert not task.done()
    await app.cleanup()
    assert task.done() and seen == [{}]
