"""Issue 25, items 1, 2 and 8: a batchspawner 1.3 site whose ``run_command`` is how the hub reaches
the scheduler (its hub has no scheduler tools), and the small 1.3 API differences a subclass sees.

The site's run_command below knows the three commands 1.3 sent (submit, query, cancel) and
raises on anything else, as such sites' overrides do. On the code before this issue: the shared
status query ran on the hub (not through run_command) and failed, so ``poll()`` stayed None
forever with zero run_command calls; every submit was preceded by a log-folder ``mkdir`` and an
empty answer was followed by an ``sacct``/``scontrol``; ``poll()`` without a job returned 0.
"""

import asyncio
import re

import pytest

from batchspawner import PBSSpawner, SlurmSpawner
from batchspawner.spawner import SpawnFailed

from helpers import make_spawner

KNOWN = {"sbatch": "submit", "squeue": "query", "scancel": "cancel",
         "qsub": "submit", "qstat": "query", "qdel": "cancel"}


class SiteRunCommand:
    """What a 1.3 site's run_command does: ssh to its login node (here: answers from a table)."""

    def __init__(self):
        self.calls = []
        self.answers = {"submit": "4242", "query": "", "cancel": ""}
        self.fail = {}

    async def __call__(self, cmd, input=None, env=None):
        words = cmd.split()
        tool = next((w.rsplit("/", 1)[-1] for w in words if w.rsplit("/", 1)[-1] in KNOWN), None)
        if tool is None:
            raise RuntimeError(f"this site's run_command does not know: {cmd}")
        kind = KNOWN[tool]
        self.calls.append(kind)
        if kind in self.fail:
            raise RuntimeError(self.fail[kind])
        return self.answers[kind]


def site_spawner(cls, site, **traits):
    class SiteSpawner(cls):
        async def run_command(self, cmd, input=None, env=None):
            return await site(cmd, input=input, env=env)

    # the default log path (the private log folder): what every 1.3 config gets
    sp = make_spawner(SiteSpawner, None, legacy_log=False, startup_poll_interval=0.01,
                      running_check_interval=0.05, **traits)
    sp.mock_port = 8888  # 1.3's test hook: no server to wait for
    return sp


async def test_polling_goes_through_run_command_and_sees_the_end():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    sp.job_id = "4242"
    site.fail["query"] = "slurm_load_jobs error: Invalid job id specified"
    assert await asyncio.wait_for(sp.poll(), 5) == 1
    assert site.calls[0] == "query" and set(site.calls) <= {"query", "cancel"}
    assert sp.job_id == ""  # forgotten, as 1.3's poll() did


async def test_running_job_is_kept_and_its_host_read_through_run_command():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    sp.job_id = "4242"
    site.answers["query"] = "RUNNING node7 None"
    assert await asyncio.wait_for(sp.poll(), 5) is None
    assert site.calls == ["query"]


async def test_start_sends_only_submit_and_query_then_stop_only_cancel_and_query():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    site.answers["query"] = "RUNNING node7 None"
    ip, port = await asyncio.wait_for(sp.start(), 5)
    assert (ip, port) == ("node7", 8888) and sp.ip == "node7"  # 1.3: ip is the exec host after start
    assert site.calls == ["submit", "query"]  # no log-folder mkdir before the submit
    site.calls.clear()
    site.answers["query"] = ""  # squeue lists nothing once the cancelled job is gone
    await asyncio.wait_for(sp.stop(), 5)
    assert site.calls == ["cancel", "query"]  # no sacct/scontrol to confirm: the cancel was accepted
    assert await sp.poll() == 1 and sp.get_state() == {}


async def test_empty_answer_while_running_stays_unknown_without_a_confirming_command():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    sp.job_id = "4242"
    site.answers["query"] = ""
    for _ in range(3):
        assert await sp.poll() is None  # silence is not an end
    assert site.calls == ["query"] * 3


async def test_the_log_goes_to_the_home_directory_and_is_not_read_back():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    site.answers["query"] = "FAILED None None"
    with pytest.raises(RuntimeError, match="ended before your server started"):
        await asyncio.wait_for(sp.start(), 5)
    assert "tail" not in " ".join(site.calls) and site.calls[0] == "submit"
    script_log = sp.format_log_path("4242")
    assert script_log.startswith(sp.req_homedir + "/jupyter-"), script_log
    assert sp.job_id == ""  # ended, cancelled (idempotent) and forgotten, as 1.3 cleared it
    assert site.calls[-1] == "cancel"
    # how it ended stays for the home page's note (poll() no longer sees this job)
    assert sp.last_ended["job_id"] == "4242" and sp.last_ended["state"] == "FAILED"
    assert sp.last_ended["served"] is False and sp.get_state()["last_ended"] == sp.last_ended


async def test_pbs_site_start_completes_through_run_command():
    site = SiteRunCommand()
    sp = site_spawner(PBSSpawner, site)
    site.answers["submit"] = "77.pbs01"
    queries = iter(["job_state = Q", "job_state = R\nexec_host = cn3/0*2"])
    real = site.__call__

    async def answer(cmd, input=None, env=None):
        if " qstat " in f" {cmd} ":
            site.answers["query"] = next(queries, "job_state = R\nexec_host = cn3/0*2")
        return await real(cmd, input=input, env=env)

    sp.run_command = answer
    ip, port = await asyncio.wait_for(sp.start(), 5)
    assert ip == "cn3" and site.calls == ["submit", "query", "query"]


def test_start_failures_are_runtime_errors_as_in_1_3():
    assert issubclass(SpawnFailed, RuntimeError)


async def test_poll_without_a_job_is_1_and_runs_nothing():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    assert await sp.poll() == 1
    assert site.calls == []


async def test_ip_is_the_configured_bind_address_again_at_the_next_start():
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site, ip="0.0.0.0")
    site.answers["query"] = "RUNNING node7 None"
    await sp.start()
    assert sp.ip == "node7"
    site.answers["query"] = ""
    await sp.stop()
    sp.clear_state()
    seen = {}
    orig = sp.submit_batch_script

    async def submit(user_values=None):
        seen["ip"] = sp.ip  # what the job's server is told to bind
        return await orig(user_values)

    sp.submit_batch_script = submit
    site.answers["query"] = "RUNNING node8 None"
    await sp.start()
    assert seen["ip"] == "0.0.0.0" and sp.ip == "node8"


async def test_stress_200_start_poll_stop_cycles_leave_nothing_behind():
    """What 1.3's ``test_stress_submit`` meant (its loop never awaited the coroutine it made):
    200 start/poll/stop cycles on one spawner, each job submitted, seen running, cancelled and
    forgotten, with no task or job left over."""
    site = SiteRunCommand()
    sp = site_spawner(SlurmSpawner, site)
    before = len(asyncio.all_tasks())
    cancelled = []
    real = site.__call__

    async def answer(cmd, input=None, env=None):
        if " scancel " in f" {cmd} ":
            cancelled.append(cmd.split()[-1])
        return await real(cmd, input=input, env=env)

    sp.run_command = answer
    for i in range(200):
        site.answers["submit"] = str(5000 + i)
        site.answers["query"] = "RUNNING node7 None"
        assert await asyncio.wait_for(sp.poll(), 5) == 1  # no job yet
        await asyncio.wait_for(sp.start(), 5)
        assert sp.job_id == str(5000 + i)
        assert await asyncio.wait_for(sp.poll(), 5) is None
        site.answers["query"] = ""
        await asyncio.wait_for(sp.stop(), 5)
        assert await asyncio.wait_for(sp.poll(), 5) == 1
        sp.clear_state()
        assert sp.get_state() == {}
    assert cancelled == [str(5000 + i) for i in range(200)]
    assert site.calls.count("submit") == 200
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) <= before
