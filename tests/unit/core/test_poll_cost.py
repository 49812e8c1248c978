"""The hub's cost per server per poll round (issue 16): poll() and get_state() read caches.

JupyterHub polls every server once per ``poll_interval`` and asks for ``get_state()`` in every
REST model with state. Before, each call re-derived the shared pollers and their endpoint: every
request variable formatted (``get_env()`` included) and the hub's environment filtered, about
1.2 ms per poll and 0.5 ms per model (at 50 servers, most of the hub's CPU per 10 s round).
What is derived from settings is now kept until a setting changes (``RunnerPolicy.memo``).
"""

import asyncio

import pytest

from batchspawner.commands.policy import scheduler_env
from batchspawner.schedulers.slurm import SlurmSpawner
from batchspawner.polling.status import StatusPoller

from fakes import FakeRunner, Reply
from helpers import make_spawner


class CountingSlurmSpawner(SlurmSpawner):
    """Counts get_env() calls: the expensive part of deriving command variables."""

    env_calls = 0

    def get_env(self):
        type(self).env_calls += 1
        return super().get_env()


def _squeue(argv, stdin):
    if argv[0].endswith("squeue") and "-j" in argv:
        ids = argv[argv.index("-j") + 1].split(",")
        return Reply(stdout="".join(f"{i} RUNNING localhost\n" for i in ids))
    return Reply()


def _spawners(n, **traits):
    runner = FakeRunner(_squeue)
    out = []
    for i in range(n):
        sp = make_spawner(CountingSlurmSpawner, runner, name=f"user{i}", **traits)
        sp.job_id = str(1000 + i)
        out.append(sp)
    return runner, out


async def test_polls_after_the_first_derive_nothing_again():
    runner, spawners = _spawners(20)
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None] * 20  # one shared round
    CountingSlurmSpawner.env_calls = 0
    for _ in range(5):
        for sp in spawners:
            assert await sp.poll() is None
            sp.get_state()
    assert CountingSlurmSpawner.env_calls == 0
    assert all(sp.status_poller() is spawners[0].status_poller() for sp in spawners)


async def test_a_changed_setting_is_used_at_the_next_poll():
    runner, (sp,) = _spawners(1)
    await sp.poll()
    first = sp.status_poller()
    assert first.interval == sp.status_interval
    sp.status_interval = 42.0  # a setting: the poller is derived again
    assert sp.status_poller().interval == 42.0
    sp.batch_status_cmd = sp.batch_status_cmd + " --noconvert"  # another query: another shared poller
    other = sp.status_poller()
    assert other is not first
    assert "--noconvert" in repr(other.key)


async def test_runtime_changes_keep_the_derived_poller():
    runner, (sp,) = _spawners(1)
    await sp.poll()
    poller = sp.status_poller()
    sp.job_status = "PENDING"
    sp.job_id = "2000"
    sp.log_file = "/tmp/x.log"
    assert sp.status_poller() is poller


async def test_an_emptied_registry_is_noticed():
    runner, (sp,) = _spawners(1)
    await sp.poll()
    poller = sp.status_poller()
    await StatusPoller.stop_all()
    fresh = sp.status_poller()
    assert fresh is not poller
    assert StatusPoller._registry[fresh.key] is fresh
    assert await sp.poll() is None


@pytest.mark.parametrize(
    "name, kept",
    [("SLURM_CONF", True), ("PBS_SERVER_X", True), ("_CONDOR_SCHEDD", True), ("SLURM_CONF_TOKEN", False),
     ("XSLURM_CONF", False), ("SLURM_CONFX", False), ("MY_SITE_VAR", True), ("MY_SITE_KEY", False)],
)
def test_scheduler_env_globs_match_whole_names(name, kept):
    env = scheduler_env(("MY_*",), environ={name: "v", "PATH": "/bin"})
    assert (name in env) is kept
    assert env["PATH"] == "/bin"

