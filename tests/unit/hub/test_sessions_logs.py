"""Session card facts, job logs, usage log and report, the cancelled-start hook (issue 14).

Scheduler answers are real ``squeue`` output captured on this machine (tests/fixtures/slurm);
commands go through the injected FakeRunner; the log-folder shell script runs for real.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import time

import jinja2
import pytest
from fakes import FakeRunner, Reply, fixture
from helpers import make_spawner

from batchspawner import SlurmSpawner, SpawnFailed
from batchspawner.core import joblogs
from batchspawner.usage import report
from batchspawner.hub.sessions import parse_duration, session_facts
from batchspawner.hub.web import TEMPLATES, ready_or_cancelled

DETAILS = fixture("slurm/details.txt")
QUEUE = fixture("slurm/queue_order.txt")


class Squeue:
    """Answers the three squeue forms (status, details -O, queue order) from captured output."""

    def __init__(self, status_line="PENDING n/a Priority"):
        self.status_line = status_line
        self.calls = {"status": 0, "details": 0, "queue": 0}

    def __call__(self, argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="128\n")
        if argv[0] != "squeue":
            return Reply()
        if "-O" in argv:
            self.calls["details"] += 1
            return Reply(stdout=DETAILS)
        if "PENDING" in argv and "--sort=-p,i" in argv:
            self.calls["queue"] += 1
            return Reply(stdout=QUEUE)
        self.calls["status"] += 1
        ids = argv[argv.index("-j") + 1].split(",")
        return Reply(stdout="".join(f"{i} {self.status_line}\n" for i in ids))


def spawner(runner, job_id, name="alice", **traits):
    sp = make_spawner(SlurmSpawner, runner, name=name, legacy_log=False, status_min_interval=0.01, **traits)
    sp.job_id = job_id
    return sp


# ---------------------------------------------------------------- parsing real output
def test_details_parser_reads_captured_squeue_output():
    sp = make_spawner(SlurmSpawner, FakeRunner(), legacy_log=False)
    det = sp.parse_job_details(0, DETAILS, "")
    assert set(det) == {"126", "127", "128", "129"}
    running, pending, failed = det["126"], det["128"], det["129"]
    assert running["node"] == "localhost" and running["cores"] == "2" and running["memory"] == "1G"
    assert running["time_limit"] == 600 and running["start"] > running["submit"]
    assert pending["node"] == "" and pending["reason"] == "Priority" and pending["start"] > pending["submit"] + 60
    # squeue prints the raw wait status (7 << 8): the card and failure page say "exit code 7"
    assert failed["exit_code"] == 7 and failed["signal"] == ""
    assert sp.parse_queue_order(QUEUE) == [("127", "jhpc-small"), ("128", "jhpc-small"), ("130", "debug")]
    with pytest.raises(RuntimeError):
        sp.parse_job_details(0, "garbage line\n", "")


@pytest.mark.parametrize("text,seconds", [("10:00", 600), ("1-02:00:00", 93600), ("30", 1800), ("UNLIMITED", None),
                                          ("INVALID", None), ("", None), ("1:2:3:4", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


# ---------------------------------------------------------------- the shared details poller
async def test_one_details_and_one_queue_query_per_round_for_all_jobs_and_none_per_page_view():
    squeue = Squeue()
    runner = FakeRunner(squeue)
    sps = [spawner(runner, j, name=f"u{j}") for j in ("126", "127", "128")]
    poller = sps[0].details_poller()
    for sp in sps:
        sp._track_session()
    assert poller is sps[2].details_poller()  # one poller for the endpoint
    await poller.refresh(max_age=0)
    assert squeue.calls["details"] == 1 and squeue.calls["queue"] == 1
    details_argv = [c.argv for c in runner.calls if "-O" in c.argv][0]
    assert details_argv[details_argv.index("-j") + 1] == "126,127,128"
    # page views read caches only
    before = len(runner.calls)
    for _ in range(50):
        for sp in sps:
            sp._last_status = None
            facts = session_facts(sp)
    assert len(runner.calls) == before
    queued = session_facts(sps[2], now=poller.details["128"]["submit"] + 10)  # as at capture time
    assert queued["position"] == 2 and queued["pending_in_partition"] == 2 and queued["partition"] == "jhpc-small"
    assert queued["state"] == "queued" and queued["reason"] == "Priority"
    assert queued["reason_text"] == "Priority: other jobs are ahead in the queue"
    assert re.fullmatch(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d UTC", queued["estimated_start_text"])
    assert facts["job_id"] == "128"


async def test_running_card_shows_node_and_time_left_with_warning_in_the_last_15_minutes():
    runner = FakeRunner(Squeue("RUNNING localhost None"))
    sp = spawner(runner, "126")
    sp._track_session()
    await sp.details_poller().refresh(max_age=0)
    await sp.job_status_now()
    det = sp.details_poller().details["126"]
    facts = session_facts(sp, now=det["start"] + 60)
    assert facts["node"] == "localhost" and facts["state"] == "starting"  # job runs; the hub has not said ready
    assert facts["time_left"] == 540 and facts["time_left_text"] == "9 min" and facts["ends_soon"]
    assert facts["queue_wait"] == int(det["start"] - det["submit"])
    # display facts stay out of the hub database: the state holds what a restart needs (issue 23)
    assert "session" not in sp.get_state() and sp.get_state()["job_id"] == "126"
    # the warning shows on every hub page (page.html reads hpc_sessions)
    env = jinja2.Environment(loader=jinja2.DictLoader({
        "templates/page.html": "{% block announcement %}{% endblock %}",
        "page.html": open(os.path.join(TEMPLATES, "page.html")).read(),
    }))
    html = env.get_template("page.html").render(hpc_sessions=[facts | {"user": "alice"}])
    assert "hpc-walltime-warning" in html and "9 min" in html and "Save your work" in html
    assert "hpc-walltime-warning" not in env.get_template("page.html").render(
        hpc_sessions=[facts | {"ends_soon": False}])


def test_card_template_renders_facts_and_owner_log_link():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    macro = env.get_template("hpc_macros.html").module.hpc_card
    facts = {"job_id": "7", "server": "", "user": "alice", "profile": "Small <b>", "scheduler": "Slurm",
             "state": "queued", "native_state": "PENDING", "node": "", "partition": "debug", "cores": "1",
             "memory": "1G", "gpus": "", "reason_text": "Priority: other jobs are ahead in the queue", "position": 3,
             "pending_in_partition": 5, "estimated_start_text": "06:12 UTC", "queue_wait_text": "2 min",
             "walltime_text": "1 h 00 min", "time_left": None, "ends_soon": False,
             "log_path": "/home/alice/.jupyterhub-hpc/logs/jupyter-x-default-job7.log"}
    html = str(macro(facts, "/hub/"))
    assert 'data-state="queued"' in html and "3 of 5 pending in debug" in html and "06:12 UTC" in html
    assert "Small &lt;b&gt;" in html  # escaped
    assert 'href="/hub/hpc/log/alice/"' in html


# ---------------------------------------------------------------- job logs
async def test_default_log_goes_to_a_private_folder_prepared_as_the_user_before_the_submit():
    runner = FakeRunner(Squeue())
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False)
    await joblogs.prepare_log_dir(sp)
    script = sp.render_script()
    prep = runner.calls[0].argv
    assert prep[:2] == ["sh", "-c"] and prep[-3:] == ["/home/alice/.jupyterhub-hpc/logs", "30", "20"]
    m = re.search(r"#SBATCH --output=(\S+)", script)
    assert re.fullmatch(r"/home/alice/\.jupyterhub-hpc/logs/jupyter-\d{8}-\d{6}-default-job%j\.log", m.group(1))
    sp.job_id = "42"
    sp._session_submitted()
    assert sp.log_file == m.group(1).replace("%j", "42") and sp.get_state()["log_file"] == sp.log_file


async def test_a_13_style_log_path_is_kept_and_touches_no_folder():
    runner = FakeRunner(Squeue())
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False, log_path="{homedir}/jupyterhub_slurmspawner_{job_id}.log")
    await joblogs.prepare_log_dir(sp)
    assert runner.calls == []
    assert sp.format_log_path("5") == "/home/alice/jupyterhub_slurmspawner_5.log"


def test_log_folder_script_makes_it_private_and_prunes_by_age_and_count(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    for i in range(6):
        f = logs / f"jupyter-2026120{i}-000000-default-job{i}.log"
        f.write_text("x")
        os.chmod(f, 0o644)
        os.utime(f, (time.time() - 86400 * (40 if i == 0 else 1) + i, time.time() - 86400 * (40 if i == 0 else 1) + i))
    (logs / "notes.txt").write_text("mine")
    r = subprocess.run(["sh", "-c", joblogs.PREPARE_SH, "x", str(logs), "30", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    left = sorted(p.name for p in logs.iterdir())
    # the 40-day-old log is gone by age, then only the 3 newest logs are kept; other files untouched
    assert left == ["jupyter-20261203-000000-default-job3.log", "jupyter-20261204-000000-default-job4.log",
                    "jupyter-20261205-000000-default-job5.log", "notes.txt"]
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((logs / n).stat().st_mode) == 0o600 for n in left if n.endswith(".log"))
    fresh = tmp_path / "new" / "logs"
    assert subprocess.run(["sh", "-c", joblogs.PREPARE_SH, "x", str(fresh), "0", "0"]).returncode == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


async def test_failed_spawn_shows_scheduler_facts_and_log_tail_never_a_tools_error():
    def respond(argv, stdin):
        if argv[0] == "tail":
            return Reply(returncode=1, stderr="tail: cannot open '/home/alice/x.log' for reading: No such file")
        if argv[0] == "squeue" and "-O" not in argv and "--sort=-p,i" not in argv:
            ids = argv[argv.index("-j") + 1].split(",")
            return Reply(stdout="".join(f"{i} FAILED localhost NonZeroExitCode\n" for i in ids))
        return Squeue()(argv, stdin)

    runner = FakeRunner(respond)
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False, startup_poll_interval=0.01, status_min_interval=0.01)
    with pytest.raises(SpawnFailed) as err:
        await asyncio.wait_for(sp.start(), 5)
    text = str(err.value)
    assert "ended before your server started (job state FAILED" in text and "What to do" in text
    assert "tail:" not in text and "cannot open" not in text and "left no log" in text
    assert "hpc-failure" in err.value.jupyterhub_html_message
    # an HTTPError too: a job dying within the hub's first second still shows this text, not
    # JupyterHub's "Unhandled error starting server"
    from tornado.web import HTTPError

    assert isinstance(err.value, HTTPError) and err.value.status_code == 500 and str(err.value) == text


# ---------------------------------------------------------------- usage log and report
async def test_usage_log_lines_and_report_counts(tmp_path, capsys):
    usage = tmp_path / "usage.jsonl"
    runner = FakeRunner(Squeue())
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False, usage_log=str(usage), req_nprocs="2",
                      req_memory="1G", req_partition="debug", req_runtime="01:00:00")
    sp._wrapper_profile = "small"
    for job, outcome in (("1", "start"), ("2", "fail"), ("3", "cancel")):
        sp.job_id = job
        sp._session_submitted()
        if outcome == "start":
            sp._session_running()
            sp._session_started()
            sp._session_stopped()
        elif outcome == "fail":
            sp._session_failed(SpawnFailed("The batch job 2 ended before your server started (FAILED)."))
        else:
            sp._session_failed(asyncio.CancelledError())
    lines = [json.loads(x) for x in usage.read_text().splitlines()]
    assert [x["event"] for x in lines] == ["spawn", "start", "stop", "spawn", "fail", "spawn", "fail"]
    assert set(lines[0]) == set(report.FIELDS)
    assert lines[1]["queue_wait"] is not None and lines[0]["cores"] == "2" and lines[0]["profile"] == "small"
    assert stat.S_IMODE(usage.stat().st_mode) == 0o600
    assert report.main([str(usage), "--json", "--csv", str(tmp_path / "r.csv"), "--html", str(tmp_path / "r.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["users"]
    assert (row["sessions"], row["started"], row["failures"], row["cancelled"]) == (3, 1, 1, 1)
    assert out["profiles"][0]["profile"] == "small"
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4
    assert (tmp_path / "r.html").read_text().count("<svg") == 3
    assert report.main([str(usage)]) == 0 and "Per profile" in capsys.readouterr().out


# ---------------------------------------------------------------- the cancelled-start race
async def test_ready_hook_turns_a_cancelled_start_into_a_cancelled_event():
    loop = asyncio.get_running_loop()

    class Sp:
        pending = None
        server = object()
        _spawn_future = loop.create_future()

    ready = {"progress": 100, "ready": True, "message": "Server ready at /user/a/"}
    assert ready_or_cancelled(Sp, ready) is ready
    Sp._spawn_future.cancel()
    event = ready_or_cancelled(Sp, ready)
    assert event["failed"] and event["cancelled"] and "ready" not in event
    Sp._spawn_future = None
    Sp.server = None
    assert ready_or_cancelled(Sp, ready)["failed"]


async def test_details_queries_run_as_the_status_identity_with_the_scheduler_environment(monkeypatch):
    """The card's queries follow the one runner/environment rule of the shared status query
    (batchspawner/commands/policy.py): SLURM_CONF reaches them, hub secrets never do, and the poller
    key holds the query identity."""
    monkeypatch.setenv("SLURM_CONF", "/etc/site/slurm.conf")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "do-not-pass")
    squeue = Squeue()
    runner = FakeRunner(squeue)
    sp = spawner(runner, "126")
    sp._track_session()
    poller = sp.details_poller()
    await poller.refresh(max_age=0)
    calls = [c for c in runner.calls if "-O" in c.argv or "PD" in " ".join(c.argv)]
    assert calls, runner.calls
    for call in calls:
        assert call.env["SLURM_CONF"] == "/etc/site/slurm.conf"
        assert not any("TOKEN" in k for k in call.env)
    status_key = sp.status_endpoint()[2]
    assert poller.key[-len(status_key):] == tuple(status_key)


async def test_a_burst_of_spawns_by_one_user_prepares_the_log_folder_once():
    """Issue 16: a user's storm of named servers costs one folder command, not one per spawn
    (each command forks the hub); another user gets her own; a failed spawn forgets it."""
    runner = FakeRunner(Squeue())
    alice = [make_spawner(SlurmSpawner, runner, name="alice", legacy_log=False) for _ in range(5)]
    bob = make_spawner(SlurmSpawner, runner, name="bob", legacy_log=False)
    await asyncio.gather(*(joblogs.prepare_log_dir(sp) for sp in alice + [bob]))
    folders = [c.argv[-3] for c in runner.calls if c.argv[:2] == ["sh", "-c"]]
    assert sorted(folders) == ["/home/alice/.jupyterhub-hpc/logs", "/home/bob/.jupyterhub-hpc/logs"]
    await joblogs.prepare_log_dir(alice[0])  # a moment later: still prepared
    assert len([c for c in runner.calls if c.argv[:2] == ["sh", "-c"]]) == 2
    joblogs.forget_prepared(alice[1])  # a failed spawn of alice's
    await joblogs.prepare_log_dir(alice[2])
    folders = [c.argv[-3] for c in runner.calls if c.argv[:2] == ["sh", "-c"]]
    assert folders.count("/home/alice/.jupyterhub-hpc/logs") == 2


async def test_a_failed_folder_command_is_tried_again_by_the_next_spawn():
    fail = {"on": True}

    def respond(argv, stdin):
        if argv[:2] == ["sh", "-c"] and fail["on"]:
            return Reply(returncode=1, stderr="mkdir: cannot create directory: Disk quota exceeded")
        return Squeue()(argv, stdin)

    runner = FakeRunner(respond)
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False)
    await joblogs.prepare_log_dir(sp)  # logged, never fatal
    fail["on"] = False
    await joblogs.prepare_log_dir(sp)
    assert len([c for c in runner.calls if c.argv[:2] == ["sh", "-c"]]) == 2


def _three_tracked_jobs():
    """Jobs 126 (running on a node), 127 and 128 tracked for session cards: the fake squeue, its
    runner and their shared details poller."""
    squeue = Squeue()
    runner = FakeRunner(squeue)
    sps = [spawner(runner, j, name=f"u{j}") for j in ("126", "127", "128")]
    for sp in sps:
        sp._track_session()
    return squeue, runner, sps[0].details_poller()


async def test_running_jobs_cost_no_details_query_per_round_pending_ones_do():
    """Issue 16: a job that runs on a node keeps its card facts; it is asked about again after
    settled_refresh, or when its end must be explained, not every session_interval."""
    squeue, runner, poller = _three_tracked_jobs()
    await poller.refresh(max_age=0)
    assert squeue.calls == {"status": 0, "details": 1, "queue": 1}
    running = sorted(j for j, d in poller.details.items() if d.get("node"))
    pending = sorted(j for j, d in poller.details.items() if not d.get("node"))
    assert running and pending  # the capture holds both kinds
    # the pending ones are asked about every round, with the queue order; the running ones are not
    details_argvs = []
    for _ in range(3):
        await poller.refresh(max_age=0)
        details_argvs.append([c.argv for c in runner.calls if "-O" in c.argv][-1])
    assert squeue.calls["details"] == 4 and squeue.calls["queue"] == 4
    assert all(argv[argv.index("-j") + 1] == ",".join(pending) for argv in details_argvs)
    # an ended job's exit status: every job is asked about, once
    await poller.refresh(max_age=0, everything=True)
    last = [c.argv for c in runner.calls if "-O" in c.argv][-1]
    assert last[last.index("-j") + 1] == "126,127,128"
    # only running jobs left: rounds ask nothing at all
    for job_id in pending:
        poller.unwatch(job_id)
    before = dict(squeue.calls)
    for _ in range(3):
        await poller.refresh(max_age=0)
    assert squeue.calls == before
    # ...until their facts are settled_refresh old (an admin may have changed a time limit)
    poller.settled_refresh = 0.0
    await poller.refresh(max_age=0)
    assert squeue.calls["details"] == before["details"] + 1 and squeue.calls["queue"] == before["queue"]


@pytest.mark.parametrize("cls_name", ["SlurmSpawner", "GridengineSpawner"])
def test_the_job_script_makes_its_log_private_as_it_starts(tmp_path, cls_name):
    """The scheduler creates the log with the user's umask; under srun the wrapper's output is a
    pipe, so the script itself (stdout = the log) makes it 0600: no command from the hub."""
    import batchspawner

    sp = make_spawner(getattr(batchspawner, cls_name), FakeRunner(Squeue()), legacy_log=False)
    script = sp.render_script()
    line = next(ln for ln in script.splitlines() if ln.startswith("chmod go= /proc/self/fd/1"))
    log = tmp_path / "jupyter-job.log"
    with open(log, "w") as out:
        os.chmod(log, 0o644)
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + line + "\necho started"], stdout=out)
    assert r.returncode == 0 and log.read_text() == "started\n"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    # the same line is harmless when the output is a pipe
    assert subprocess.run(["bash", "-c", "set -euo pipefail\n" + line], capture_output=True).returncode == 0


async def test_a_failing_details_query_backs_off_and_recovers():
    """A squeue without the details fields fails every round: the poller asks less and less often
    (interval doubling to max_interval), and at the normal interval once it works again."""
    fail = {"on": True}

    def respond(argv, stdin):
        if "-O" in argv and fail["on"]:
            return Reply(returncode=1, stderr="squeue: error: Invalid field requested: \"tres-per-node\"")
        return Squeue()(argv, stdin)

    runner = FakeRunner(respond)
    sp = spawner(runner, "126")
    sp._track_session()
    poller = sp.details_poller()
    intervals = []
    for _ in range(4):
        await poller.refresh(max_age=0)
        intervals.append(poller.next_interval())
    assert intervals == [30.0, 60.0, 120.0, 240.0] and poller.details == {}
    fail["on"] = False
    await poller.refresh(max_age=0)
    assert poller.failures == 0 and poller.next_interval() == poller.interval and "126" in poller.details


async def test_the_log_folder_is_prepared_once_per_place_a_command_runs():
    """Two clusters (another exec_prefix, ssh submit hosts) may not share the home file system."""
    here, there = FakeRunner(Squeue()), FakeRunner(Squeue(), prefix=["ssh", "login2"])
    a = make_spawner(SlurmSpawner, here, legacy_log=False)
    b = make_spawner(SlurmSpawner, there, legacy_log=False)
    await joblogs.prepare_log_dir(a)
    await joblogs.prepare_log_dir(b)
    await joblogs.prepare_log_dir(a)
    assert [c.argv[0] for c in here.calls] == ["sh"] and [c.argv[0] for c in there.calls] == ["sh"]


async def test_an_ended_jobs_exit_status_is_asked_even_while_a_round_without_it_runs():
    squeue, runner, poller = _three_tracked_jobs()
    await poller.refresh(max_age=0)  # 126 runs on a node: settled
    ordinary = asyncio.ensure_future(poller.refresh(max_age=0))
    await asyncio.sleep(0)
    await poller.refresh(max_age=0, everything=True)
    await ordinary
    last = [c.argv for c in runner.calls if "-O" in c.argv][-1]
    assert last[last.index("-j") + 1] == "126,127,128"
