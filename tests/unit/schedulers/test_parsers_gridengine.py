"""GridengineSpawner parsers over output captured from the real Son of Grid Engine (tests/fixtures/gridengine)."""

import pytest

from batchspawner import GridengineSpawner, JobState, SpawnFailed
from batchspawner.schedulers.gridengine import queue_host
from fakes import fixture
from helpers import make_spawner, verdict

from batchspawner.core.states import GONE_CLAIM

G = "gridengine/"

# (fixture, returncode, job_id, expected state, native, host, reason contains)
QUERY_CASES = [
    ("qstat_running_held.xml", 0, "1", JobState.RUNNING, "r", "localhost", ""),
    ("qstat_running_held.xml", 0, "3", JobState.PENDING, "hqw", "", "on hold"),
    ("qstat_running_transferring.xml", 0, "2", JobState.RUNNING, "t", "localhost", ""),
    ("qstat_pending_error.xml", 0, "4", JobState.PENDING, "qw", "", ""),
    ("qstat_pending_error.xml", 0, "5", JobState.FINISHED, "Eqw", "", "error state"),
    ("qstat_deleting.xml", 0, "2", JobState.RUNNING, "dr", "localhost", "being deleted"),
    ("qstat_deleting.xml", 0, "1", JobState.FINISHED, "gone", "", ""),
    ("qstat_empty.xml", 0, "1", JobState.FINISHED, "gone", "", ""),
    ("qstat_j_gone.txt", 1, "1", JobState.FINISHED, "gone", "", ""),
    ("qstat_qmaster_down.txt", 1, "1", JobState.UNKNOWN, "", "", "commlib error"),
]


@pytest.mark.parametrize(
    "name,rc,job_id,state,native,host,reason",
    QUERY_CASES,
    ids=[f"{c[0].split('.')[0]}-job{c[2]}-{c[3].value}" for c in QUERY_CASES],
)
def test_query_fixture(name, rc, job_id, state, native, host, reason):
    sp = make_spawner(GridengineSpawner)
    sp.job_id = job_id
    text = fixture(G + name)
    stdout, stderr = (text, "") if rc == 0 else ("", text)
    status = sp.parse_query_output(rc, stdout, stderr)
    assert verdict(status) is state, status
    assert status.native == (GONE_CLAIM if native == "gone" else native)
    assert status.host == host
    assert reason in status.reason


BROKEN_CASES = [
    ("truncated-xml", 0, "<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n"),
    ("not-qstat-xml", 0, "<html><body>proxy error</body></html>"),
    ("failed-no-message", 2, ""),
    ("unknown-state-letters", 0, fixture(G + "qstat_running_held.xml").replace("<state>r</state>", "<state>zz</state>", 1)),
]


@pytest.mark.parametrize("rc,stdout", [c[1:] for c in BROKEN_CASES], ids=[c[0] for c in BROKEN_CASES])
def test_unreadable_answers_are_unknown_never_finished(rc, stdout):
    sp = make_spawner(GridengineSpawner)
    sp.job_id = "1"
    assert sp.parse_query_output(rc, stdout, "").state is JobState.UNKNOWN


SUBMIT_CASES = [
    ("terse", fixture(G + "submit_terse.txt"), "1"),
    ("plain", fixture(G + "submit_plain.txt"), "2"),
    ("array-terse", "4711.1-10:1\n", "4711"),
]


@pytest.mark.parametrize("out,job_id", [c[1:] for c in SUBMIT_CASES], ids=[c[0] for c in SUBMIT_CASES])
def test_job_id(out, job_id):
    assert make_spawner(GridengineSpawner).parse_job_id(out) == job_id


def test_job_id_missing_is_a_spawn_failure():
    with pytest.raises(SpawnFailed, match="job id"):
        make_spawner(GridengineSpawner).parse_job_id("Unable to run job: warning: no suitable queues.\n")


HOST_CASES = [
    ("all.q@localhost", "localhost"),
    ("all.q@node17.cluster.example.org", "node17.cluster.example.org"),
    ("gpu.q@gpu-a01", "gpu-a01"),
    ("", ""),
    ("all.q", ""),
]


@pytest.mark.parametrize("queue,host", HOST_CASES, ids=[c[0] or "empty" for c in HOST_CASES])
def test_queue_host(queue, host):
    assert queue_host(queue) == host


def test_host_mapping_with_exechost_exp():
    sp = make_spawner(
        GridengineSpawner, state_exechost_re=r"^(\w+)$", state_exechost_exp=r"\1.ib.example.org"
    )
    sp.job_id = "1"
    status = sp.parse_query_output(0, fixture(G + "qstat_running_held.xml"), "")
    assert status.host == "localhost.ib.example.org"


def test_gone_message_of_qdel_counts_as_finished():
    sp = make_spawner(GridengineSpawner)
    sp.job_id = "999"
    status = sp.parse_query_output(1, fixture(G + "qdel_missing.txt"), "")
    assert status.native == GONE_CLAIM  # a per-job "no such job": finished once confirmed
    assert verdict(status) is JobState.FINISHED
