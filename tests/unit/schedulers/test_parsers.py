"""Parser tests: each scheduler's query output (fixture files in the real tools' formats) -> JobStatus."""

import pytest
from fakes import fixture
from unit.helpers import make_spawner, verdict

from batchspawner import (
    CondorSpawner,
    JobState,
    LsfSpawner,
    MoabSpawner,
    PBSSpawner,
    SlurmSpawner,
    TorqueSpawner,
)

P, R, F, U = JobState.PENDING, JobState.RUNNING, JobState.FINISHED, JobState.UNKNOWN

# id, class, job id, fixture, where the fixture text goes (stdout/stderr), exit code, state, host, exit status
CASES = [
    ("slurm-pending", SlurmSpawner, "15", "slurm/pending.txt", "out", 0, P, "", None),
    ("slurm-running", SlurmSpawner, "16", "slurm/running.txt", "out", 0, R, "localhost", None),
    ("slurm-finished", SlurmSpawner, "16", "slurm/finished.txt", "out", 0, F, "", None),
    ("slurm-cancelled", SlurmSpawner, "15", "slurm/cancelled.txt", "out", 0, F, "", None),
    ("slurm-gone", SlurmSpawner, "999999", "slurm/gone.stderr", "err", 1, F, "", None),
    ("torque-pending", TorqueSpawner, "123.torque-server.example.org", "torque/pending.xml", "out", 0, P, "", None),
    ("torque-running", TorqueSpawner, "123.torque-server.example.org", "torque/running.xml", "out", 0, R, "node1", None),
    ("torque-finished", TorqueSpawner, "123.torque-server.example.org", "torque/finished.xml", "out", 0, F, "", 271),
    ("torque-gone", TorqueSpawner, "123.torque-server.example.org", "torque/gone.stderr", "err", 153, F, "", None),
    ("pbs-pending-text", PBSSpawner, "4711.pbs-server", "pbs/pending.txt", "out", 0, P, "", None),
    ("pbs-pending-json", PBSSpawner, "4711.pbs-server", "pbs/pending.json", "out", 0, P, "", None),
    ("pbs-running-json", PBSSpawner, "4711.pbs-server", "pbs/running.json", "out", 0, R, "node1", None),
    ("pbs-running-text", PBSSpawner, "4711.pbs-server", "pbs/running.txt", "out", 0, R, "node1", None),
    ("pbs-finished-json", PBSSpawner, "4711.pbs-server", "pbs/finished.json", "out", 0, F, "", 0),
    ("pbs-finished-text", PBSSpawner, "4711.pbs-server", "pbs/finished.txt", "out", 0, F, "", 1),
    ("pbs-gone", PBSSpawner, "4711.pbs-server", "pbs/gone.stderr", "err", 153, F, "", None),
    ("moab-idle", MoabSpawner, "123", "moab/pending.xml", "out", 0, P, "", None),
    ("moab-running", MoabSpawner, "123", "moab/running.xml", "out", 0, R, "node1", None),
    ("moab-completed", MoabSpawner, "123", "moab/finished.xml", "out", 0, F, "", 0),
    ("moab-purged", MoabSpawner, "123", "moab/gone.xml", "out", 0, F, "", None),
    ("lsf-pend-json", LsfSpawner, "1234", "lsf/pending.json", "out", 0, P, "", None),
    ("lsf-run-json-slots", LsfSpawner, "1234", "lsf/running.json", "out", 0, R, "host1", None),
    ("lsf-run-noheader-colon", LsfSpawner, "1234", "lsf/running.txt", "out", 0, R, "host1", None),
    ("lsf-done-json", LsfSpawner, "1234", "lsf/finished.json", "out", 0, F, "", 0),
    ("lsf-exit-noheader", LsfSpawner, "1234", "lsf/exit.txt", "out", 0, F, "", 3),
    ("lsf-not-found-json", LsfSpawner, "1234", "lsf/gone.json", "out", 255, F, "", None),
    ("lsf-not-found-noheader", LsfSpawner, "1234", "lsf/gone-noheader.stderr", "err", 255, F, "", None),
    ("condor-idle", CondorSpawner, "42", "condor/pending.txt", "out", 0, P, "", None),
    ("condor-running-slot", CondorSpawner, "42", "condor/running.txt", "out", 0, R, "host.domain", None),
    ("condor-held", CondorSpawner, "42", "condor/held.txt", "out", 0, P, "", None),
    ("condor-history-completed", CondorSpawner, "42", "condor/finished.txt", "out", 0, F, "", 0),
    ("condor-history-removed", CondorSpawner, "42", "condor/removed.txt", "out", 0, F, "", None),
    ("condor-schedd-down", CondorSpawner, "42", "condor/schedd-down.stderr", "err", 1, U, "", None),
]


@pytest.mark.parametrize(
    "cls,job_id,path,stream,rc,state,host,exit_code", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_parse_fixture(cls, job_id, path, stream, rc, state, host, exit_code):
    spawner = make_spawner(cls)
    spawner.job_id = job_id
    text = fixture(path)
    out, err = (text, "") if stream == "out" else ("", text)
    status = spawner.parse_query_output(rc, out, err)
    assert verdict(status) is state, status
    assert status.host == host
    if exit_code is not None:
        assert status.exit_code == exit_code


@pytest.mark.parametrize("path", ["pbs/pending.txt", "pbs/pending.json"], ids=["text-continuation-lines", "json"])
def test_pbs_pending_reason(path):
    spawner = make_spawner(PBSSpawner)
    spawner.job_id = "4711.pbs-server"
    status = spawner.parse_query_output(0, fixture(path), "")
    assert status.reason == "Not Running: Insufficient amount of resource: ngpus (R: 1 A: 0 T: 0)"


def test_lsf_pending_reason_is_reported():
    spawner = make_spawner(LsfSpawner)
    spawner.job_id = "1234"
    assert spawner.parse_query_output(0, fixture("lsf/pending.json"), "").reason.startswith("New job is waiting")


SUBMITS = [
    ("slurm", SlurmSpawner, "slurm/submit.txt", "15"),
    ("torque", TorqueSpawner, "torque/submit.txt", "123.torque-server.example.org"),
    ("pbs", PBSSpawner, "pbs/submit.txt", "4711.pbs-server"),
    ("moab", MoabSpawner, "moab/submit.txt", "123"),
    ("lsf", LsfSpawner, "lsf/submit.txt", "1234"),
    ("condor", CondorSpawner, "condor/submit.txt", "42"),
]


@pytest.mark.parametrize("cls,path,job_id", [s[1:] for s in SUBMITS], ids=[s[0] for s in SUBMITS])
def test_parse_job_id(cls, path, job_id):
    assert make_spawner(cls).parse_job_id(fixture(path)) == job_id


GARBAGE = [
    ("torque-html", TorqueSpawner, "<html><body>proxy error</body></html>"),
    ("torque-truncated-xml", TorqueSpawner, "<Data><Job><Job_Id>1</Job_Id><job_state>R"),
    ("pbs-bad-json", PBSSpawner, '{"Jobs": {"4711.pbs-server": '),
    ("pbs-random-text", PBSSpawner, "segmentation fault"),
    ("moab-not-xml", MoabSpawner, "ERROR: something odd"),
    ("lsf-bad-json", LsfSpawner, '{"COMMAND":"bjobs"'),
    ("lsf-other-job", LsfSpawner, "999 RUN host9 - -"),
    ("condor-words", CondorSpawner, "All queues are empty"),
    ("slurm-words", SlurmSpawner, "WEIRD output"),
]


@pytest.mark.parametrize("cls,text", [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_is_unknown_never_finished(cls, text):
    spawner = make_spawner(cls)
    spawner.job_id = "4711.pbs-server" if cls is PBSSpawner else "1234"
    assert spawner.parse_query_output(0, text, "").state is JobState.UNKNOWN


def test_exechost_exp_maps_node_names_like_batchspawner_13():
    spawner = make_spawner(
        TorqueSpawner, state_exechost_re=r"(?s).*<exec_host>([\w-]+)/.*", state_exechost_exp=r"\1.cluster.local"
    )
    spawner.job_id = "123.torque-server.example.org"
    status = spawner.parse_query_output(0, fixture("torque/running.xml"), "")
    assert status.host == "node1.cluster.local"
