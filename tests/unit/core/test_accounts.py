"""Issue 21, items 5 and 6: system accounts never run jobs; a hostile log never swells an error.

Real spawner objects with an injected command runner: the tests count the commands that ran
and measure the messages built from what the runner returned."""

from __future__ import annotations

import asyncio
import logging
import pwd

import pytest
from fakes import FakeRunner, Reply
from helpers import make_spawner
from tornado.web import HTTPError

from batchspawner import SlurmSpawner, SpawnFailed
from batchspawner.core import joblogs
from batchspawner.core.accounts import DEFAULT_DENIED_USERS, account_problem


def _uid(name):
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


# ---------------------------------------------------------------- item 5: system accounts
def test_account_problem_table():
    kw = dict(min_uid=1000, denied=DEFAULT_DENIED_USERS, runs_elsewhere=False, allow_unknown=False)
    assert "denied_users" in account_problem("root", 0, **kw)
    assert "denied_users" in account_problem("slurm", 64030, **kw)  # denied whatever its uid
    assert "denied_users" in account_problem("munge", None, **kw)  # and when unknown here
    assert "uid 999, below BatchSpawnerBase.min_uid = 1000" in account_problem("svc", 999, **kw)
    assert account_problem("alice", 1001, **kw) == ""
    # unknown here, commands on this host: sudo is the gate (it cannot run as an unknown account)
    assert account_problem("ghost", None, **kw) == ""
    # unknown here, commands elsewhere: the uid cannot be checked -> refused unless the site says so
    far = kw | {"runs_elsewhere": True}
    assert "allow_accounts_unknown_here" in account_problem("ghost", None, **far)
    assert account_problem("ghost", None, **far | {"allow_unknown": True}) == ""
    assert account_problem("ghost", 1500, **far) == ""
    assert "min_uid = 500" in account_problem("x", 499, **kw | {"min_uid": 500})


@pytest.mark.parametrize("name", ["root", "slurm", "munge", "daemon", "nobody", "games"])
async def test_system_account_gets_403_before_any_command(name):
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="1\n"))
    sp = make_spawner(SlurmSpawner, runner, name=name)
    with pytest.raises(HTTPError) as err:
        await asyncio.wait_for(sp.start(), 5)
    assert err.value.status_code == 403
    text = str(err.value)
    assert "This account cannot start servers" in text and repr(name) in text
    assert "personal account" in text
    assert runner.calls == []  # nothing ran: no log folder, no sbatch, no sudo -u root


async def test_uid_below_min_uid_refused_even_when_not_denied():
    # "games" (uid 5 on Debian) is in the deny list; take it out: the uid alone must refuse it
    uid = _uid("games")
    assert uid is not None and uid < 1000
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="1\n"))
    sp = make_spawner(SlurmSpawner, runner, name="games", denied_users=set())
    with pytest.raises(HTTPError) as err:
        await asyncio.wait_for(sp.start(), 5)
    assert err.value.status_code == 403 and f"uid {uid}, below SlurmSpawner.min_uid = 1000" in str(err.value)
    assert runner.calls == []


async def test_site_can_lower_min_uid_and_extend_deny_list():
    sp = make_spawner(SlurmSpawner, FakeRunner(), name="games", denied_users=set(), min_uid=1)
    await sp.check_account()  # uid 5 >= 1: allowed
    sp = make_spawner(SlurmSpawner, FakeRunner(), name="alice", denied_users={"alice"})
    with pytest.raises(HTTPError) as err:
        await sp.check_account()
    assert err.value.status_code == 403
    with pytest.raises(Exception, match=r"SlurmSpawner\.min_uid"):
        make_spawner(SlurmSpawner, FakeRunner(), min_uid=0)


async def test_unknown_account_with_remote_commands_fails_closed():
    runner = FakeRunner(lambda argv, stdin: Reply(stdout="1\n"), remote_shell=True)
    sp = make_spawner(SlurmSpawner, runner, name="nosuchuser-jhpc21")
    with pytest.raises(HTTPError) as err:
        await sp.check_account()
    assert err.value.status_code == 403 and "SlurmSpawner.allow_accounts_unknown_here" in str(err.value)
    assert runner.calls == []
    sp = make_spawner(SlurmSpawner, runner, name="nosuchuser-jhpc21", allow_accounts_unknown_here=True)
    await sp.check_account()
    # local commands: sudo cannot run as an account it cannot resolve, so the check lets it through
    await make_spawner(SlurmSpawner, FakeRunner(), name="nosuchuser-jhpc21").check_account()


# ---------------------------------------------------------------- item 6: bounded log tail
HUGE = "A" * (50 * 1024 * 1024)  # what `tail -n 20` returns for a 50 MB file without a newline


def _ended_runner(log_answer):
    def respond(argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="128\n")
        if argv[0] == "tail":
            return Reply(stdout=log_answer)
        if argv[0] == "squeue" and "-j" in argv:
            ids = argv[argv.index("-j") + 1].split(",")
            return Reply(stdout="".join(f"{i} FAILED localhost NonZeroExitCode\n" for i in ids))
        return Reply()

    return FakeRunner(respond)


@pytest.mark.parametrize("answer", [HUGE, ("x" * 5000 + "\n") * 4000, "line\n" * 2_000_000])
async def test_failed_spawn_message_is_bounded_whatever_the_log_returns(answer, caplog):
    runner = _ended_runner(answer)
    sp = make_spawner(SlurmSpawner, runner, legacy_log=False, startup_poll_interval=0.01,
                      status_min_interval=0.01, batch_details_cmd="")
    caplog.set_level(logging.INFO)
    with pytest.raises(SpawnFailed) as err:
        await asyncio.wait_for(sp.start(), 10)
    text = str(err.value)
    html = err.value.jupyterhub_html_message
    assert "ended before your server started" in text and "Last lines of the job's log" in text
    assert len(text) < 16 * 1024, len(text)
    assert len(html) < 32 * 1024, len(html)
    assert max(len(r.getMessage()) for r in caplog.records) < 16 * 1024
    tails = [c.argv for c in runner.calls if c.argv[0] == "tail"]
    assert tails and all("-c" in a and int(a[a.index("-c") + 1]) <= 64 * 1024 for a in tails)


def test_bounded_tail_keeps_the_last_lines_and_cuts_long_ones():
    text = "\n".join(f"line {i}" for i in range(100)) + "\n" + "z" * 1000
    out = joblogs.bounded_tail(text, 5)
    lines = out.splitlines()
    assert len(lines) == 5 and lines[0] == "line 96" and lines[-1].startswith("[...] zzz")
    assert len(lines[-1]) <= joblogs.TAIL_MAX_LINE_CHARS + 6
    assert joblogs.bounded_tail("", 20) == "" and joblogs.bounded_tail("a\nb", 0) == ""
    assert len(joblogs.bounded_tail("q\n" * 10**6, 10**6)) <= joblogs.TAIL_MAX_BYTES


async def test_profiles_spawner_child_refuses_root_before_any_command():
    """The example's ProfilesSpawner: the Slurm child refuses root; the 403 reaches the hub as it is."""
    from wraphelpers import make_wrapper
    from wrapspawner import ProfilesSpawner

    runner = FakeRunner(lambda argv, stdin: Reply(stdout="1\n"))
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner}
    profiles = [{"key": "hpc", "display": "Slurm", "class": "batchspawner.SlurmSpawner", "config": plumbing}]
    wrapper = make_wrapper(ProfilesSpawner, name="root", profiles=profiles)
    wrapper.user_options = {"profile": "hpc"}
    await wrapper.run_pre_spawn_hook()
    with pytest.raises(HTTPError) as err:
        await asyncio.wait_for(wrapper.start(), 5)
    assert err.value.status_code == 403 and "This account cannot start servers" in str(err.value)
    assert runner.calls == []
