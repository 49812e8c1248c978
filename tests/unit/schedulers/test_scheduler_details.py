"""Scheduler-specific behaviour beyond the conformance table."""

import pytest
from fakes import FakeRunner, Reply, fixture
from fakesched.cli import condor_split_args
from unit.helpers import make_spawner

from batchspawner import CondorSpawner, JobState, LsfSpawner, PBSSpawner, TorqueSpawner
from batchspawner.schedulers.condor import condor_quote_args
from batchspawner.schedulers.lsf import lsf_walltime

# examples from the HTCondor manual, condor_submit "arguments" (new syntax)
CONDOR_ARGS = [
    ("manual-simple", '"3 simple arguments"', ["3", "simple", "arguments"]),
    ("manual-spaces", "\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"]),
    ("manual-quotes", "\"one \"\"two\"\" 'spacey ''quoted'' argument'\"", ["one", '"two"', "spacey 'quoted' argument"]),
]


@pytest.mark.parametrize("text,argv", [c[1:] for c in CONDOR_ARGS], ids=[c[0] for c in CONDOR_ARGS])
def test_fake_condor_reads_arguments_like_the_manual(text, argv):
    # the fake condor_submit must read arguments as HTCondor does, or the e2e test proves nothing
    assert condor_split_args(text) == argv


@pytest.mark.parametrize(
    "argv",
    [["-c", "echo 'a b' \"c\""], ["x'y", 'p""q', "  spaced  "], ["-c", 'eval "$(printf %s QUJD | base64 -d)"']],
    ids=["shell-quotes", "doubled-quotes", "spaces"],
)
def test_condor_quote_args_round_trip(argv):
    assert condor_split_args(condor_quote_args(argv)) == argv


def test_condor_quote_args_refuses_newlines():
    with pytest.raises(ValueError):
        condor_quote_args(["a\nb"])


def test_condor_job_body_carries_prologue_and_epilogue():
    import base64
    import re

    spawner = make_spawner(CondorSpawner, req_prologue="module load py\necho 'it''s'", req_epilogue="echo done")
    script = spawner.render_script()
    args = re.search(r"^arguments = (.*)$", script, re.M).group(1)
    argv = condor_split_args(args)
    encoded = re.search(r"printf %s (\S+) \|", argv[1]).group(1)
    body = base64.b64decode(encoded).decode()
    assert body.splitlines()[:2] == ["module load py", "echo 'it''s'"]
    assert "batchspawner-singleuser" in body and body.endswith("echo done")


async def test_condor_job_that_left_the_queue_is_found_in_history():
    answers = {"condor_q": Reply(), "condor_history": Reply(stdout=fixture("condor/removed.txt"))}
    runner = FakeRunner(responder=lambda argv, stdin: answers[argv[0]])
    spawner = make_spawner(CondorSpawner, runner)
    spawner.job_id = "42"
    status = await spawner.query_job_status()
    assert status.state is JobState.FINISHED and status.native == "Removed"
    assert [c.argv[0] for c in runner.calls] == ["condor_q", "condor_history"]
    assert "42" in runner.calls[1].argv


@pytest.mark.parametrize(
    "history,state",
    [(Reply(), JobState.FINISHED), (Reply(stderr="Failed to fetch ads", returncode=1), JobState.UNKNOWN),
     (Reply(timeout=True), JobState.UNKNOWN)],
    ids=["in-neither", "history-fails", "history-times-out"],
)
async def test_condor_history_outcomes(history, state):
    answers = {"condor_q": Reply(), "condor_history": history}
    spawner = make_spawner(CondorSpawner, FakeRunner(responder=lambda argv, stdin: answers[argv[0]]))
    spawner.job_id = "42"
    assert (await spawner.query_job_status()).state is state


@pytest.mark.parametrize(
    "runtime,expected",
    [("01:00:00", "1:00"), ("00:30:30", "0:31"), ("1-02:00:00", "26:00"), ("90", "90"), ("2:30", "2:30")],
    ids=["hour", "round-up-seconds", "days", "minutes-as-is", "lsf-format-as-is"],
)
def test_lsf_walltime(runtime, expected):
    assert lsf_walltime(runtime) == expected


@pytest.mark.parametrize("cls", [TorqueSpawner, PBSSpawner], ids=["torque", "pbs"])
def test_queue_and_host_directive(cls):
    host_only = make_spawner(cls, req_host="pbs-server").render_script()
    assert "#PBS -q @pbs-server" in host_only.splitlines()  # a valid destination: default queue at that server
    both = make_spawner(cls, req_queue="short", req_host="pbs-server").render_script()
    assert "#PBS -q short@pbs-server" in both.splitlines()
    assert "#PBS -q" not in make_spawner(cls).render_script()  # batchspawner 1.3 printed "#PBS -q @"


def test_user_option_cannot_add_directives():
    spawner = make_spawner(LsfSpawner)
    spawner.user_options = {"queue": "short\n#BSUB -u root"}
    from batchspawner.core.options import validate_user_options

    with pytest.raises(Exception) as info:
        validate_user_options(spawner.user_options, spawner.request_vars())
    assert getattr(info.value, "status_code", None) == 400 and "queue" in str(info.value)


@pytest.mark.parametrize("name", ["torque", "pbs", "moab", "lsf", "condor"])
def test_entry_points(name):
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    cls = eps[name].load()
    import batchspawner

    assert getattr(batchspawner, cls.__name__) is cls  # 1.3 names: batchspawner.TorqueSpawner, ...


@pytest.mark.parametrize("cls", [TorqueSpawner, PBSSpawner], ids=["torque", "pbs"])
def test_pbs_family_log_path_cannot_use_job_id(cls):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=rf"{cls.__name__}\.log_path"):
        make_spawner(cls, log_path="{homedir}/jh_{job_id}.log")
    assert make_spawner(cls, log_path="{homedir}/jh.log").render_script().count("#PBS -o /home/alice/jh.log") == 1
