"""The shared status query (batch_status_cmd / parse_batch_status) of every scheduler module.

Each case replays one fixture of the batched query in the real tool's format
(Slurm and Grid Engine: captured from the real daemons here; Torque, PBS, Moab,
LSF, HTCondor: their documented formats, see each fixture's header) through the
module's parser, then drives real spawners through the FakeRunner: many jobs,
one scheduler command per round, unlisted jobs confirmed per job, and every
answer that cannot be trusted makes the round fail (jobs stay *unknown*).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import pytest
from fakes import FakeRunner, Reply, fixture
from unit.helpers import make_spawner

from batchspawner import (
    CondorSpawner,
    GridengineSpawner,
    JobState,
    LsfSpawner,
    MoabSpawner,
    PBSSpawner,
    SlurmSpawner,
    TorqueSpawner,
)
from batchspawner.commands.runner import split_command
from batchspawner.core.states import MISSING

P, R, F, M = JobState.PENDING, JobState.RUNNING, JobState.FINISHED, "missing"


@dataclass
class Case:
    id: str
    cls: type
    tool: str  # argv[0] of batch_status_cmd
    stdout: str  # fixture path
    stderr: str  # fixture path or ""
    returncode: int
    expected: dict  # job id -> (state or "missing", host)
    # a message this scheduler prints when its daemon is unreachable (state_unknown_re must match)
    down: str


CASES = [
    Case("slurm", SlurmSpawner, "squeue", "slurm/squeue_many.txt", "", 0,
         {"87": (R, "localhost"), "88": (P, ""), "89": (F, ""), "99999": (M, "")},
         "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
    Case("gridengine", GridengineSpawner, "qstat", "gridengine/qstat_running_held.xml", "", 0,
         {"1": (R, "localhost"), "3": (P, ""), "77": (M, "")},
         "error: unable to contact qmaster using port 6444 on host \"localhost\""),
    Case("torque", TorqueSpawner, "qstat", "torque/status_many.xml", "torque/status_many.stderr", 153,
         {"123.torque-server.example.org": (R, "node1"), "124.torque-server.example.org": (P, ""),
          "125.torque-server.example.org": (M, "")},
         "qstat: cannot connect to server torque-server.example.org (errno=111) Connection refused"),
    Case("pbs", PBSSpawner, "qstat", "pbs/status_many.json", "pbs/status_many.stderr", 153,
         {"4711.pbs-server": (R, "node1"), "4712.pbs-server": (P, ""), "4713.pbs-server": (F, ""),
          "4714.pbs-server": (M, "")},
         "Connection refused\nqstat: cannot connect to server pbs-server (errno=15010)"),
    Case("moab", MoabSpawner, "mdiag", "moab/status_all.xml", "", 0,
         {"123": (R, "node1"), "124": (P, ""), "125": (F, ""), "126": (M, "")},
         "ERROR:    cannot connect to Moab server 'moab-server'"),
    Case("lsf", LsfSpawner, "bjobs", "lsf/status_many.json", "", 255,
         {"1234": (R, "host1"), "1235": (P, ""), "1236": (F, ""), "1237": (M, "")},
         "LSF is down. Please wait ..."),
    Case("condor", CondorSpawner, "condor_q", "condor/status_many.txt", "", 0,
         {"42": (R, "host.domain"), "43": (P, ""), "44": (M, "")},
         "-- Failed to fetch ads from: <127.0.0.1:9618> : host.domain"),
]
IDS = [c.id for c in CASES]


def _verdict(status):
    if status.native == MISSING:
        return (M, "")
    return (status.state, status.host)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batched_answer_parsed_per_job(case):
    spawner = make_spawner(case.cls)
    stderr = fixture(case.stderr) if case.stderr else ""
    answer = spawner.parse_batch_status(case.returncode, fixture(case.stdout), stderr, list(case.expected))
    assert {job_id: _verdict(status) for job_id, status in answer.items()} == case.expected


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pending_reason_survives_the_batched_answer(case):
    spawner = make_spawner(case.cls)
    stderr = fixture(case.stderr) if case.stderr else ""
    answer = spawner.parse_batch_status(case.returncode, fixture(case.stdout), stderr, list(case.expected))
    pending = [answer[j] for j, (state, _) in case.expected.items() if state is P]
    assert pending and all(s.state is P for s in pending)
    if case.id in ("slurm", "torque", "pbs", "moab", "lsf"):  # these print a reason in the fixture
        assert all(s.reason for s in pending), pending


UNTRUSTED = [
    ("daemon-down", None),  # the case's own "cannot reach the daemon" message, exit 1
    ("new-error", Reply(stderr="internal error 4242 never seen before", returncode=2)),
    ("garbage", Reply(stdout="\x00\x01 <<garbage>> {not: json\n")),
    ("gone-and-other-error", Reply(stderr="qstat: Unknown Job Id 9.x\nPermission denied\n", returncode=153)),
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("name,reply", UNTRUSTED, ids=[u[0] for u in UNTRUSTED])
def test_untrusted_answer_fails_the_round(case, name, reply):
    spawner = make_spawner(case.cls)
    if reply is None:
        reply = Reply(stderr=case.down + "\n", returncode=1)
    with pytest.raises(Exception):
        spawner.parse_batch_status(reply.returncode, reply.stdout, reply.stderr, list(case.expected))


def _batch_argv_ids(case, argv):
    """The job ids a batched status argv asks about (as the real tools read them)."""
    if case.id == "slurm":
        return set(argv[argv.index("-j") + 1].split(","))
    if case.id in ("gridengine", "moab"):
        return None  # these list every job (qstat -u '*', mdiag -j --xml)
    if case.id == "condor":
        return set(argv[1 : argv.index("-af:t")])
    return {a for a in argv[1:] if a in case.expected or a.split(".")[0].isdigit()}


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_many_spawners_one_command_then_confirm_missing(case):
    """Every spawner of one scheduler reads one shared answer; the unlisted job is confirmed alone."""
    status_calls = []
    stderr = fixture(case.stderr) if case.stderr else ""
    batch_reply = Reply(stdout=fixture(case.stdout), stderr=stderr, returncode=case.returncode)

    def responder(argv, stdin):
        if argv == status_argv:
            status_calls.append(argv)
            return batch_reply
        # the per-job confirmation of the missing job: the scheduler no longer knows it
        return {
            "squeue": Reply(stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1),
            "qstat": Reply(stderr="qstat: Unknown Job Id Error 1\n", returncode=153)
            if case.cls is not GridengineSpawner
            else Reply(stdout=fixture("gridengine/qstat_empty.xml")),
            "mdiag": Reply(stdout="<Data></Data>\n"),
            "bjobs": Reply(stdout=fixture("lsf/gone.json"), returncode=255),
            "scontrol": Reply(stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1),
            "condor_q": Reply(),
            "condor_history": Reply(),
            # the second sources: each scheduler's history shows the job ended
            "tracejob": Reply(stdout=fixture("torque/tracejob_ended.txt")),
            "checkjob": Reply(stdout=fixture("moab/checkjob_completed.xml")),
            "bhist": Reply(stdout=fixture("lsf/bhist_done.txt")),
            "qacct": Reply(stdout=fixture("gridengine/qacct_ended_exit3.txt")),
            # poll() cancels an ended job before the hub forgets it
            "scancel": Reply(), "qdel": Reply(), "mjobctl": Reply(), "bkill": Reply(), "condor_rm": Reply(),
        }[os.path.basename(argv[0])]

    runner = FakeRunner(responder)
    spawners = []
    for i, job_id in enumerate(case.expected):
        spawner = make_spawner(case.cls, runner, name=f"user{i}", status_min_interval=0.01)
        spawner.job_id = job_id
        spawners.append(spawner)
    poller = spawners[0].status_poller()
    assert all(s.status_poller() is poller for s in spawners)
    for spawner in spawners:
        poller.watch(spawner.job_id)
    vars_ = spawners[0].command_vars()
    ids = sorted(case.expected)
    status_argv = split_command(spawners[0].batch_status_cmd, **(vars_ | {"job_ids": ",".join(ids),
                                                                            "job_id_args": ids}))
    assert os.path.basename(status_argv[0]) == case.tool
    asked = _batch_argv_ids(case, status_argv)
    assert asked is None or asked == set(ids), status_argv

    results = await asyncio.gather(*(s.job_status_now() for s in spawners))
    assert len(status_calls) == 1, "one scheduler command answers for every job"
    for spawner, status in zip(spawners, results):
        state, host = case.expected[spawner.job_id]
        if state == M:
            assert status.state is F, status  # missing, then confirmed ended by its own query
        else:
            assert (status.state, status.host) == (state, host), status
    per_job = [c for c in runner.calls if c.argv != status_argv]
    missing_count = sum(1 for state, _ in case.expected.values() if state == M)
    # condor asks condor_q, then history; slurm squeue, then scontrol
    assert len({tuple(c.argv) for c in per_job}) <= missing_count * 2
    job_ids = [s.job_id for s in spawners]  # poll() forgets an ended job (as 1.3 did)
    polls = await asyncio.gather(*(s.poll() for s in spawners))
    assert [p is None for p in polls] == [case.expected[j][0] in (P, R) for j in job_ids]
    assert len(status_calls) == 1  # poll() read the cache: no new round
