"""GridengineSpawner: script template, command argv and the start/poll/stop flow (FakeRunner)."""

import logging

import pytest

from batchspawner import GridengineSpawner, JobState, SpawnFailed
from fakes import FakeRunner, Reply, fixture
from helpers import make_spawner

G = "gridengine/"


def directives(script):
    return [line for line in script.splitlines() if line.startswith("#$")]


def test_default_script_has_no_empty_or_optional_directives():
    lines = directives(make_spawner(GridengineSpawner).render_script())
    assert "#$ -S /bin/bash" in lines
    assert any(l.startswith("#$ -o ") and l.endswith("/jupyterhub_gridengine_$JOB_ID.log") for l in lines)
    for line in lines:
        assert line.split()[-1] not in ("-q", "-P", "-A", "-pe", "-l", "-v", "-o", "#$"), line
        assert not line.endswith("=")
    text = "\n".join(lines)
    for opt in ("-q ", "-P ", "-A ", "-pe ", "-l "):
        assert opt not in text


REQUEST_CASES = [
    ("queue", {"req_queue": "interactive.q"}, "#$ -q interactive.q"),
    ("walltime", {"req_runtime": "01:30:00"}, "#$ -l h_rt=01:30:00"),
    ("memory", {"req_memory": "4G"}, "#$ -l h_vmem=4G"),
    ("memory-resource", {"req_memory": "4G", "req_memory_resource": "mem_free"}, "#$ -l mem_free=4G"),
    ("cores-with-pe", {"req_nprocs": "4", "req_pe": "smp"}, "#$ -pe smp 4"),
    ("gpus-with-resource", {"req_ngpus": "2", "req_gpu_resource": "gpu"}, "#$ -l gpu=2"),
    ("project", {"req_project": "astro"}, "#$ -P astro"),
    ("account", {"req_account": "grant42"}, "#$ -A grant42"),
    ("options", {"req_options": "-l arch=lx-amd64"}, "#$ -l arch=lx-amd64"),
    ("job-name", {"req_job_name": "jh-alice"}, "#$ -N jh-alice"),
]


@pytest.mark.parametrize("traits,line", [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES])
def test_request_traits_render_directives(traits, line):
    assert line in directives(make_spawner(GridengineSpawner, **traits).render_script())


SILENT_CASES = [
    ("cores-without-pe", {"req_nprocs": "4"}, "-pe"),
    ("gpus-without-resource", {"req_ngpus": "2"}, "gpu"),
    ("memory-resource-emptied", {"req_memory": "4G", "req_memory_resource": ""}, "4G"),
]


@pytest.mark.parametrize("traits,absent", [c[1:] for c in SILENT_CASES], ids=[c[0] for c in SILENT_CASES])
def test_requests_without_site_names_render_nothing(traits, absent):
    assert absent not in "\n".join(directives(make_spawner(GridengineSpawner, **traits).render_script()))


def test_value_with_newline_is_refused_before_submission():
    runner = FakeRunner()
    sp = make_spawner(GridengineSpawner, runner, req_queue="all.q\n#$ -u root")
    with pytest.raises(SpawnFailed, match="queue"):
        sp.render_script()
    assert runner.calls == []


def answers(states):
    """Responder: qsub prints job 1; successive qstat calls answer from `states` (fixture names)."""
    queue = list(states)

    def answer(argv, stdin):
        if argv[0] == "qsub":
            return Reply(fixture(G + "submit_terse.txt"))
        if argv[0] == "qstat":
            name = queue.pop(0) if len(queue) > 1 else queue[0]
            return Reply(fixture(G + name))
        if argv[0] == "tail":
            return Reply("bash: line 9: /opt/missing/batchspawner-singleuser: No such file or directory\n")
        if argv[0] == "qacct":  # the second source: the accounting record of the ended job
            return Reply(fixture(G + "qacct_ended_exit3.txt"))
        return Reply(fixture(G + "qdel_running.txt"))

    return answer


async def test_submit_query_cancel_argv():
    runner = FakeRunner(answers(["qstat_running_held.xml"]))
    sp = make_spawner(GridengineSpawner, runner)
    sp.job_id = await sp.submit_batch_script()
    status = await sp.query_job_status()
    await sp.cancel_batch_job()
    argvs = [c.argv for c in runner.calls]
    assert argvs == [["qsub", "-terse", "-S", "/bin/bash"], ["qstat", "-xml", "-u", "alice"], ["qdel", "1"]]
    assert runner.calls[0].stdin.startswith("#!/bin/bash\n")
    assert "JUPYTERHUB_API_TOKEN" not in runner.calls[1].env and "JUPYTERHUB_API_TOKEN" not in runner.calls[2].env
    assert (sp.job_id, status.state, status.host) == ("1", JobState.RUNNING, "localhost")


async def test_job_that_ends_before_reporting_fails_with_log_tail():
    runner = FakeRunner(answers(["qstat_running_held.xml", "qstat_empty.xml"]))
    sp = make_spawner(GridengineSpawner, runner, startup_poll_interval=0.01, running_check_interval=0.05)
    with pytest.raises(SpawnFailed, match="ended") as err:
        await sp.start()
    assert "No such file or directory" in str(err.value)
    assert ["tail", "-c", "8192", "--"] in [c.argv[:4] for c in runner.calls]
    assert runner.calls[-2].argv[:3] == ["rm", "-f", "--"]  # the token file is removed
    assert runner.calls[-1].argv == ["qdel", "1"]  # then the ended job is cancelled (idempotent) and forgotten
    assert sp.job_id == "" and sp.get_state().get("uncancelled_jobs") is None
    tail = [c.argv for c in runner.calls if c.argv[0] == "tail"][0]
    assert tail[-1].endswith("jupyterhub_gridengine_1.log")


async def test_error_state_job_fails_spawn_then_stop_deletes_it():
    runner = FakeRunner(answers(["qstat_pending_error.xml"]))
    sp = make_spawner(GridengineSpawner, runner, startup_poll_interval=0.01, running_check_interval=0.05)
    runner.responder = _with_id("5", runner.responder)
    with pytest.raises(SpawnFailed, match="error state"):
        await sp.start()
    await sp.stop(now=True)
    assert ["qdel", "5"] in [c.argv for c in runner.calls]


def _with_id(job_id, inner):
    def answer(argv, stdin):
        if argv[0] == "qsub":
            return Reply(f"{job_id}\n")
        return inner(argv, stdin)

    return answer


@pytest.mark.parametrize(
    "name,accounting,alive",
    [
        ("qstat_pending_error.xml", "qacct_ended_exit3.txt", True),
        ("qstat_empty.xml", "qacct_ended_exit3.txt", False),
        # qstat no longer lists it, but qacct has no record yet (before the accounting flush)
        ("qstat_empty.xml", "qacct_not_found.stderr", True),
        ("qstat_qmaster_down.txt", "qacct_ended_exit3.txt", True),
    ],
    ids=["pending", "vanished-and-accounted", "vanished-not-yet-accounted", "qmaster-down"],
)
async def test_poll(name, accounting, alive):
    def answer(argv, stdin):
        path = accounting if argv[0] == "qacct" else name
        text = fixture(G + path)
        return Reply("", text, 1) if path.endswith((".stderr", "down.txt")) else Reply(text)

    sp = make_spawner(GridengineSpawner, FakeRunner(answer))
    sp.job_id = "4"
    assert (await sp.poll() is None) is alive


WARN_CASES = [
    ("cores-without-pe", {"req_nprocs": "4"}, ["GridengineSpawner.req_pe"]),
    ("gpus-without-resource", {"req_ngpus": "2"}, ["GridengineSpawner.req_gpu_resource"]),
    ("both", {"req_nprocs": "4", "req_ngpus": "2"}, ["GridengineSpawner.req_pe", "GridengineSpawner.req_gpu_resource"]),
    ("one-core-needs-no-pe", {"req_nprocs": "1"}, []),
    ("cores-with-pe", {"req_nprocs": "4", "req_pe": "smp"}, []),
    ("gpus-with-resource", {"req_ngpus": "2", "req_gpu_resource": "gpu"}, []),
    ("nothing-requested", {}, []),
]


@pytest.mark.parametrize("traits,names", [c[1:] for c in WARN_CASES], ids=[c[0] for c in WARN_CASES])
def test_ignored_cores_or_gpus_are_warned_about_at_render_time(traits, names, caplog):
    sp = make_spawner(GridengineSpawner, **traits)
    with caplog.at_level(logging.WARNING):
        sp.render_script()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(names), warnings
    for name in names:
        assert any(name in w for w in warnings), (name, warnings)


def test_cores_asked_through_user_options_are_warned_about_too(caplog):
    sp = make_spawner(GridengineSpawner)
    with caplog.at_level(logging.WARNING):
        sp.render_script({"nprocs": "8"})
    assert any("8 cores" in r.getMessage() and "GridengineSpawner.req_pe" in r.getMessage() for r in caplog.records)
