"""progress() honours a cancel that comes as its last event arrives (hub log: tracebacks on /progress).

JupyterHub reads progress() through ``iterate_until(spawn_future, ...)``: when the spawn ends it
cancels the pending ``__anext__`` and awaits it, expecting CancelledError. If the wake-up event and
the cancel landed in the same loop turn, Python 3.11's ``asyncio.wait_for`` returned normally (it
swallows such a cancel), the generator ran on and ended, and its StopAsyncIteration escaped
``iterate_until``: "RuntimeError: async generator raised StopAsyncIteration" with a traceback in the
hub log, and "aclose(): asynchronous generator is already running" in the same way."""

import asyncio

import pytest

from batchspawner.schedulers.slurm import SlurmSpawner

from fakes import FakeRunner
from helpers import make_spawner


async def test_a_cancel_in_the_same_turn_as_the_last_event_ends_the_step_cancelled():
    spawner = make_spawner(SlurmSpawner, FakeRunner())
    spawner._spawn_pending = True
    stream = spawner.progress()
    step = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)  # waiting for an event
    assert not step.done()
    spawner._spawn_pending = False  # the spawn ended...
    spawner._wake_progress()  # ...its last wake-up...
    step.cancel()  # ...and iterate_until's cancel, in one turn
    with pytest.raises(asyncio.CancelledError):
        await step
    await stream.aclose()


async def test_events_still_stream_and_the_stream_ends_with_the_spawn():
    spawner = make_spawner(SlurmSpawner, FakeRunner())
    spawner._spawn_pending = True
    seen = []

    async def read():
        async for event in spawner.progress():
            seen.append(event["message"])

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.02)
    spawner._event(10, "submitted")
    await asyncio.sleep(0.02)
    spawner._spawn_pending = False
    spawner._event(100, "ready")
    await asyncio.wait_for(reader, 2)
    assert seen == ["submitted", "ready"]


async def test_jupyterhubs_iterate_until_ends_quietly_when_the_spawn_ends_with_its_last_event():
    from jupyterhub.utils import iterate_until

    spawner = make_spawner(SlurmSpawner, FakeRunner())
    spawner._spawn_pending = True
    spawned = asyncio.get_running_loop().create_future()
    seen = []

    async def page():  # as JupyterHub's progress API handler reads it
        async for event in iterate_until(spawned, spawner.progress()):
            seen.append(event["message"])

    reader = asyncio.ensure_future(page())
    await asyncio.sleep(0.05)
    spawner._spawn_pending = False
    spawner._event(100, "ready")
    spawned.set_result(None)
    await asyncio.wait_for(reader, 2)  # no RuntimeError out of the handler
