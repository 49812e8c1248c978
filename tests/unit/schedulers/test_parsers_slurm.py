"""SlurmSpawner parsers over output captured from the real Slurm 22.05 (tests/fixtures/slurm)."""

import pytest

from batchspawner import JobState, SlurmSpawner, SpawnFailed
from batchspawner.schedulers.slurm import first_host
from batchspawner.core.states import GONE_CLAIM
from fakes import fixture
from helpers import make_spawner

S = "slurm/"

# (fixture, returncode, expected state, native, host, reason)
QUERY_CASES = [
    ("squeue_pending_held.txt", 0, JobState.PENDING, "PENDING", "", "JobHeldUser"),
    ("squeue_pending_begin.txt", 0, JobState.PENDING, "PENDING", "", "BeginTime"),
    ("squeue_running.txt", 0, JobState.RUNNING, "RUNNING", "localhost", ""),
    ("squeue_completing.txt", 0, JobState.RUNNING, "COMPLETING", "localhost", ""),
    ("squeue_completed.txt", 0, JobState.FINISHED, "COMPLETED", "", ""),
    ("squeue_cancelled.txt", 0, JobState.FINISHED, "CANCELLED", "", ""),
    ("squeue_failed.txt", 0, JobState.FINISHED, "FAILED", "", ""),
    # per-job "no such job" answers are claims: confirmed by scontrol before a server ends
    # (an empty answer is silence: with empty_query_means_finished a reason to ask, never proof)
    ("squeue_empty_after_end.txt", 0, JobState.UNKNOWN, GONE_CLAIM, "", "printed nothing"),
    ("squeue_invalid_job_id.txt", 1, JobState.UNKNOWN, GONE_CLAIM, "", "Invalid job id specified"),
    ("squeue_clusters_no_dbd.txt", 1, JobState.UNKNOWN, "", "", "Problem talking to database"),
    ("squeue_controller_down.txt", 1, JobState.UNKNOWN, "", "", "Unable to contact slurm controller (connect failure)"),
    ("squeue_configuring.txt", 0, JobState.PENDING, "CONFIGURING", "", ""),
    ("squeue_clusters_running.txt", 0, JobState.RUNNING, "RUNNING", "gpu-b017", ""),
]


@pytest.mark.parametrize(
    "name,rc,state,native,host,reason",
    QUERY_CASES,
    ids=[c[0][len("squeue_"):-4] for c in QUERY_CASES],
)
def test_query_fixture(name, rc, state, native, host, reason):
    sp = make_spawner(SlurmSpawner)
    sp.job_id = "12"
    text = fixture(S + name)
    stdout, stderr = (text, "") if rc == 0 else ("", text)
    status = sp.parse_query_output(rc, stdout, stderr)
    assert status.state is state, status
    assert status.native == native
    assert status.host == host
    assert reason in status.reason


SUBMIT_CASES = [
    ("parsable", "sbatch_parsable.txt", "12"),
    ("parsable-with-cluster", "sbatch_parsable_cluster.txt", "1234"),
]


@pytest.mark.parametrize("name,job_id", [c[1:] for c in SUBMIT_CASES], ids=[c[0] for c in SUBMIT_CASES])
def test_job_id(name, job_id):
    assert make_spawner(SlurmSpawner).parse_job_id(fixture(S + name)) == job_id


def test_submit_refused_without_slurmdbd_is_not_a_job_id():
    with pytest.raises(SpawnFailed):
        make_spawner(SlurmSpawner).parse_job_id("")


NODELISTS = fixture(S + "nodelists.txt").split()
FIRST_HOSTS = ["node01", "gpu-a1", "rack1-n01", "node1"]


@pytest.mark.parametrize("nodelist,host", list(zip(NODELISTS, FIRST_HOSTS)), ids=NODELISTS)
def test_first_host_of_real_node_lists(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize(
    "nodelist, host",
    [
        ("node01", "node01"),
        ("node[01-04,07]", "node01"),
        ("node[07,01-04]", "node07"),  # the first one listed, as Slurm ordered them
        ("gpu[3,5]", "gpu3"),
        ("n1,n2", "n1"),
        ("a1,b[2-3]", "a1"),
        ("rack[1-2]-n[01-04]", "rack1-n01"),
        ("a[1,3]b[2-3]", "a1b2"),
        ("a[1,3]b[2-3],c9", "a1b2"),
        ("cn[007-010].cluster", "cn007.cluster"),
        ("  node5 ", "node5"),
    ],
    ids=["plain", "range", "unsorted", "list", "comma", "comma-then-range", "two-groups", "two-groups-lists",
         "two-groups-comma", "suffix", "spaces"],
)
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize("nodelist", ["", "n/a", "(null)"], ids=["empty", "n/a", "null"])
def test_no_host(nodelist):
    assert first_host(nodelist) == ""


def test_running_node_list_gives_first_host():
    sp = make_spawner(SlurmSpawner)
    sp.job_id = "12"
    status = sp.parse_query_output(0, "RUNNING node[01-04,07] None\n", "")
    assert (status.state, status.host) == (JobState.RUNNING, "node01")


def test_controller_down_fails_the_shared_status_round():
    """The shared query's answer with slurmctld down: the round fails (all unknown), no job is gone."""
    sp = make_spawner(SlurmSpawner)
    with pytest.raises(RuntimeError, match="Unable to contact slurm controller"):
        sp.parse_batch_status(1, "", fixture(S + "squeue_controller_down.txt"), ["12", "13"])


SCONTROL_CASES = [
    # scontrol -o show job ID on Slurm 22.05 here (measured): a running job, a cancelled one
    # within MinJobAge, and an id it no longer knows
    (0, "JobId=1 JobName=wrap UserId=alice(1001) JobState=RUNNING Reason=None NodeList=node[3-4]\n", "",
     JobState.RUNNING, "node3"),
    (0, "JobId=1 JobName=wrap UserId=alice(1001) JobState=CANCELLED Reason=None NodeList=localhost\n", "",
     JobState.FINISHED, ""),
    (1, "", "slurm_load_jobs error: Invalid job id specified\n", JobState.FINISHED, ""),
    (1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", JobState.UNKNOWN, ""),
    (0, "", "", JobState.UNKNOWN, ""),
    (0, "\x8f\x02 garbage\n", "", JobState.UNKNOWN, ""),
]


@pytest.mark.parametrize("rc,stdout,stderr,state,host", SCONTROL_CASES)
def test_scontrol_is_the_second_source(rc, stdout, stderr, state, host):
    sp = make_spawner(SlurmSpawner)
    sp.job_id = "1"
    status = sp.parse_confirm_output(rc, stdout, stderr)
    assert status.state is state, status
    assert status.host == host
