"""Fail closed (issue 11): no loopback for a job without a host, admin-only request traits,
refused options that do not stick, the user's mistakes as 400 (never 500).

The fake runner answers like the real tools did (sbatch's own messages were captured on the
real Slurm 22.05 here); the e2e twins are in tests/e2e/test_fail_closed.py (e2e twins).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fakes import FakeRunner, Reply
from helpers import make_spawner
from tornado import web
from traitlets import TraitError

from batchspawner import GridengineSpawner, SlurmSpawner, SpawnFailed
from batchspawner import schedulers
from batchspawner.hub.api import BatchSpawnerAPIHandler
from batchspawner.core.hosts import usable_host
from batchspawner.core.options import OptionError, admin_only_vars, refused_in_this_request, validate_spawner_user_options
from wraphelpers import make_wrapper
from wrapspawner import ProfilesSpawner, WrapSpawner
from wrapspawner.options import check_target_trait

# every registered scheduler (pyproject.toml's entry points, batchspawner/schedulers.py)
ALL_SCHEDULERS = list(schedulers.spawner_classes().values())
assert len(ALL_SCHEDULERS) >= 8, "no schedulers registered: install the package (pip install -e .)"

# ------------------------------------------------------------------ item 2: no host, no loopback

NO_HOST = ["", " ", "n/a", "N/A", "(null)", "None", "none", "undefined", "-", "RUNNING n/a None"]


@pytest.mark.parametrize("text", NO_HOST, ids=repr)
def test_no_host_words_are_no_host(text):
    assert usable_host(text) == ""


@pytest.mark.parametrize("text", ["node01", "localhost", "10.0.0.5", "n1.cluster.local", "fe80::1", "rack1-n01"])
def test_real_host_names_are_kept(text):
    assert usable_host(text) == text


def _host_parsers():
    """{entry point name: (host parser, field format)} of every registered scheduler, from its
    conformance case (``host_parser``, ``host_field`` in tests/fixtures/<name>/case.toml)."""
    from test_conformance import CASES

    return {case.id: (schedulers.load(case.host_parser), case.host_field) for case in CASES}


@pytest.mark.parametrize("scheduler", sorted(schedulers.registered()))
@pytest.mark.parametrize("word", ["", " ", "n/a", "(null)", "None", "undefined", "-"], ids=repr)
def test_every_schedulers_host_extraction_then_the_one_check_gives_no_host(scheduler, word):
    parse, field = _host_parsers()[scheduler]
    assert usable_host(parse(field.format(word=word) if word.strip() else word)) == ""


class NoHostCluster:
    """Slurm that says RUNNING but names no host (``%B`` = ``n/a``) for the first ``blank`` answers."""

    def __init__(self, blank=10**6, host_word="n/a", host="node7"):
        self.blank = blank
        self.host_word = host_word
        self.host = host
        self.answers = 0
        self.cancelled = []

    def __call__(self, argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="321\n")
        if argv[0] == "scancel":
            self.cancelled.append(argv[-1])
            return Reply()
        if argv[0] in ("tail", "sh", "rm"):
            return Reply()
        if argv[0] == "squeue":
            self.answers += 1
            host = self.host_word if self.answers <= self.blank else self.host
            state = "CANCELLED" if self.cancelled else "RUNNING"
            line = f"{state} {host} None"
            if argv[7].startswith("%i"):
                line = f"{argv[5]} {line}"
            return Reply(stdout=line + "\n")
        raise AssertionError(argv)


def _spawner(cls, cluster, **traits):
    runner = FakeRunner(cluster)
    traits.setdefault("startup_poll_interval", 0.01)
    traits.setdefault("status_min_interval", 0.01)
    traits.setdefault("running_check_interval", 0.05)
    return make_spawner(cls, runner, **traits), runner


@pytest.mark.parametrize("host_word", ["n/a", "(null)", "None", "undefined"])
async def test_running_without_a_host_never_becomes_loopback(host_word):
    spawner, runner = _spawner(SlurmSpawner, NoHostCluster(host_word=host_word), host_wait_timeout=0.3)
    task = asyncio.ensure_future(spawner.start())
    for _ in range(300):
        if spawner._port_future is not None and spawner.job_id:
            break
        await asyncio.sleep(0.01)
    spawner.report_port(4242)  # the job reports, but the scheduler never said where it runs
    with pytest.raises(SpawnFailed) as info:
        await asyncio.wait_for(task, 5)
    message = str(info.value)
    assert "321" in message and "host" in message and "127.0.0.1" not in message
    events = [e["message"] for e in spawner._events]
    assert any("has not said on which host" in m for m in events), events


async def test_running_without_a_host_waits_until_the_scheduler_names_it():
    spawner, runner = _spawner(SlurmSpawner, NoHostCluster(blank=3, host="127.0.0.1"), host_wait_timeout=10)
    task = asyncio.ensure_future(spawner.start())
    for _ in range(300):
        if spawner._port_future is not None and spawner.job_id:
            break
        await asyncio.sleep(0.01)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        spawner.report_port(sock.getsockname()[1])
        ip, port = await asyncio.wait_for(task, 5)
    assert ip == "127.0.0.1"  # because the scheduler named it, not as a fallback
    assert any("has not said on which host" in e["message"] for e in spawner._events)


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_resolve_host_refuses_no_host_unless_local_executor(cls):
    spawner = make_spawner(cls)
    for word in ("", "n/a", "(null)", "None", "undefined"):
        with pytest.raises(SpawnFailed):
            spawner.resolve_host(word)
    assert make_spawner(cls, local_executor=True).resolve_host("") == "127.0.0.1"


async def test_local_executor_is_the_explicit_way_to_loopback():
    spawner, runner = _spawner(SlurmSpawner, NoHostCluster(), local_executor=True, host_wait_timeout=0.2)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        task = asyncio.ensure_future(spawner.start())
        for _ in range(300):
            if spawner._port_future is not None and spawner.job_id:
                break
            await asyncio.sleep(0.01)
        spawner.report_port(sock.getsockname()[1])
        ip, _ = await asyncio.wait_for(task, 5)
    assert ip == "127.0.0.1"


def test_custom_exechost_exp_that_does_not_match_is_no_host():
    # batchspawner 1.3 semantics: re.sub returns the whole output when the regex does not match
    spawner = make_spawner(SlurmSpawner, state_exechost_re=r"^RUNNING (node\d+) ", state_exechost_exp=r"\1.cluster")
    status = spawner.parse_query_output(0, "RUNNING n/a None\n", "")
    assert usable_host(status.host) == ""


# ------------------------------------------------------------------ item 4: admin-only request traits

def _admin_only():
    """{class: its admin-only request names}, from each scheduler's conformance case
    (``admin_only`` in tests/fixtures/<name>/case.toml)."""
    from test_conformance import CASES

    return {case.cls: set(case.admin_only) for case in CASES}


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_every_scheduler_marks_its_admin_only_request_traits(cls):
    assert set(admin_only_vars(cls)) == _admin_only()[cls]
    for var in admin_only_vars(cls):
        assert cls.class_traits()[f"req_{var}"].metadata.get("admin_only") is True


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_no_admin_only_trait_is_reachable_through_user_options(cls):
    spawner = make_spawner(cls)  # default allowed_user_options (batchspawner 1.3's rule)
    for var in admin_only_vars(cls):
        spawner.user_options = {var: "h_rt"}
        with pytest.raises(OptionError) as info:
            validate_spawner_user_options(spawner)
        assert info.value.status_code == 400 and info.value.field == var
        assert "administrator" in info.value.rule
    # the plain requests still are
    spawner.user_options = {"runtime": "01:00:00", "memory": "4G"}
    assert validate_spawner_user_options(spawner) == {"runtime": "01:00:00", "memory": "4G"}


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_admin_only_traits_cannot_be_listed_in_allowed_user_options(cls):
    for var in admin_only_vars(cls):
        with pytest.raises(TraitError, match=f"{cls.__name__}.allowed_user_options"):
            make_spawner(cls, allowed_user_options=["runtime", var])


@pytest.mark.parametrize("cls", ALL_SCHEDULERS, ids=lambda c: c.__name__)
def test_no_admin_only_trait_is_a_profile_field_target(cls):
    for var in admin_only_vars(cls):
        with pytest.raises(ValueError, match="admin"):
            check_target_trait(var, f"req_{var}", cls)
    with pytest.raises(Exception, match=r"ProfilesSpawner.profiles\[0\].*req_project"):
        make_wrapper(ProfilesSpawner, profiles=[
            {"key": "ge", "class": "batchspawner.GridengineSpawner",
             "fields": {"project": {"type": "choice", "choices": {"a": "A", "b": "B"}}}}
        ])


def test_gridengine_issue_sequence_is_refused_before_submit():
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="Your job 5 (\"x\") has been submitted\n"))
    spawner = make_spawner(GridengineSpawner, runner, req_runtime="01:00:00")
    spawner.user_options = {"memory_resource": "h_rt", "memory": "9999:00:00"}
    with pytest.raises(OptionError) as info:
        asyncio.run(spawner.start())
    assert info.value.field == "memory_resource" and runner.calls == []


async def test_plain_wrapspawner_cannot_pass_an_admin_only_option():
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="Your job 5 (\"x\") has been submitted\n"))
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner}
    wrapper = make_wrapper(WrapSpawner, child_class=GridengineSpawner, child_config=plumbing,
                           allowed_user_options=["project"])
    wrapper.user_options = {"project": "someone-elses"}
    with pytest.raises(TraitError, match="GridengineSpawner.allowed_user_options: project"):
        await wrapper.run_pre_spawn_hook()  # the admin's list is refused when the child is built
    assert runner.calls == []


# ------------------------------------------------------------------ item 5: refused options never stick

class OrmStub(SimpleNamespace):
    pass


def _with_orm(spawner, options):
    spawner.orm_spawner = OrmStub(user_options=dict(options), state=None, server=None, name="")
    spawner.user_options = dict(options)
    return spawner


async def test_refused_option_is_forgotten_by_spawner_and_database():
    runner = FakeRunner(lambda argv, stdin: Reply())
    spawner = _with_orm(make_spawner(SlurmSpawner, runner), {"x": ["1"]})
    with pytest.raises(OptionError):
        await spawner.start()
    assert spawner.user_options == {} and spawner.orm_spawner.user_options == {}
    assert runner.calls == []


async def test_refused_profile_option_is_forgotten_by_the_wrapper():
    wrapper = make_wrapper(ProfilesSpawner, profiles=[
        {"key": "hpc", "class": "batchspawner.SlurmSpawner",
         "fields": {"runtime": {"type": "walltime", "max": "02:00:00", "default": "01:00:00"}}}
    ])
    _with_orm(wrapper, {"profile": "hpc", "runtime": "99:00:00"})
    with pytest.raises(OptionError):
        await wrapper.run_pre_spawn_hook()
    assert wrapper.user_options == {} and wrapper.orm_spawner.user_options == {}


# ------------------------------------------------------------------ item 6: the user's mistakes are 400

SBATCH_MEM = "sbatch: error: Invalid --mem specification\n"
SBATCH_PARTITION = (
    "sbatch: error: invalid partition specified: nope\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
)


def _refusing(stderr, returncode=1):
    def respond(argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stderr=stderr, returncode=returncode)
        return Reply()

    return respond


async def test_scheduler_refusing_the_users_value_is_400_with_its_reason():
    runner = FakeRunner(_refusing(SBATCH_MEM, 255))
    spawner = _with_orm(make_spawner(SlurmSpawner, runner), {"memory": "1.5"})
    with pytest.raises(web.HTTPError) as info:
        await spawner.start()
    err = info.value
    assert err.status_code == 400
    assert "Invalid --mem specification" in err.jupyterhub_message
    assert "memory" in err.jupyterhub_message
    assert "sbatch: error:" not in err.jupyterhub_message
    assert spawner.orm_spawner.user_options == {}  # and it does not stick either


async def test_scheduler_message_is_cleaned_of_paths_and_tokens():
    noisy = "sbatch: error: cannot open /var/spool/slurm/secret-a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6 for job\n"
    runner = FakeRunner(_refusing(noisy))
    spawner = _with_orm(make_spawner(SlurmSpawner, runner), {"partition": "nope"})
    with pytest.raises(web.HTTPError) as info:
        await spawner.start()
    message = info.value.jupyterhub_message
    assert info.value.status_code == 400
    assert "/var/spool" not in message and "a1b2c3d4e5f6" not in message and "sbatch:" not in message


async def test_refusal_without_user_options_is_the_sites_fault_not_400():
    runner = FakeRunner(_refusing(SBATCH_PARTITION))
    spawner = _with_orm(make_spawner(SlurmSpawner, runner, req_partition="nope"), {})
    with pytest.raises(SpawnFailed) as info:
        await spawner.start()
    assert not isinstance(info.value, web.HTTPError)
    assert "invalid partition specified: nope" in str(info.value)


@pytest.mark.parametrize("stderr", [
    "sudo: unknown user alice\n",
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
    "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n",
    "error: commlib error: got select error (Connection refused)\nUnable to run job: unable to send message to qmaster\n",
], ids=["sudo", "slurmctld-down", "slurmctld-timeout", "qmaster-down"])
async def test_site_trouble_is_not_blamed_on_the_user(stderr):
    runner = FakeRunner(_refusing(stderr))
    spawner = _with_orm(make_spawner(SlurmSpawner, runner), {"memory": "4G"})
    with pytest.raises(SpawnFailed):
        await spawner.start()
    assert spawner.orm_spawner.user_options == {"memory": "4G"}  # the user's choice was fine: kept


class PortHandlerStub:
    def __init__(self, user, token, raw):
        self.current_user = user
        self._token = token
        self.request = SimpleNamespace(body=raw, method="POST")
        self.status = None

    def get_auth_token(self):
        return self._token

    def set_status(self, code):
        self.status = code

    def finish(self, text):
        self.body = text


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"port": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_deeply_nested_port_report_is_400(raw):
    spawner = make_spawner(SlurmSpawner)
    spawner.user.spawners[""] = spawner
    handler = PortHandlerStub(spawner.user, spawner.api_token, raw)
    with pytest.raises(web.HTTPError) as info:
        BatchSpawnerAPIHandler.post(handler)
    assert info.value.status_code == 400


def test_one_marker_drives_every_check():
    """A site's subclass marks its own request trait; user_options, allowed_user_options and
    profile fields all refuse it, with nothing else to update."""
    from batchspawner.spawner import _req

    class SiteSlurm(SlurmSpawner):
        req_licenses = _req("Licenses (admin only)", admin_only=True)
        req_comment = _req("A comment users may set")

    assert "licenses" in admin_only_vars(SiteSlurm) and "comment" not in admin_only_vars(SiteSlurm)
    spawner = make_spawner(SiteSlurm)
    spawner.user_options = {"licenses": "matlab:10"}
    with pytest.raises(OptionError, match="administrators"):
        validate_spawner_user_options(spawner)
    spawner.user_options = {"comment": "hello"}
    assert validate_spawner_user_options(spawner) == {"comment": "hello"}
    with pytest.raises(TraitError, match="SiteSlurm.allowed_user_options: licenses"):
        make_spawner(SiteSlurm, allowed_user_options=["licenses"])
    with pytest.raises(ValueError, match="SiteSlurm.req_licenses: it is admin only"):
        check_target_trait("licenses", "req_licenses", SiteSlurm)
    check_target_trait("comment", "req_comment", SiteSlurm)  # no error


async def test_same_request_retry_gets_the_same_refusal_but_the_next_request_starts():
    # JupyterHub's /hub/spawn?x=1 retries at once (same handler) with the saved options
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="9\n") if argv[0] == "sbatch" else Reply())
    spawner = _with_orm(make_spawner(SlurmSpawner, runner), {"x": ["1"]})
    spawner.handler = request = SimpleNamespace()
    with pytest.raises(OptionError) as first:
        await spawner.start()
    spawner.user_options = spawner.orm_spawner.user_options or {}  # what User.spawn does for options=None
    with pytest.raises(OptionError) as again:
        await spawner.start()
    assert again.value is first.value and runner.calls == []
    spawner.handler = SimpleNamespace()  # the user's next request (home page Start, REST)
    assert request is not spawner.handler
    assert refused_in_this_request(spawner) is None and spawner.user_options == {}
