"""The FAKE scheduler tools (tests/fakesched) driven by the spawners with the real CommandRunner.

No hub here: each spawner submits a real background job to a fake cluster,
reads its pending/running state through its own parser, cancels it, and still
finds it finished once the fake scheduler has forgotten it (Torque/PBS
"Unknown Job Id", LSF "is not found", HTCondor gone from condor_q) because the
second source, the fake's history command (tracejob, bhist, condor_history), still
has its end record; Moab's checkjob forgets with mdiag, so there the job stays unknown.
The daemons these tools imitate cannot be installed here.
"""

import asyncio
import os
import shutil
import tempfile

import pytest
from unit.helpers import make_spawner

import fakesched
from batchspawner import CondorSpawner, JobState, LsfSpawner, MoabSpawner, PBSSpawner, TorqueSpawner

FLAVOURS = [
    ("torque", TorqueSpawner),
    ("pbs", PBSSpawner),
    ("moab", MoabSpawner),
    ("lsf", LsfSpawner),
    ("condor", CondorSpawner),
]


@pytest.fixture
def cluster_dir():
    directory = tempfile.mkdtemp(prefix="jhpc-fakesched-")
    os.chmod(directory, 0o755)
    yield directory
    fakesched.kill_leftovers(directory)
    shutil.rmtree(directory, ignore_errors=True)


async def _wait_for(spawner, state, timeout=10):
    for _ in range(int(timeout / 0.1)):
        status = await spawner.query_job_status()
        if status.state is state:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"job never reached {state}: {status}")


@pytest.mark.parametrize("flavour,cls", FLAVOURS, ids=[f[0] for f in FLAVOURS])
async def test_fake_tools_lifecycle(cluster_dir, monkeypatch, flavour, cls):
    bindir = fakesched.install(cluster_dir, flavour, pending_seconds=1.0, keep_seconds=1)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    log = os.path.join(cluster_dir, "job.log")
    spawner = make_spawner(
        cls, exec_prefix="", batchspawner_singleuser_cmd="/usr/bin/env", cmd=["sleep", "60"], log_path=log,
        req_homedir=cluster_dir, req_nprocs="2",
    )
    spawner.job_id = await spawner.submit_batch_script()
    first = await spawner.query_job_status()
    assert first.state is JobState.PENDING, first
    running = await _wait_for(spawner, JobState.RUNNING)
    assert running.host == "localhost"
    job = next(iter(fakesched.jobs(cluster_dir).values()))
    assert fakesched.pid_alive(job["pid"])

    spawner.startup_poll_interval = 0.1
    await spawner.stop()
    assert (await spawner.query_job_status()).state is JobState.FINISHED
    for _ in range(50):  # HTCondor reports Removed at once, while the process is still ending
        if not fakesched.pid_alive(job["pid"]):
            break
        await asyncio.sleep(0.1)
    assert not fakesched.pid_alive(job["pid"])
    await asyncio.sleep(1.2)  # the fake scheduler forgets the job (keep_seconds=1)
    gone = await spawner.query_job_status()
    if flavour == "moab":
        # checkjob asks the same Moab server as mdiag: once purged, neither has an end record,
        # so the job is kept *unknown* (never ended without evidence)
        assert gone.state is JobState.UNKNOWN and "could not confirm" in gone.reason, gone
    else:  # the history command (tracejob, bhist, condor_history) still has the end record
        assert gone.state is JobState.FINISHED, gone


HISTORY = [("torque", TorqueSpawner, "tracejob"), ("pbs", PBSSpawner, "tracejob"), ("lsf", LsfSpawner, "bhist")]


@pytest.mark.parametrize("flavour,cls,tool", HISTORY, ids=[f[0] for f in HISTORY])
async def test_fake_history_confirms_the_exit_status_after_the_queue_forgot(cluster_dir, monkeypatch, flavour, cls, tool):
    """A job that ended and left the queue: the fake history tool's end record gives the exit
    status the fake scheduler recorded (the job script's own exit status)."""
    bindir = fakesched.install(cluster_dir, flavour, pending_seconds=0.2, keep_seconds=0.5)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    spawner = make_spawner(
        cls, exec_prefix="", batchspawner_singleuser_cmd="/usr/bin/env", cmd=["false"],
        log_path=os.path.join(cluster_dir, "job.log"), req_homedir=cluster_dir,
    )
    spawner.job_id = await spawner.submit_batch_script()
    for _ in range(100):
        job = next(iter(fakesched.jobs(cluster_dir).values()))
        if job["end_time"]:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.8)  # past keep_seconds: qstat/bjobs no longer know the job
    status = await spawner.query_job_status()
    assert status.state is JobState.FINISHED, status
    job = next(iter(fakesched.jobs(cluster_dir).values()))
    assert job["exit"] is not None
    assert tool in status.reason and status.exit_code == job["exit"], status


@pytest.mark.parametrize("flavour,cls", FLAVOURS, ids=[f[0] for f in FLAVOURS])
async def test_fake_tools_shared_status_one_query_for_all_jobs(cluster_dir, monkeypatch, flavour, cls):
    """The shared poller's batched query (batch_status_cmd) against the fake tools' real output:
    two running jobs and one id the scheduler never knew, answered by one command."""
    from batchspawner.polling.status import StatusPoller

    bindir = fakesched.install(cluster_dir, flavour, pending_seconds=0.2, keep_seconds=30)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    spawners = []
    for i in range(2):
        spawner = make_spawner(
            cls, exec_prefix="", batchspawner_singleuser_cmd="/usr/bin/env", cmd=["sleep", "60"],
            log_path=os.path.join(cluster_dir, f"job{i}.log"), req_homedir=cluster_dir, status_min_interval=0.05,
        )
        spawner.job_id = await spawner.submit_batch_script()
        spawners.append(spawner)
    try:
        for spawner in spawners:
            await _wait_for(spawner, JobState.RUNNING)
        poller = spawners[0].status_poller()
        assert poller is spawners[1].status_poller()  # same command and identity: one poller
        for spawner in spawners:
            poller.watch(spawner.job_id)
        rounds = poller.rounds
        answers = await asyncio.gather(*(poller.status(s.job_id, max_age=0) for s in spawners))
        assert poller.rounds == rounds + 1, "both jobs answered by one scheduler command"
        for status in answers:
            assert (status.state, status.host) == (JobState.RUNNING, "localhost"), status

        ghost = make_spawner(cls, exec_prefix="", status_min_interval=0.05)
        ghost.job_id = "999999" if flavour not in ("torque", "pbs") else "999999.fakeserver"
        ghost_status = await ghost.job_status_now(max_age=0)
        if flavour == "condor":  # condor_q and condor_history both lack it: gone
            assert ghost_status.state is JobState.FINISHED, ghost_status
        else:  # missing, per-job "no such job", and the history has no end record: kept unknown
            assert ghost_status.state is JobState.UNKNOWN and "could not confirm" in ghost_status.reason, ghost_status
    finally:
        for spawner in spawners:
            spawner.startup_poll_interval = 0.1
            await spawner.stop()
        await StatusPoller.stop_all()
