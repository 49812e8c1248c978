"""batchspawner 1.3 / wrapspawner 1.0 configurations and subclasses, as sites run them (issue 13).

Every test here is shaped like a site's jupyterhub_config.py or its own spawner module. The
command runner is injected (tests/fakes.py), so these check what the spawner decides: which
command runs, through which prefix, as whom, with which environment, and how its output is read.
"""

from __future__ import annotations

import logging
import os
import re

import pytest
from helpers import make_spawner
from traitlets import Unicode

from batchspawner import LsfSpawner, SlurmSpawner, TorqueSpawner
from batchspawner.core.states import JobState
from fakes import FakeRunner, Reply

TORQUE_XML = (
    "<Data><Job><Job_Id>77.srv</Job_Id><job_state>{state}</job_state>"
    "<exec_host>node7/0-3</exec_host></Job></Data>"
)


# ------------------------------------------------------------------ public names (break 6)
def test_13_public_names_import():
    from batchspawner import BatchSpawnerRegexStates, JobStatus, UserEnvMixin, format_template
    from batchspawner.batchspawner import BatchSpawnerBase, SlurmSpawner as Slurm13

    assert Slurm13 is SlurmSpawner
    assert issubclass(BatchSpawnerRegexStates, BatchSpawnerBase)
    # 1.3's JobStatus was an Enum with these members; code compares against them
    assert {m.name for m in JobStatus} == {"NOTFOUND", "RUNNING", "PENDING", "UNKNOWN"}
    assert format_template("{a}-x", a=1) == "1-x"
    assert format_template("{{ a }}", a=2) == "2"
    assert hasattr(UserEnvMixin, "user_env")


async def test_13_keepvars_lists_user_home_shell_for_slurm():
    """1.3's SlurmSpawner (UserEnvMixin) put USER, HOME, SHELL in get_env(), so --export={keepvars}
    gave the job the user's USER/HOME/SHELL. A 1.3 script with --export={keepvars} still does."""
    import pwd

    me = pwd.getpwuid(os.getuid())  # a user that exists on any machine (the fast tier runs before ensure-users)
    spawner = make_spawner(SlurmSpawner, FakeRunner(), name=me.pw_name)
    await spawner._resolve_homedir()  # what start() does first (the passwd lookup, off the event loop)
    env = spawner.get_env()
    assert env["USER"] == me.pw_name
    assert env["HOME"] == me.pw_dir
    assert env["SHELL"] == me.pw_shell
    keep = spawner.req_keepvars.split(",")
    assert {"USER", "HOME", "SHELL"} <= set(keep)


# ------------------------------------------------------------------ a site's own scheduler class
class SiteQueue:
    """A made-up scheduler a site wrapped with BatchSpawnerRegexStates in 1.3."""

    def __init__(self):
        self.state = "Q"
        self.cancelled = []

    def __call__(self, argv, stdin):
        if argv[0] == "mysub":
            return Reply(stdout="job 555 accepted\n")
        if argv[0] == "mystat":
            assert argv[1] == "555"
            if self.state == "gone":
                return Reply(stdout="")
            return Reply(stdout=f"state={self.state} where=cn12\n")
        if argv[0] == "mydel":
            self.cancelled.append(argv[1])
            self.state = "gone"
            return Reply()
        if argv[0] in ("sh", "rm", "tail"):
            return Reply()
        raise AssertionError(argv)


def site_spawner_class():
    from batchspawner import BatchSpawnerRegexStates

    class MySpawner(BatchSpawnerRegexStates):
        batch_script = Unicode("#!/bin/sh\n{cmd}\n").tag(config=True)
        batch_submit_cmd = Unicode("mysub").tag(config=True)
        batch_query_cmd = Unicode("mystat {job_id}").tag(config=True)
        batch_cancel_cmd = Unicode("mydel {job_id}").tag(config=True)
        state_pending_re = Unicode(r"state=Q").tag(config=True)
        state_running_re = Unicode(r"state=R").tag(config=True)
        state_exechost_re = Unicode(r"where=(\S+)").tag(config=True)

        def parse_job_id(self, output):
            return output.split()[1]

    return MySpawner


async def test_13_site_regex_states_subclass_start_poll_stop(monkeypatch):
    cls = site_spawner_class()
    queue = SiteQueue()
    spawner = make_spawner(cls, FakeRunner(responder=queue), startup_poll_interval=0.01)
    spawner.state_exechost_exp = r"\1.ib.example"

    async def reported():
        import asyncio

        while spawner._port_future is None:
            await asyncio.sleep(0.01)
        queue.state = "R"
        spawner.report_port(1)

    async def listening(ip, port):
        return None

    async def as_named(host):  # cn12.ib.example does not resolve here; the family check is tested elsewhere
        return host

    monkeypatch.setattr(spawner, "_wait_for_listen", listening)
    monkeypatch.setattr(spawner, "connect_address", as_named)
    import asyncio

    asyncio.ensure_future(reported())
    ip, port = await asyncio.wait_for(spawner.start(), 5)
    assert (ip, port) == ("cn12.ib.example", 1)
    assert await spawner.poll() is None
    await spawner.stop()
    assert queue.cancelled == ["555"]


async def test_13_state_predicate_overrides_are_honoured():
    """A 1.3 subclass that overrides state_isrunning/state_ispending/state_gethost decides the state."""
    cls = site_spawner_class()

    class Predicates(cls):
        def state_ispending(self):
            return "WAIT" in self.job_status

        def state_isrunning(self):
            return "GO" in self.job_status

        def state_gethost(self):
            return self.job_status.split("@")[1].strip()

    def respond(argv, stdin):
        return Reply(stdout="GO @gpu3\n")

    spawner = make_spawner(Predicates, FakeRunner(responder=respond))
    spawner.job_id = "9"
    status = await spawner.query_job_status()
    assert status.state is JobState.RUNNING
    assert status.host == "gpu3"


async def test_13_run_command_override_is_used():
    """A 1.3 subclass that overrides run_command (e.g. to add a wrapper) still runs every command."""
    seen = []
    cls = site_spawner_class()

    class Wrapped(cls):
        async def run_command(self, cmd, input=None, env=None):
            seen.append(cmd)
            if cmd.split()[-2:][0] == "mystat":
                return "state=R where=cn1"
            return "job 1 accepted"

    spawner = make_spawner(Wrapped, None, exec_prefix="")
    spawner.job_id = "1"
    status = await spawner.query_job_status()
    assert status.state is JobState.RUNNING
    assert any("mystat 1" in c for c in seen)


# ------------------------------------------------------------------ exec_prefix (break 6)
def test_13_exec_prefix_renders_every_request_variable():
    spawner = make_spawner(SlurmSpawner, None, exec_prefix="ssh {username}@{host}", req_host="login2")
    assert spawner.runner.prefix[:2] == ["ssh", "alice@login2"]
    assert spawner.runner.remote_shell


# ------------------------------------------------------------------ state_exechost_exp (break 3)
def test_13_exechost_exp_is_match_expand_on_torque_xml():
    spawner = make_spawner(TorqueSpawner, FakeRunner(), state_exechost_exp=r"\1.ib.cluster")
    spawner.job_id = "77.srv"
    status = spawner.parse_query_output(0, TORQUE_XML.format(state="R"), "")
    assert status.state is JobState.RUNNING
    assert status.host == "node7.ib.cluster"


def test_13_slurm_with_13_host_regex_gets_the_host():
    # 1.3's SlurmSpawner host regex, kept in a site's config
    spawner = make_spawner(SlurmSpawner, FakeRunner(), state_exechost_re=r"\s+((?:[\w_-]+\.?)+)$")
    status = spawner.parse_query_output(0, "RUNNING cn042 None\n", "")
    assert status.state is JobState.RUNNING
    assert status.host == "cn042"
    spawner.state_exechost_exp = r"\1.ib"
    assert spawner.parse_query_output(0, "RUNNING cn042 None\n", "").host == "cn042.ib"


# ------------------------------------------------------------------ configured query/regexes (break 4)
def test_13_lsf_query_output_parses():
    spawner = make_spawner(
        LsfSpawner, FakeRunner(), batch_query_cmd='bjobs -a -noheader -o "STAT EXEC_HOST" {job_id}'
    )
    spawner.job_id = "31"
    run = spawner.parse_query_output(0, "RUN hostA\n", "")
    assert (run.state, run.host) == (JobState.RUNNING, "hostA")
    assert spawner.parse_query_output(0, "PEND \n", "").state is JobState.PENDING
    assert spawner.parse_query_output(0, "DONE hostA\n", "").state is JobState.FINISHED
    assert not spawner.uses_shared_status()  # its shared query would not match the site's own


def test_13_condor_query_output_parses():
    from batchspawner import CondorSpawner

    spawner = make_spawner(
        CondorSpawner,
        FakeRunner(),
        batch_query_cmd='condor_q {job_id} -format "%s, " JobStatus -format "%s" RemoteHost -format "\\n" True',
    )
    spawner.job_id = "12"
    run = spawner.parse_query_output(0, "2, slot1@exec3.example\n", "")
    assert (run.state, run.host) == (JobState.RUNNING, "exec3.example")
    assert spawner.parse_query_output(0, "1, \n", "").state is JobState.PENDING


def test_13_torque_custom_regex_honoured():
    spawner = make_spawner(TorqueSpawner, FakeRunner(), state_running_re=r"<job_state>[RX]</job_state>")
    spawner.job_id = "77.srv"
    status = spawner.parse_query_output(0, TORQUE_XML.format(state="X"), "")
    assert status.state is JobState.RUNNING
    assert status.host == "node7"


# ------------------------------------------------------------------ scheduler environment (break 5)
async def test_13_scheduler_environment_reaches_every_command(monkeypatch):
    monkeypatch.setenv("SLURM_CONF", "/etc/site/slurm.conf")
    monkeypatch.setenv("LSF_ENVDIR", "/opt/lsf/conf")
    monkeypatch.setenv("SITE_SCHED_HOME", "/opt/x")
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "do-not-pass")
    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="1 RUNNING cn1 None\n" if "%i" in argv[-1] else "RUNNING cn1 None\n"))
    spawner = make_spawner(SlurmSpawner, runner, scheduler_env_names=["SITE_SCHED_*"])
    spawner.job_id = "1"
    await spawner.query_job_status()
    await spawner.job_status_now()
    await spawner.cancel_batch_job()
    assert len(runner.calls) == 3
    for call in runner.calls:
        assert call.env["SLURM_CONF"] == "/etc/site/slurm.conf"
        assert call.env["LSF_ENVDIR"] == "/opt/lsf/conf"
        assert call.env["SITE_SCHED_HOME"] == "/opt/x"
        assert "CONFIGPROXY_AUTH_TOKEN" not in call.env
        assert not any("TOKEN" in k for k in call.env)


# ------------------------------------------------------------------ hub not a scheduler client (break 1)
def test_13_ssh_exec_prefix_governs_the_shared_status_query():
    """exec_prefix = "ssh login1 sudo -u {username}": the hub has no squeue; the shared query must
    go through the same login node (as this user), never run squeue locally."""
    a = make_spawner(SlurmSpawner, None, exec_prefix="ssh login1 sudo -u {username}")
    b = make_spawner(SlurmSpawner, None, name="bob", exec_prefix="ssh login1 sudo -u {username}")
    assert a.status_runner.prefix[:2] == ["ssh", "login1"]
    assert a.status_runner.remote_shell
    assert "alice" in a.status_runner.prefix and "bob" in b.status_runner.prefix
    # each identity its own poller: never "whichever user polled last"
    a.job_id, b.job_id = "1", "2"
    assert a.status_poller() is not b.status_poller()


def test_13_custom_query_cmd_falls_back_to_per_job_queries(caplog):
    spawner = make_spawner(SlurmSpawner, None, batch_query_cmd="ssh login1 squeue -h -j {job_id} -o '%T %B'")
    assert not spawner.uses_shared_status()


def test_13_submit_hosts_poller_key_includes_identity():
    a = make_spawner(SlurmSpawner, None, submit_hosts=["login1"])
    b = make_spawner(SlurmSpawner, None, name="bob", submit_hosts=["login1"])
    a.job_id, b.job_id = "1", "2"
    assert a.status_runner.user == "alice" and b.status_runner.user == "bob"
    assert a.status_poller() is not b.status_poller()


# ------------------------------------------------------------------ admin shell syntax (break 7)
async def test_13_admin_command_with_shell_syntax_runs_through_sh(caplog):
    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="RUNNING cn1\n"))
    spawner = make_spawner(
        SlurmSpawner, runner, batch_query_cmd="squeue -h -j {job_id} -o '%T %B' | tail -n 1", shared_status=False
    )
    spawner.job_id = "1'; touch /tmp/x; '"
    await spawner.query_job_status()
    argv = runner.calls[-1].argv
    assert argv[:2] == ["/bin/sh", "-c"]
    # the substituted value is one quoted word; the admin's pipe stays a pipe
    assert "| tail -n 1" in argv[2]
    assert "'1'\"'\"'; touch /tmp/x; '\"'\"''" in argv[2]


# ------------------------------------------------------------------ stop after poll saw the end (break 8)
async def test_13_stop_does_not_cancel_a_job_poll_saw_end():
    # poll() cancels once before the job may be forgotten (issue 12: cancel before forget);
    # the hub's stop() that follows sends nothing more (1.3 cancelled again here)
    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="COMPLETED cn1 None\n"))
    spawner = make_spawner(SlurmSpawner, runner, shared_status=False)
    spawner.job_id = "5"
    assert await spawner.poll() == 1
    assert runner.commands().count("scancel") == 1
    await spawner.stop()
    assert runner.commands().count("scancel") == 1


async def test_13_parser_bug_is_logged_as_a_bug(caplog):
    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="RUNNING cn1 None\n"))
    spawner = make_spawner(SlurmSpawner, runner, shared_status=False)

    def broken(*a):
        raise KeyError("oops")

    spawner.parse_query_output = broken
    spawner.job_id = "5"
    with caplog.at_level(logging.ERROR):
        status = await spawner.query_job_status()
    assert status.state is JobState.UNKNOWN
    assert any("bug" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ wrapspawner 1.0 construct_child()
async def test_13_wrapspawner_subclass_overriding_construct_child():
    """wrapspawner 1.0's documented hook: a subclass picks or adjusts the child in construct_child()
    (e.g. a class by group) and calls super(); start, poll, stop and a hub restart all use it."""
    from wraphelpers import fake_runner, make_wrapper

    from wrapspawner import WrapSpawner

    runner = fake_runner()
    built = []

    class ByGroup(WrapSpawner):
        def construct_child(self):
            if self.child_spawner is None:
                self.child_class = SlurmSpawner
                self.child_config = {"req_partition": "gpu" if "gpu" in self.user.groups_names else "cpu"}
            child = super().construct_child()
            child.runner = child.query_runner = child.status_runner = runner
            child.startup_poll_interval = 0.01
            built.append(child)
            return child

    wrapper = make_wrapper(ByGroup, groups=["gpu"])
    wrapper.user.groups_names = ["gpu"]
    await wrapper.run_pre_spawn_hook()
    child = wrapper.child_spawner
    assert built and built[-1] is child
    assert isinstance(child, SlurmSpawner) and child.req_partition == "gpu"
    child.job_id = "4242"
    state = wrapper.get_state()
    # after a hub restart, load_state rebuilds the child through the same hook
    again = make_wrapper(ByGroup, groups=["gpu"])
    again.user.groups_names = ["gpu"]
    again.load_state(state)
    assert again.child_spawner is built[-1] and again.child_spawner.job_id == "4242"
    assert again.child_spawner.req_partition == "gpu"
    assert await again.poll() is None
    await again.stop(now=True)
    assert ["scancel", "4242"] in [c.argv for c in runner.calls]


FAKE_SSH = """#!/bin/sh
# FAKE ssh (not OpenSSH): records its argv and its own environment, drops the destination,
# and runs the rest like a remote login shell would (one string for /bin/sh -c)
printf '%s\\n' "$*" >> "$(dirname "$0")/argv.log"
env >> "$(dirname "$0")/local-env.log"
shift
exec /bin/sh -c "$*"
"""


async def test_13_ssh_exec_prefix_carries_the_job_env_in_the_channel(tmp_path, monkeypatch):
    """exec_prefix = "ssh login1 ...": the job's variables (token included) reach the submit on the
    far side through stdin, never an argv; the hub's SLURM_CONF (it describes the hub) is not sent."""
    monkeypatch.setenv("SLURM_CONF", "/hub/only/slurm.conf")
    ssh = tmp_path / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    out = tmp_path / "seen"
    spawner = make_spawner(
        SlurmSpawner,
        None,
        exec_prefix=f"{ssh} login1",
        batch_submit_cmd=f"sh -c 'printf \"%s|%s|\" \"$JUPYTERHUB_API_TOKEN\" \"$SLURM_CONF\" > {out}; cat >> {out}; echo 42'",
        batch_query_cmd=f"sh -c 'printf \"%s\" \"$SLURM_CONF\" > {out}.q; echo RUNNING cn1'",
        shared_status=False,
    )
    spawner.req_homedir = str(tmp_path)
    job_id = await spawner.submit_batch_script()
    assert job_id == "42"
    seen = out.read_text()
    assert seen.startswith("secret-token-value||#!/bin/bash")  # token arrived; the hub's SLURM_CONF did not
    argv_log = (tmp_path / "argv.log").read_text()
    assert "secret-token-value" not in argv_log and "secret-token-value" not in (tmp_path / "local-env.log").read_text()
    spawner.job_id = "42"
    status = await spawner.query_job_status()
    assert status.state is JobState.RUNNING
    assert (tmp_path / "seen.q").read_text() == ""


async def test_13_submit_env_gets_scheduler_vars_but_not_the_hubs_home(monkeypatch):
    monkeypatch.setenv("SLURM_CONF", "/etc/site/slurm.conf")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setenv("USER", "root")
    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="7\n"))
    spawner = make_spawner(TorqueSpawner, runner)
    spawner.req_homedir = "/home/alice"
    await spawner.submit_batch_script()
    env = runner.calls[0].env
    assert env["SLURM_CONF"] == "/etc/site/slurm.conf"
    assert env.get("HOME") != "/root" and env.get("USER") != "root"
    assert env["JUPYTERHUB_API_TOKEN"] == "secret-token-value"  # the job's own environment


async def test_13_query_job_status_result_compares_with_the_13_enum():
    from batchspawner import JobStatus

    runner = FakeRunner(responder=lambda argv, stdin: Reply(stdout="PENDING (null) Priority\n"))
    spawner = make_spawner(SlurmSpawner, runner, shared_status=False)
    spawner.job_id = "3"
    status = await spawner.query_job_status()
    assert status == JobStatus.PENDING and status in (JobStatus.PENDING, JobStatus.RUNNING)
    assert status != JobStatus.NOTFOUND


def test_13_wrapspawner_load_child_class_hook():
    from wraphelpers import make_wrapper

    from wrapspawner import WrapSpawner

    class Chooser(WrapSpawner):
        def load_child_class(self, state):
            self.child_class = TorqueSpawner if state.get("flavour") == "torque" else SlurmSpawner

    wrapper = make_wrapper(Chooser)
    wrapper.load_state({"flavour": "torque", "child_state": {"job_id": "5.srv"}})
    assert isinstance(wrapper.child_spawner, TorqueSpawner) and wrapper.child_spawner.job_id == "5.srv"


def test_save_spawner_state_failure_is_loud_and_leaves_the_session_usable(caplog):
    """A failed save of the job id must say what it risks, and not leave the hub's database session
    in a failed transaction (the hub's next commit would fail too)."""
    from jupyterhub import orm
    from sqlalchemy import text

    from batchspawner.spawner import save_spawner_state

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine("sqlite://")
    orm.Base.metadata.create_all(engine)  # the hub's own tables, without its upgrade checks (fast)
    db = sessionmaker(bind=engine)()
    user = orm.User(name="alice")
    db.add(user)
    db.commit()
    row = orm.Spawner(user=user, name="")
    db.add(row)
    db.commit()
    spawner = make_spawner(SlurmSpawner, FakeRunner(), orm_spawner=row)
    spawner.job_id = "321"
    assert save_spawner_state(spawner) is True
    db.refresh(row)
    assert row.state["job_id"] == "321"
    db.execute(text("DROP TABLE spawners"))  # the database refuses the next write
    spawner.job_id = "322"
    spawner.log.addHandler(caplog.handler)  # the hub's logger may not propagate
    try:
        assert save_spawner_state(spawner) is False
    finally:
        spawner.log.removeHandler(caplog.handler)
    messages = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "322" in messages and "restart" in messages
    db.execute(text("SELECT 1"))  # the session was rolled back: still usable


def test_13_building_runners_does_not_freeze_keepvars():
    spawner = make_spawner(SlurmSpawner, None, exec_prefix="ssh login1 sudo -u {username}")
    spawner.status_runner  # built early, e.g. by the first poll after a hub restart
    assert "req_keepvars" not in spawner._trait_values


async def test_13_keepvars_read_before_a_spawn_is_not_frozen():
    """A poll after a hub restart formats commands (request variables included) before any spawn:
    the keepvars a later spawn writes must still be the get_env() names of that spawn."""
    spawner = make_spawner(SlurmSpawner, FakeRunner())
    early = spawner.command_vars("1")["keepvars"]
    assert "SITE_LATE" not in early.split(",")
    spawner.environment = {"SITE_LATE": "1"}  # e.g. a pre_spawn_hook, after that poll
    assert "SITE_LATE" in spawner.template_vars()["keepvars"].split(",")
    assert "req_keepvars" not in spawner._trait_values
