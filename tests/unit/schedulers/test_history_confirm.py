"""Issue 12: a per-job "no such job" ends a server only when a second source agrees.

Torque, PBS, Moab, LSF and Grid Engine each ask their own history command
(``batch_confirm_cmd``) about a job the per-job query no longer knows: ``tracejob``,
``tracejob``, ``checkjob --xml``, ``bhist -l``, ``qacct -j``. The spawner's shared code
(``query_job_status`` -> ``_confirm_gone``) runs it through the injected FakeRunner and the
module's ``parse_confirm_output`` judges it: an end record -> FINISHED with the exit status;
the job alive -> kept (and logged); an error, no record, empty output or garbage ->
UNKNOWN (kept). Replies are fixture files: Grid Engine's captured from the real Son of
Grid Engine here, the others composed from each tool's documented format (see their
headers); the per-job "not found" answers are the fixtures the query parsers already use.
"""

import logging
import os

import pytest
from helpers import make_spawner

from batchspawner import GridengineSpawner, JobState, LsfSpawner, MoabSpawner, PBSSpawner, TorqueSpawner
from fakes import FakeRunner, Reply, fixture

F, U = JobState.FINISHED, JobState.UNKNOWN

# class, job id, the per-job query's "no such job" reply, the confirming tool
SCHEDULERS = {
    "torque": (TorqueSpawner, "123", lambda: Reply(stderr=fixture("torque/gone.stderr"), returncode=153), "tracejob"),
    "pbs": (PBSSpawner, "4711", lambda: Reply(stderr=fixture("pbs/gone.stderr"), returncode=153), "tracejob"),
    "moab": (MoabSpawner, "123", lambda: Reply(stdout="<Data></Data>\n"), "checkjob"),
    "lsf": (LsfSpawner, "1234", lambda: Reply(stdout=fixture("lsf/gone.json"), returncode=255), "bhist"),
    "gridengine": (GridengineSpawner, "8", lambda: Reply(stdout=fixture("gridengine/qstat_empty.xml")), "qacct"),
}

# scheduler, second source's reply, expected state, exit code
ENDED = [
    ("torque", Reply(stdout=fixture("torque/tracejob_ended.txt")), 0),
    ("torque", Reply(stdout=fixture("torque/tracejob_deleted_queued.txt")), None),
    ("pbs", Reply(stdout=fixture("pbs/tracejob_killed.txt")), 271),
    ("moab", Reply(stdout=fixture("moab/checkjob_completed.xml")), 2),
    ("lsf", Reply(stdout=fixture("lsf/bhist_done.txt")), 0),
    ("lsf", Reply(stdout=fixture("lsf/bhist_exit.txt")), 3),
    ("gridengine", Reply(stdout=fixture("gridengine/qacct_ended_exit3.txt")), 3),
]
ALIVE = [
    ("torque", Reply(stdout=fixture("torque/tracejob_running.txt")), JobState.RUNNING),
    ("pbs", Reply(stdout=fixture("torque/tracejob_running.txt")), JobState.RUNNING),
    ("moab", Reply(stdout=fixture("moab/checkjob_running.xml")), JobState.RUNNING),
    ("lsf", Reply(stdout=fixture("lsf/bhist_running.txt")), JobState.RUNNING),
]
CANNOT_TELL = {
    "empty": Reply(stdout=""),
    "error": Reply(stderr="connection refused: cannot reach the server (errno 111)\n", returncode=2),
    "garbage": Reply(stdout="\x8f\x02\xffZ\x00q\x13\n\x91 Exit_status"),
    "timeout": Reply(timeout=True),
}
NO_RECORD = [
    ("torque", Reply(stdout=fixture("torque/tracejob_no_logs.txt"), stderr="tracejob: cannot open server_priv/accounting\n")),
    ("moab", Reply(stderr=fixture("moab/checkjob_invalid.stderr"), returncode=1)),
    ("lsf", Reply(stderr=fixture("lsf/bhist_not_found.stderr"), returncode=255)),
    ("gridengine", Reply(stderr=fixture("gridengine/qacct_not_found.stderr"), returncode=1)),
]


def spawner_for(name, confirm_reply):
    cls, job_id, gone, tool = SCHEDULERS[name]

    def responder(argv, stdin):
        if os.path.basename(argv[0]) == tool:
            assert job_id in argv, argv
            return confirm_reply
        return gone()

    runner = FakeRunner(responder)
    sp = make_spawner(cls, runner)
    sp.job_id = job_id
    return sp, runner, tool


def confirm_calls(runner, tool):
    return [c.argv for c in runner.calls if os.path.basename(c.argv[0]) == tool]


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_has_a_default_second_source(name):
    cls, _, _, tool = SCHEDULERS[name]
    sp = make_spawner(cls)
    assert sp.batch_confirm_cmd.split()[0] == tool
    assert "{job_id}" in sp.batch_confirm_cmd


@pytest.mark.parametrize("name,reply,exit_code", ENDED, ids=[f"{c[0]}-{i}" for i, c in enumerate(ENDED)])
async def test_not_found_and_history_shows_it_ended_is_finished(name, reply, exit_code):
    sp, runner, tool = spawner_for(name, reply)
    status = await sp.query_job_status()
    assert status.state is F, status.describe()
    assert status.exit_code == exit_code
    assert tool in status.reason
    assert len(confirm_calls(runner, tool)) == 1


@pytest.mark.parametrize("name,reply,state", ALIVE, ids=[c[0] for c in ALIVE])
async def test_not_found_but_history_shows_it_alive_is_kept_and_logged(name, reply, state, caplog):
    sp, runner, tool = spawner_for(name, reply)
    with caplog.at_level(logging.WARNING):
        status = await sp.query_job_status()
    assert status.state is state, status.describe()
    assert await sp.poll() is None  # the server stays
    assert f"but {tool} shows it" in caplog.text and "kept" in caplog.text


@pytest.mark.parametrize("fault", sorted(CANNOT_TELL))
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
async def test_not_found_and_history_cannot_tell_is_unknown(name, fault):
    sp, runner, tool = spawner_for(name, CANNOT_TELL[fault])
    status = await sp.query_job_status()
    assert status.state is U, status.describe()
    assert await sp.poll() is None
    assert confirm_calls(runner, tool), "the second source was asked"
    assert sp.job_id, "the job id is kept"


@pytest.mark.parametrize("name,reply", NO_RECORD, ids=[c[0] for c in NO_RECORD])
async def test_not_found_and_no_history_record_is_unknown(name, reply):
    """No end record (accounting not flushed yet, logs unreadable, event log switched): not evidence."""
    sp, runner, tool = spawner_for(name, reply)
    status = await sp.query_job_status()
    assert status.state is U, status.describe()
    assert "could not confirm" in status.reason


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
async def test_an_admin_may_switch_the_second_source_off(name):
    """batch_confirm_cmd = "": a per-job "no such job" counts alone (documented opt-out)."""
    sp, runner, tool = spawner_for(name, Reply(stdout="never asked"))
    sp.batch_confirm_cmd = ""
    status = await sp.query_job_status()
    assert status.state is F
    assert confirm_calls(runner, tool) == []


# ---------------------------------------------------------------- the parsers on fixture text
@pytest.mark.parametrize(
    "cls,path,rc,state,exit_code",
    [
        (TorqueSpawner, "torque/tracejob_ended.txt", 0, F, 0),
        (TorqueSpawner, "torque/tracejob_deleted_queued.txt", 0, F, None),
        (TorqueSpawner, "torque/tracejob_running.txt", 0, JobState.RUNNING, None),
        (TorqueSpawner, "torque/tracejob_no_logs.txt", 0, U, None),
        (PBSSpawner, "pbs/tracejob_killed.txt", 0, F, 271),
        (MoabSpawner, "moab/checkjob_completed.xml", 0, F, 2),
        (MoabSpawner, "moab/checkjob_running.xml", 0, JobState.RUNNING, None),
        (MoabSpawner, "moab/checkjob_invalid.stderr", 1, U, None),
        (LsfSpawner, "lsf/bhist_done.txt", 0, F, 0),
        (LsfSpawner, "lsf/bhist_exit.txt", 0, F, 3),
        (LsfSpawner, "lsf/bhist_running.txt", 0, JobState.RUNNING, None),
        (LsfSpawner, "lsf/bhist_not_found.stderr", 255, U, None),
        (GridengineSpawner, "gridengine/qacct_ended_exit3.txt", 0, F, 3),
        (GridengineSpawner, "gridengine/qacct_not_found.stderr", 1, U, None),
    ],
)
def test_confirm_parser_on_fixture(cls, path, rc, state, exit_code):
    sp = make_spawner(cls)
    text = fixture(path)
    out, err = ("", text) if path.endswith(".stderr") else (text, "")
    status = sp.parse_confirm_output(rc, out, err)
    assert status.state is state, status.describe()
    assert status.exit_code == exit_code


def test_qacct_takes_the_last_record_of_a_rerun_job():
    record = fixture("gridengine/qacct_ended_exit3.txt")
    rerun = record.replace("exit_status  3", "exit_status  0").replace("failed       0", "failed       0")
    status = make_spawner(GridengineSpawner).parse_confirm_output(0, record + "\n" + rerun, "")
    assert (status.state, status.exit_code) == (F, 0)


def test_bhist_exit_code_survives_the_80_column_wrap():
    text = fixture("lsf/bhist_exit.txt").replace(
        "Exited with exit code 3.", "Exited with exit c\n                     ode 3."
    )
    status = make_spawner(LsfSpawner).parse_confirm_output(0, text, "")
    assert (status.state, status.exit_code) == (F, 3)
