"""A status answer that arrives after the spawner let go of its job (issue 26, hub log noise).

JupyterHub may poll (or the job's end report may ask) while a stop is under way. When the answer
comes back after stop()/clear_state() forgot the job, it described a job this spawner no longer
has: it must not become the spawner's last status, nor log "job  state unknown" with an empty id
(seen after every stop in the cluster e2e hub logs)."""

import asyncio
import logging

import pytest

from batchspawner.schedulers.slurm import SlurmSpawner

from fakes import FakeRunner, Reply
from helpers import make_spawner


def _slow(listed):
    def respond(argv, stdin):
        if argv[0].endswith("squeue"):
            if not listed:  # the job left the queue, as after a cancel
                return Reply(stdout="", delay=0.2)
            return Reply(stdout=("9 " if "%i" in argv[-1] else "") + "RUNNING localhost None\n", delay=0.2)
        return Reply(stdout="", delay=0.2)
    return respond


@pytest.mark.parametrize("listed", [True, False], ids=["still-listed", "gone"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-job"])
async def test_an_answer_for_a_job_forgotten_meanwhile_is_not_recorded_or_logged(caplog, shared, listed):
    spawner = make_spawner(SlurmSpawner, FakeRunner(_slow(listed)), shared_status=shared,
                           status_min_interval=0.01, empty_query_means_finished=False)
    spawner.job_id = "9"
    before = spawner._last_status
    caplog.set_level(logging.DEBUG)
    asking = asyncio.ensure_future(spawner.job_status_now(max_age=0))
    await asyncio.sleep(0.05)
    spawner.clear_state()  # what User.stop() does after stop()
    await asking
    assert spawner.job_id == ""
    assert spawner._last_status is before
    assert "job  state" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
