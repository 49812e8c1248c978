"""A job that ends under a running server (scancel, wall time, node failure): what the spawner keeps
and what the hub's pages say (issue 14). Commands go through the injected FakeRunner."""

from __future__ import annotations

import os
import re

import jinja2
import pytest
from fakes import FakeRunner, Reply
from helpers import make_spawner
from wraphelpers import make_wrapper, slurm_responder

from batchspawner import SlurmSpawner
from batchspawner.hub.sessions import ended_facts, ended_record, user_ended
from batchspawner.polling.status import StatusPoller
from batchspawner.hub.web import TEMPLATES
from wrapspawner import ProfilesSpawner

JH_TEMPLATES = os.path.join(os.path.dirname(__import__("jupyterhub").__file__), "..", "..", "..", "..",
                            "share", "jupyterhub", "templates")


def squeue(line):
    def respond(argv, stdin):
        if argv[0] == "squeue":
            ids = argv[argv.index("-j") + 1].split(",") if "-j" in argv else ["77"]
            return Reply(stdout="".join(f"{i} {line}\n" for i in ids))
        return Reply()

    return respond


def spawner(line, job_id="77"):
    sp = make_spawner(SlurmSpawner, FakeRunner(responder=squeue(line)), name="alice", legacy_log=False,
                      status_min_interval=0.01)
    sp.job_id = job_id
    return sp


@pytest.fixture(autouse=True)
def _fresh_pollers():
    StatusPoller._registry.clear()
    yield
    StatusPoller._registry.clear()


@pytest.mark.parametrize("native, words", [
    ("CANCELLED", "was cancelled"),
    ("TIMEOUT", "reached its wall time"),
    ("NODE_FAIL", "lost its node (node failure)"),
])
async def test_poll_keeps_how_the_job_ended_through_clear_state_and_a_hub_restart(native, words):
    sp = spawner(f"{native} localhost None")
    assert await sp.poll() is not None  # the hub will mark the server stopped
    assert sp.last_ended["job_id"] == "77" and sp.last_ended["state"] == native
    sp.clear_state()  # what the hub does after a poll saw the end
    assert sp.job_id == "" and sp.last_ended["job_id"] == "77"
    state = sp.get_state()
    assert state["last_ended"]["state"] == native and "job_id" not in state
    again = spawner("RUNNING localhost None", job_id="")
    again.load_state(state)
    facts = ended_facts(again)
    assert facts["job_id"] == "77" and words in facts["what"]
    assert re.fullmatch(r"\d\d:\d\d UTC", facts["at_text"])


async def test_a_running_job_keeps_no_ending_and_a_new_start_forgets_the_old_one():
    sp = spawner("RUNNING localhost None")
    assert await sp.poll() is None
    assert sp.last_ended is None and ended_facts(sp) is None
    sp.last_ended = ended_record("76", "CANCELLED")
    sp._spawn_pending = True  # a new start is under way: the old ending is not shown
    assert ended_facts(sp) is None


def test_a_tools_message_is_never_shown_as_the_state():
    rec = ended_record("5", "squeue: error: Invalid job id specified")
    assert rec["state"] == ""
    sp = make_spawner(SlurmSpawner, FakeRunner(), name="alice")
    sp.last_ended = rec
    assert ended_facts(sp)["what"] == "ended"
    assert ended_record("5", "CANCELLED by 1006")["state"] == "CANCELLED"  # sacct's form
    sp.last_ended = ended_record("5", "FAILED", exit_code=3)
    assert ended_facts(sp)["what"] == "failed (exit code 3)"


async def test_profiles_spawner_keeps_the_childs_ending_not_as_a_leftover_job():
    runner = FakeRunner(responder=slurm_responder("TIMEOUT localhost None"))
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner, "status_min_interval": 0.01}
    profiles = [{"key": "hpc", "display": "Slurm", "class": "batchspawner.SlurmSpawner", "config": plumbing}]
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles)
    wrapper.load_state({"profile": "hpc", "child_class": "batchspawner.schedulers.slurm.SlurmSpawner",
                        "child_state": {"job_id": "4242"}})
    assert await wrapper.poll() is not None
    await wrapper.stop()
    wrapper.clear_state()
    state = wrapper.get_state()
    assert "child_leftover" not in state and state["last_ended"]["job_id"] == "4242"
    again = make_wrapper(ProfilesSpawner, profiles=profiles)
    again.load_state(state)
    facts = ended_facts(again)
    assert facts["job_id"] == "4242" and facts["what"] == "reached its wall time"
    again.user.spawners = {"": again}
    assert user_ended(again.user)[""]["user"] == "alice"



async def test_an_htcondor_removal_is_said_in_words():
    """condor_rm from outside the hub (an administrator, the user in a terminal, a policy): the job's
    last condor_q answer is JobStatus 3, "Removed"; the pages say it was removed, not "ended (REMOVED)"
    (seen on a real HTCondor 23.9 pool, tests/e2e/test_cluster_condor.py)."""
    from batchspawner import CondorSpawner

    def condor_q(argv, stdin):
        return Reply(stdout="77\t3\tundefined\tundefined\tundefined\n" if argv[0] == "condor_q" else "")

    sp = make_spawner(CondorSpawner, FakeRunner(responder=condor_q), name="alice", status_min_interval=0.01)
    sp.job_id = "77"
    assert await sp.poll() is not None
    assert sp.last_ended["state"] == "REMOVED"
    facts = ended_facts(sp)
    assert facts["what"] == "was removed from the queue (condor_rm: by you, an administrator or a policy)", facts

# ---------------------------------------------------------------- the pages
def _env():
    # the hub's own templates under "templates/", ours first (as JupyterHub's template_paths does)
    stub = {
        "templates/page.html": "{% block announcement %}{% endblock %}{% block main %}{% endblock %}"
                               "{% block script %}{% endblock %}",
        "templates/not_running.html": open(os.path.join(JH_TEMPLATES, "not_running.html")).read(),
        "templates/error.html": open(os.path.join(JH_TEMPLATES, "error.html")).read(),
    }
    return jinja2.Environment(autoescape=True, loader=jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(TEMPLATES), jinja2.DictLoader(stub)]))


def _ended(user="alice"):
    return {"": {"server": "", "user": user, "job_id": "77", "state": "CANCELLED",
                 "what": "was cancelled (by you, an administrator or the scheduler)", "at": 0, "at_text": "06:41 UTC",
                 "advice": "Start again to get a new server."}}


def _text(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_not_running_page_says_how_the_job_ended_with_start_again():
    user = type("U", (), {"name": "alice"})()
    html = _env().get_template("not_running.html").render(
        user=user, server_name="", spawn_url="/hub/spawn/alice?next=/user/alice/lab", hpc_ended=_ended())
    text = _text(html)
    assert "Your batch job 77 was cancelled" in text and "at 06:41 UTC" in text and "your server stopped" in text
    assert re.search(r'<a id="start"[^>]*href="/hub/spawn/alice\?next=/user/alice/lab">Start again</a>', html)
    # no ending known (or another user's ending): the hub's own page
    plain = _text(_env().get_template("not_running.html").render(user=user, server_name="", spawn_url="/s",
                                                                  hpc_ended={}))
    assert "is not running" in plain and "job 77" not in plain
    other = _text(_env().get_template("not_running.html").render(user=user, server_name="", spawn_url="/s",
                                                                  hpc_ended=_ended("bob")))
    assert "job 77" not in other


def test_proxy_503_on_a_users_server_explains_and_reloads():
    env = _env()
    html = env.get_template("error.html").render(status_code=503, status_message="Service Unavailable",
                                                 base_url="/hub/", hpc_sessions=[{"job_id": "77"}], hpc_ended={})
    text = _text(html)
    assert "Service Unavailable" not in text and "not answering" in text and "batch job may have ended" in text
    assert "window.location.reload()" in html
    with_end = _text(env.get_template("error.html").render(status_code=503, status_message="Service Unavailable",
                                                           base_url="/hub/", hpc_sessions=[], hpc_ended=_ended()))
    assert "Your batch job 77 was cancelled" in with_end
    other = env.get_template("error.html").render(status_code=404, status_message="Not Found", base_url="/hub/",
                                                  hpc_sessions=[{"job_id": "77"}], hpc_ended={})
    assert "404 : Not Found" in other and "window.location.reload()" not in other
    # the hub's own 503 (write_error passes the exception): the hub's page, its message
    own = env.get_template("error.html").render(status_code=503, status_message="Service Unavailable",
                                                base_url="/hub/", exception=None, message="Too many users spawning")
    assert "503 : Service Unavailable" in own and "Too many users" in own and "reload()" not in own


def test_a_failed_start_shows_the_spawn_pages_failure_box_with_start_again():
    """A start that failed before the spawn page opened its progress stream (HTTP 400 there) makes
    the page reload to the hub's "not running" page: it shows the same facts and Start again."""
    user = type("U", (), {"name": "alice"})()
    msg = ('<p>The batch job 9 ended before your server started (job state FAILED; exit code 7).</p>'
           '<pre>module load python/3.99: no such module</pre><p>What to do: check the log.</p>')
    html = _env().get_template("not_running.html").render(
        user=user, server_name="f", spawn_url="/hub/spawn/alice/f", failed=True,
        failed_html_message=msg, failed_message="plain", hpc_ended=_ended())
    text = _text(html)
    assert 'id="hpc-failed"' in html and "Your server could not start" in text
    assert "exit code 7" in text and "no such module" in text and "What to do" in text
    assert re.search(r'<a id="hpc-start-again"[^>]*href="/hub/spawn/alice/f">Start again</a>', html)
    assert "job 77" not in text  # an earlier ending is not this failure
    # the spawn page reloads when its stream is refused, instead of retrying forever
    pending = open(os.path.join(TEMPLATES, "spawn_pending.html")).read()
    assert "evtSource.onerror" in pending and "window.location.reload()" in pending
    assert "cancelling || evtSource.readyState !== EventSource.CLOSED" in pending  # not after Cancel


def test_user_ended_loads_a_stopped_server_the_hub_no_longer_holds():
    """JupyterHub drops a server's Spawner from user.spawners after a stop: its ending (saved in
    its state in the database) still makes the home page's note."""
    from types import SimpleNamespace

    class Spawners(dict):
        def __missing__(self, name):  # as JupyterHub's: built from the database on first use
            sp = make_wrapper(ProfilesSpawner, profiles=[{"key": "hpc", "display": "Slurm",
                                                          "class": "batchspawner.SlurmSpawner"}])
            sp.load_state(orm[name].state)
            self[name] = sp
            return sp

    orm = {"r3": SimpleNamespace(state={"last_ended": {"job_id": "77", "state": "CANCELLED", "at": 0.0}}),
           "idle": SimpleNamespace(state={})}
    user = SimpleNamespace(name="alice", spawners=Spawners(), allow_named_servers=True,
                           orm_user=SimpleNamespace(orm_spawners=orm))
    ended = user_ended(user)
    assert list(ended) == ["r3"] and ended["r3"]["job_id"] == "77" and "idle" not in user.spawners
