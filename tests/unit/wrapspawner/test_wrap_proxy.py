"""WrapSpawner/ProfilesSpawner proxy the Spawner API to a real SlurmSpawner child (FakeRunner for commands)."""

import asyncio
import logging

import pytest
from jupyterhub.objects import Server
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import maybe_future
from tornado.web import HTTPError
from traitlets import TraitError, Unicode, default
from traitlets.config import Config

from batchspawner import SlurmSpawner
from batchspawner.core.options import OptionError
from batchspawner.spawner import SpawnFailed
from fakes import FakeRunner, Reply
from batchspawner.hub.api import _port_target
from wraphelpers import slurm_responder, fake_runner, make_wrapper
from wrapspawner import ProfilesSpawner, WrapSpawner


def profiles(runner):
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner, "startup_poll_interval": 0.01}
    return [
        ("Local", "local", "jupyterhub.spawner.LocalProcessSpawner", {}),
        {
            "key": "hpc",
            "display": "Slurm",
            "class": "batchspawner.SlurmSpawner",
            "config": {"req_partition": "debug", **plumbing},
            "fields": {"memory": {"type": "memory", "max": "16G", "default": "2G"}},
        },
    ]


class SiteSlurm(SlurmSpawner):
    @default("cmd")
    def _site_cmd(self):
        return ["/opt/site/bin/singleuser"]


def test_child_keeps_its_own_defaults():
    wrapper = make_wrapper(WrapSpawner, child_class=SiteSlurm)
    child = wrapper.build_child()
    assert child.start_timeout == 600 and child.http_timeout == 120 and child.ip == "0.0.0.0"
    assert child.cmd == ["/opt/site/bin/singleuser"]  # wrapspawner 1.0.1 replaced it with the wrapper's
    # the hub reads these on the wrapper: the child's values win
    assert (wrapper.start_timeout, wrapper.http_timeout, wrapper.ip) == (600, 120, "0.0.0.0")


def test_only_admin_settings_on_the_wrapper_pass():
    cfg = Config()
    cfg.WrapSpawner.start_timeout = 900
    cfg.Spawner.cmd = ["my-singleuser"]
    cfg.SlurmSpawner.req_qos = "normal"
    wrapper = make_wrapper(WrapSpawner, child_class=SlurmSpawner, config=cfg)
    wrapper.mem_limit = "1G"  # e.g. group_overrides, set after construction
    wrapper.environment["SITE"] = "x"  # a pre_spawn_hook filling a dict in place
    child = wrapper.build_child()
    assert child.start_timeout == 900 and wrapper.start_timeout == 900
    assert child.cmd == ["my-singleuser"] and child.req_qos == "normal"
    assert child.mem_limit == 1024**3 and child.environment == {"SITE": "x"}
    assert child.http_timeout == 120 and child.ip == "0.0.0.0"  # not set by the admin: child default


async def _serve():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_whole_api_through_profiles_spawner():
    runner = fake_runner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(runner))
    # progress before any child exists does not raise
    assert [e["progress"] async for e in wrapper.progress()] == [1]
    assert await wrapper.poll() == 0
    wrapper.user_options = {"profile": "hpc", "memory": "4096M"}
    await wrapper.run_pre_spawn_hook()
    child = wrapper.child_spawner
    assert isinstance(child, SlurmSpawner) and child.user_options == {}
    assert child.req_memory == "4G" and child.req_partition == "debug"
    assert wrapper.start_timeout == child.start_timeout == 600
    wrapper.api_token = "tok-123"
    wrapper._spawn_pending = True
    assert child._spawn_pending
    server, port = await _serve()
    task = asyncio.create_task(wrapper.start())
    while child._port_future is None or not runner.calls:
        await asyncio.sleep(0.01)
    _port_target(wrapper).report_port(port)  # the port API follows child_spawner
    # the job runs on "localhost": the hub connects to its IPv4 address (the server binds 0.0.0.0)
    assert await asyncio.wait_for(task, 10) == ("127.0.0.1", port)
    server.close()
    assert wrapper.port == port
    sbatch = [c for c in runner.calls if c.argv[0] == "sbatch"][0]
    assert "#SBATCH --mem=4G\n" in sbatch.stdin and "#SBATCH --partition=debug\n" in sbatch.stdin
    assert sbatch.env["JUPYTERHUB_API_TOKEN"] == "tok-123"
    assert wrapper.get_env()["JUPYTERHUB_API_TOKEN"] == "tok-123"
    wrapper._spawn_pending = False
    messages = [e["message"] async for e in wrapper.progress()]
    assert any("Job 4242 submitted" in m for m in messages)
    assert await wrapper.poll() is None
    state = wrapper.get_state()
    assert state["profile"] == "hpc" and state["child_state"]["job_id"] == "4242"
    assert state["child_class"] == "batchspawner.schedulers.slurm.SlurmSpawner"

    # hub restart: a new process (no shared status cache), a new wrapper rebuilds the
    # same child from state and finds the job
    from batchspawner.polling.status import StatusPoller

    StatusPoller._registry.clear()
    again = make_wrapper(ProfilesSpawner, profiles=profiles(runner))
    again.load_state(state)
    assert again.child_spawner.job_id == "4242" and again.child_spawner.req_memory == "4G"
    runner.calls.clear()
    assert await again.poll() is None
    assert runner.calls[0].argv[:1] == ["squeue"] and "4242" in runner.calls[0].argv

    # stop cancels the job; clear_state drops the child
    runner.responder = slurm_responder("CANCELLED localhost None")  # scancel took effect
    await again.stop()
    assert any(c.argv[0] == "scancel" and "4242" in c.argv for c in runner.calls)
    again.clear_state()
    assert again.child_spawner is None and again.get_state() == {}


class Recording(LocalProcessSpawner):
    """Records rename/delete_forever with the profile setting it was built with; never starts a process."""

    calls = []
    volume = Unicode("", help="A per-profile setting, to see which profile built the child.").tag(config=True)

    async def start(self):
        return ("127.0.0.1", 1)

    async def stop(self, now=False):
        pass

    async def poll(self):
        return None

    async def rename(self, old, new):
        self.calls.append(("rename", old, new, self.volume))

    def delete_forever(self):
        self.calls.append(("delete_forever", self.volume))


async def _start_then_stop_like_the_hub(wrapper):
    """What User.spawn + User.stop do to a spawner: it ends with clear_state (child_spawner=None)."""
    await wrapper.run_pre_spawn_hook()
    await wrapper.start()
    await wrapper.stop()
    wrapper.clear_state()
    assert wrapper.child_spawner is None and wrapper.get_state() == {}


async def test_rename_delete_forever_reach_a_child_after_the_server_stopped():
    Recording.calls = []
    wrapper = make_wrapper(WrapSpawner, child_class=Recording, child_config={"volume": "vol-w"})
    await _start_then_stop_like_the_hub(wrapper)
    await wrapper.rename("a", "b")
    await wrapper.delete_forever()
    assert Recording.calls == [("rename", "a", "b", "vol-w"), ("delete_forever", "vol-w")]
    assert wrapper.child_spawner is None  # the temporary child is not kept

    # ProfilesSpawner: the profile comes from the saved user_options; a hub restart builds a new
    # wrapper for a stopped server from its (empty) state and user_options before deleting it
    Recording.calls = []
    recording_profiles = [
        ("Local", "local", "jupyterhub.spawner.LocalProcessSpawner", {}),
        {"key": "rec-a", "class": Recording, "config": {"volume": "vol-a"}},
        {"key": "rec-b", "class": Recording, "config": {"volume": "vol-b"}, "groups": ["B"]},
    ]
    wrapper = make_wrapper(ProfilesSpawner, profiles=recording_profiles, groups=["B"])
    wrapper.user_options = {"profile": "rec-b"}
    await _start_then_stop_like_the_hub(wrapper)
    await wrapper.rename("lab", "lab2")
    fresh = make_wrapper(ProfilesSpawner, profiles=recording_profiles, user_options={"profile": "rec-b"})
    fresh.load_state({})
    await fresh.delete_forever()  # not in group B any more: its own server is still cleaned up
    assert Recording.calls == [("rename", "lab", "lab2", "vol-b"), ("delete_forever", "vol-b")]
    # no profile in user_options (a REST spawn without options): the default profile's child
    Recording.calls = []
    default_rec = make_wrapper(ProfilesSpawner, profiles=recording_profiles, default_profile="rec-a")
    await default_rec.delete_forever()
    assert Recording.calls == [("delete_forever", "vol-a")]


class MovedServer(Recording):
    async def get_url(self):
        return "http://node7:40123/user/alice/"  # e.g. a child that re-reads its job's host and port


async def test_get_url_is_forwarded_to_the_child():
    # the hub calls get_url after a restart (check_spawner) for servers poll() says are running
    wrapper = make_wrapper(WrapSpawner, child_class=MovedServer)
    wrapper.server = Server(ip="10.0.0.1", port=8888, base_url="/user/alice/")
    assert await wrapper.get_url() == "http://10.0.0.1:8888/user/alice/"  # no child yet: the hub's record
    wrapper.load_state({"child_state": {"x": 1}})
    assert isinstance(wrapper.child_spawner, MovedServer)
    assert await wrapper.get_url() == "http://node7:40123/user/alice/"


async def test_options_form_is_forwarded():
    wrapper = make_wrapper(WrapSpawner, child_class=Recording, allowed_user_options=["x"])
    wrapper.build_child()
    wrapper.child_spawner.options_form = "<input name='x'>"
    assert await wrapper.get_options_form() == "<input name='x'>"
    wrapper.child_spawner.options_from_form = lambda form: {"x": int(form["x"][0]) + 1}
    assert await maybe_future(wrapper.run_options_from_form({"x": ["1"]})) == {"x": 2}
    wrapper.child_spawner.options_from_form = lambda form: dict(form)  # like Spawner's default
    assert await maybe_future(wrapper.run_options_from_form({"x": ["1"], "_xsrf": ["t"]})) == {"x": ["1"]}


def _ends_after_submit(argv, stdin):
    if argv[0] == "sbatch":
        return Reply(stdout="77\n")
    if argv[0] == "squeue":  # the job ended at once: the spawn fails
        shared = any(a.startswith("%i") for a in argv)
        return Reply(stdout=("77 " if shared else "") + "FAILED localhost None\n")
    return Reply()


@pytest.mark.parametrize("key", ["partition", "qos", "reservation", "gres", "cluster", "memory", "cmd", "x"])
async def test_plain_wrapspawner_forwards_no_user_options_by_default(key):
    runner = FakeRunner(responder=_ends_after_submit)
    wrapper = make_wrapper(WrapSpawner, child_class=SlurmSpawner,
                           child_config={"runner": runner, "query_runner": runner, "status_runner": runner})
    wrapper.user_options = {key: "x1"}
    with pytest.raises(OptionError) as err:
        await wrapper.run_pre_spawn_hook()
    assert err.value.status_code == 400 and err.value.field == key
    assert "WrapSpawner.allowed_user_options" in err.value.rule and "none" in err.value.rule
    assert wrapper.child_spawner is None and runner.calls == []
    # the child's own form is checked the same way
    wrapper.build_child().options_from_form = lambda form: {key: form[key][0]}
    with pytest.raises(OptionError, match=key):
        await wrapper.run_options_from_form({key: ["x1"]})


async def test_plain_wrapspawner_forwards_the_allowed_keys_only():
    runner = FakeRunner(responder=_ends_after_submit)
    cfg = Config()
    cfg.WrapSpawner.allowed_user_options = ["runtime"]
    wrapper = make_wrapper(WrapSpawner, child_class=SlurmSpawner, config=cfg,
                           child_config={"runner": runner, "query_runner": runner, "status_runner": runner,
                                         "startup_poll_interval": 0.01})
    wrapper.user_options = {"runtime": "02:00:00", "partition": "gpu"}
    with pytest.raises(OptionError, match="options users may set: runtime"):
        await wrapper.run_pre_spawn_hook()
    wrapper.user_options = {"runtime": "02:00:00"}
    await wrapper.run_pre_spawn_hook()
    assert wrapper.child_spawner.user_options == {"runtime": "02:00:00"}
    with pytest.raises(SpawnFailed):
        await wrapper.start()
    script = [c for c in runner.calls if c.argv[0] == "sbatch"][0].stdin
    assert "#SBATCH --time=02:00:00\n" in script
    # the child checks the value itself
    wrapper.user_options = {"runtime": "02:00:00\n#SBATCH --uid=0"}
    await wrapper.run_pre_spawn_hook()
    runner.calls.clear()
    with pytest.raises(OptionError, match="runtime"):
        await wrapper.start()
    assert runner.calls == []


def test_profiles_config_errors_name_the_trait():
    with pytest.raises(Exception, match=r"ProfilesSpawner.profiles\[0\].*cmd"):
        make_wrapper(ProfilesSpawner, profiles=[
            {"key": "x", "class": "batchspawner.SlurmSpawner", "fields": {"c": {"type": "text", "regex": ".*", "trait": "cmd"}}}
        ])
    with pytest.raises(Exception, match=r"ProfilesSpawner.profiles\[0\].*regex"):
        make_wrapper(ProfilesSpawner, profiles=[
            {"key": "x", "class": "batchspawner.SlurmSpawner", "fields": {"account": {"type": "text"}}}
        ])


@pytest.mark.parametrize(
    "trait",
    ["cmd", "args", "ssh_user", "ssh_identity_file", "ssh_options", "hub_connect_url", "exec_prefix", "notebook_dir",
     "default_url", "ip", "port", "environment", "http_timeout", "batch_script", "batch_submit_cmd", "pre_spawn_hook",
     "req_prologue", "req_epilogue", "req_options", "req_srun", "req_username", "req_homedir", "req_keepvars",
     "req_", "user_options",
     # admin only (issue 11): accounts, policies, clusters and resource names are never a user's choice
     "req_qos", "req_cluster", "req_account", "req_reservation", "req_gres", "req_host"],
)
def test_field_targets_are_an_allowlist(trait):
    with pytest.raises(TraitError) as err:
        make_wrapper(ProfilesSpawner, profiles=[
            ("Local", "local", "jupyterhub.spawner.LocalProcessSpawner", {}),
            {"key": "x", "class": "batchspawner.SlurmSpawner",
             "fields": {"f": {"type": "choice", "choices": ["a"], "trait": trait}}},
        ])
    assert f"ProfilesSpawner.profiles[1]: field 'f' may not set SlurmSpawner.{trait}:" in str(err.value)


@pytest.mark.parametrize(
    "trait, spec, value, on_child",
    [
        ("req_partition", {"type": "choice", "choices": ["normal"]}, "normal", "normal"),
        ("req_job_name", {"type": "choice", "choices": ["c2"]}, "c2", "c2"),
        ("mem_limit", {"type": "memory"}, "2G", 2 * 1024**3),
        ("cpu_limit", {"type": "int"}, "2", 2.0),
        ("start_timeout", {"type": "int", "max": 3600}, "900", 900),
    ],
)
async def test_field_targets_allowed(trait, spec, value, on_child):
    wrapper = make_wrapper(ProfilesSpawner, profiles=[
        {"key": "x", "class": "batchspawner.SlurmSpawner", "fields": {"f": {**spec, "trait": trait}}}])
    wrapper.user_options = {"profile": "x", "f": value}
    child = await wrapper.prepare_child()
    assert getattr(child, trait) == on_child


async def test_state_written_by_wrapspawner_101_is_loaded():
    runner = fake_runner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(runner))
    # wrapspawner 1.0.1 + batchspawner 1.3 state: no child_class, same job keys
    wrapper.load_state({"profile": "hpc", "child_state": {"job_id": "31", "job_status": "RUNNING localhost"}})
    assert isinstance(wrapper.child_spawner, SlurmSpawner) and wrapper.child_spawner.job_id == "31"
    assert await wrapper.poll() is None and any("31" in c.argv for c in runner.calls if "-O" not in c.argv)


async def test_removed_profile_with_101_state_never_loses_the_job(caplog):
    runner = fake_runner()
    state = {"profile": "removed", "child_state": {"job_id": "32", "job_status": "RUNNING n1"}}
    gone = make_wrapper(ProfilesSpawner, profiles=profiles(runner))
    gone.load_state(state)  # nothing raised at hub start
    assert gone.child_spawner is None and gone.get_state() == state
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("'removed'" in m and "fallback_child_class" in m for m in errors), errors
    assert await gone.poll() is None  # not 0: the hub would stop it and clear_state would drop the job
    # the hub could not reach it and stops it: poll, stop, clear_state, then it saves get_state()
    await gone.stop()
    gone.clear_state()
    assert gone.get_state() == state
    gone.user_options = {"profile": "hpc"}
    with pytest.raises(HTTPError) as err:  # a new server would overwrite the job's state
        await gone.run_pre_spawn_hook()
    assert err.value.status_code == 409 and gone.child_spawner is None and gone.get_state() == state
    await gone.delete_forever()  # nothing to forward to; logged, no error
    assert runner.calls == []

    # with a fallback class the job is found again and can be stopped
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner}
    fixed = make_wrapper(ProfilesSpawner, profiles=profiles(runner), fallback_child_class=SlurmSpawner,
                         child_config=plumbing)
    fixed.load_state(state)
    assert isinstance(fixed.child_spawner, SlurmSpawner) and fixed.child_spawner.job_id == "32"
    assert await fixed.poll() is None and any("32" in c.argv for c in runner.calls if "-O" not in c.argv)
    runner.responder = slurm_responder("CANCELLED localhost None")
    await fixed.stop()
    assert any(c.argv[0] == "scancel" and "32" in c.argv for c in runner.calls)


def test_unimportable_saved_child_class_keeps_the_state():
    state = {"child_class": "site_gone.spawners.OldSpawner", "child_state": {"job_id": "7"}}
    wrapper = make_wrapper(WrapSpawner, child_class=Recording)
    wrapper.load_state(state)
    assert wrapper.child_spawner is None and wrapper.holds_untracked_job
    wrapper.clear_state()
    assert wrapper.get_state() == state


async def test_a_childs_uncancelled_job_survives_the_wrappers_clear_state():
    """scancel fails while the controller is down: the wrapper keeps the child's leftover job
    through the hub's clear_state (and a hub restart), and the next child cancels it at start."""
    from batchspawner import SlurmSpawner
    from fakes import FakeRunner, Reply

    from wrapspawner import WrapSpawner

    down = {"on": True}

    def responder(argv, stdin):
        if argv[0] == "scancel":
            return Reply(stderr="scancel: error: Unable to contact slurm controller", returncode=1) if down["on"] else Reply()
        if argv[0] == "squeue":
            return Reply(stdout="RUNNING localhost None\n") if down["on"] else Reply(
                stderr="slurm_load_jobs error: Invalid job id specified", returncode=1)
        return Reply(stdout="4242\n")

    runner = FakeRunner(responder)
    wrapper = make_wrapper(WrapSpawner, child_class=SlurmSpawner)
    child = wrapper.build_child()
    child.runner = child.query_runner = child.status_runner = runner
    child.shared_status = False
    child.cancel_retry_timeout = 0.2
    child.cancel_retry_interval = 0.05
    child.cancel_wait_timeout = 0.2
    child.startup_poll_interval = 0.01
    child.job_id = "4242"
    await wrapper.stop()
    wrapper.clear_state()
    state = wrapper.get_state()
    assert state["child_leftover"]["child_state"]["uncancelled_jobs"][0]["job_id"] == "4242", state

    restored = make_wrapper(WrapSpawner, child_class=SlurmSpawner)
    restored.load_state(state)
    new_child = restored.build_child()
    assert [e["job_id"] for e in new_child.uncancelled_jobs] == ["4242"]
    assert "child_leftover" not in restored.get_state()  # taken over by the child


def test_every_entry_point_class_prints_its_config_section():
    """`jupyterhub --generate-config` / `--help-all` print every trait of every spawner."""
    from importlib.metadata import entry_points

    import batchspawner
    import wrapspawner

    classes = [batchspawner.SlurmSpawner, batchspawner.GridengineSpawner, batchspawner.TorqueSpawner,
               batchspawner.PBSSpawner, batchspawner.MoabSpawner, batchspawner.LsfSpawner,
               batchspawner.CondorSpawner, batchspawner.MultiSlurmSpawner, wrapspawner.WrapSpawner,
               wrapspawner.ProfilesSpawner]
    names = {ep.name for ep in entry_points(group="jupyterhub.spawners")}
    assert {"slurm", "profiles", "wrap"} <= names
    for cls in classes:
        section = cls.class_config_section()
        assert f"c.{cls.__name__}." in section
        assert cls.class_get_help()
    assert "fallback_child_class = None" in wrapspawner.WrapSpawner.class_config_section()
