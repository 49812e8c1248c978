"""A session its server's Stop ended keeps a finished card too (issue 26): "stopped by you" (or by an
administrator, a hub service, or just "stopped" when the hub cannot tell), with the time, the log link,
Relaunch and Dismiss; it survives the hub's clear_state after the stop and a hub restart."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import jinja2
import pytest
from fakes import FakeRunner, Reply
from helpers import make_spawner
from wraphelpers import make_wrapper

from batchspawner import SlurmSpawner
from batchspawner.hub import dashboard, sessions, stopped
from batchspawner.hub.web import TEMPLATES
from batchspawner.polling.status import StatusPoller
from wrapspawner import ProfilesSpawner

PROFILES = [
    {"key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner", "default": True,
     "fields": {"nprocs": {"type": "int", "min": 1, "max": 8, "default": 2}}},
]


@pytest.fixture(autouse=True)
def _fresh_pollers():
    StatusPoller._registry.clear()
    yield
    StatusPoller._registry.clear()
    if "active" in ProfilesSpawner.__dict__:
        del ProfilesSpawner.active


class BaseHandler:
    """As JupyterHub's BaseHandler.stop_single_user: the stop runs in its own task, in a closure
    named ``stop`` that holds the handler (whose ``_jupyterhub_user`` is who asked)."""

    def __init__(self, requester):
        self._jupyterhub_user = requester

    async def stop_single_user(self, what):
        async def stop():
            assert self is not None  # JupyterHub's closure uses the handler (self.proxy...)
            return await what()

        return await asyncio.ensure_future(stop())  # JupyterHub: a task of its own


def person(name):
    return SimpleNamespace(kind="user", name=name)


def gone_after_cancel():
    """Slurm: scancel accepted; the job is then listed as CANCELLED (seen gone)."""
    calls = []

    def respond(argv, stdin):
        calls.append(argv[0])
        if argv[0] == "squeue":
            line = "CANCELLED localhost None" if "scancel" in calls else "RUNNING localhost None"
            if "%i" in argv[-1]:
                line = f"{argv[5]} {line}"
            return Reply(stdout=line)
        return Reply()

    return FakeRunner(responder=respond)


def running_batch(job_id="55", name="rita"):
    sp = make_spawner(SlurmSpawner, gone_after_cancel(), name=name, legacy_log=False, status_min_interval=0.01,
                      startup_poll_interval=0.01, shared_status=False)
    sp.job_id = job_id
    sp._starting = False  # its server had started
    return sp


# ------------------------------------------------------------------ who stopped it
async def test_who_stopped_reads_the_requester_of_the_hubs_stop_task():
    async def ask():
        return stopped.who_stopped("rita")

    assert await BaseHandler(person("rita")).stop_single_user(ask) == ("you", "")
    assert await BaseHandler(person("ada")).stop_single_user(ask) == ("admin", "")
    service = SimpleNamespace(kind="service", name="idle-culler")
    assert await BaseHandler(service).stop_single_user(ask) == ("service", "idle-culler")
    odd = SimpleNamespace(kind="service", name="x<script>" + "y" * 100)
    assert await BaseHandler(odd).stop_single_user(ask) == ("service", "")
    assert await BaseHandler(None).stop_single_user(ask) == ("", "")
    assert await ask() == ("", "")  # the hub's own stop (shutdown, a failed start's cleanup): not known


# ------------------------------------------------------------------ the record and its card
@pytest.mark.parametrize("requester, words", [
    (person("rita"), "was stopped by you"),
    (person("ada"), "was stopped by an administrator"),
    (SimpleNamespace(kind="service", name="idle-culler"), "was stopped by the hub (its idle-culler service)"),
])
async def test_a_stop_leaves_a_stopped_card_through_clear_state_and_a_hub_restart(requester, words):
    sp = running_batch()
    await BaseHandler(requester).stop_single_user(sp.stop)
    sp.clear_state()  # what User.stop does after stop(), in a finally
    assert sp.job_id == "" and sp.last_ended["job_id"] == "55"
    state = sp.get_state()
    assert state["last_ended"]["stopped_by"] == (["you", "admin", "service"][
        ["rita", "ada", "idle-culler"].index(requester.name)])
    again = make_spawner(SlurmSpawner, FakeRunner(), name="rita", legacy_log=False)
    again.load_state(state)
    facts = sessions.ended_facts(again)
    assert facts["what"] == words and facts["state"] == "stopped" and facts["stopped"] is True
    assert facts["never_started"] is False and re.fullmatch(r"\d\d:\d\d UTC", facts["at_text"])
    if requester.name != "rita":
        assert "you" not in facts["what"]


async def test_a_stop_nobody_asked_through_the_hub_leaves_the_state_empty_as_13_did():
    """stop() called directly (batchspawner 1.3's own tests, a site's, a wrapper's cleanup): no
    requester, so no card: the state is empty after it, as 1.3's test_spawner_start_stop_poll needs."""
    sp = running_batch()
    await BaseHandler(None).stop_single_user(sp.stop)
    sp.clear_state()
    assert sp.last_ended is None and sp.get_state() == {}
    direct = running_batch()
    await direct.stop()
    direct.clear_state()
    assert direct.get_state() == {}


async def test_a_cancelled_start_or_a_job_that_ended_on_its_own_is_not_a_stopped_card():
    starting = running_batch()
    starting._starting = True  # Cancel on the spawn page: that page says "Start cancelled"
    await BaseHandler(person("rita")).stop_single_user(starting.stop)
    starting.clear_state()
    assert starting.last_ended is None
    ended = running_batch()
    ended.last_ended = sessions.ended_record("55", "TIMEOUT", 0, served=True)
    ended.leftovers.cancelled.add("55")  # poll() saw it end and cancelled it
    await BaseHandler(person("rita")).stop_single_user(ended.stop)
    assert ended.last_ended["state"] == "TIMEOUT"  # how it ended stays what the card says


def _wrapper_with_child(server="q1"):
    w = make_wrapper(ProfilesSpawner, name="rita", profiles=PROFILES, cluster_limits=False, remember_file="")
    w.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None, user_options=None, state={})
    w.user.allow_named_servers = True
    w.user.spawners[server] = w
    w.user.orm_spawners = {server: w.orm_spawner}
    w.user_options = {"profile": "custom", "nprocs": "6"}
    type(w).active = property(lambda self: False)
    child = running_batch()
    w.child_spawner = child
    return w, child


async def test_a_profiles_server_stopped_by_its_user_has_a_card_with_relaunch_log_and_dismiss():
    w, child = _wrapper_with_child()
    await BaseHandler(person("rita")).stop_single_user(w.stop)
    w.clear_state()  # the wrapper keeps its child's record (as for an ended job)
    w.orm_spawner.state = w.get_state()
    assert w.orm_spawner.state["last_ended"]["stopped_by"] == "you"
    card = dashboard.finished_cards(w.user)["q1"]
    assert card["what"] == "was stopped by you" and card["relaunch"]["target"] == "q1"
    assert card["log_path"] == "hpc/log/rita/q1?job=55" and card["dismiss_path"] == "hpc/dismiss/rita/q1"
    html = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True).get_template(
        "hpc_cards.html").render(sessions=[], ended=[card], base_url="/hub/", xsrf="tok")
    note = html[html.index("hpc-ended"):]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", note))
    assert 'data-state="stopped"' in note
    assert "Your server q1 was stopped by you at" in text and "its batch job 55 was cancelled" in text
    assert "Exit code" not in text  # a cancelled job's exit code says nothing
    assert "Relaunch with the same settings" in text and ">Dismiss</button>" in note
    assert 'href="/hub/hpc/log/rita/q1?job=55"' in note
    handler = SimpleNamespace(current_user=w.user, get_body_argument=lambda name, default="": "55",
                              find_user=lambda name: w.user, db=SimpleNamespace(commit=lambda: None),
                              hub=SimpleNamespace(base_url="/hub/"), redirect=lambda url, status=302: None)
    await dashboard.DismissHandler.post(handler, "rita", "q1")
    assert dashboard.finished_cards(w.user) == {} and "last_ended" not in w.orm_spawner.state


def test_a_stopped_card_escapes_a_service_name():
    record = stopped.stopped_record("9", "service", "evil<b>")
    assert record["stopped_by"] == "service" and record["service"] == ""
    record = {**stopped.stopped_record("9", "service", "ok"), "service": "<b>x</b>"}  # a tampered state
    assert "<b>" not in stopped.stopped_words(record)


def test_the_job_ended_page_says_stopped_not_ended():
    import os

    from test_job_ended import JH_TEMPLATES

    stub = {"templates/not_running.html": open(os.path.join(JH_TEMPLATES, "not_running.html")).read(),
            "templates/page.html": "{% block main %}{% endblock %}"}
    env = jinja2.Environment(autoescape=True, loader=jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(TEMPLATES), jinja2.DictLoader(stub)]))
    sp = make_spawner(SlurmSpawner, FakeRunner(), name="rita", legacy_log=False)
    sp.last_ended = stopped.stopped_record("55", "you")
    facts = sessions.ended_facts(sp) | {"user": "rita"}
    html = env.get_template("not_running.html").render(user=SimpleNamespace(name="rita"), server_name="",
                                                       spawn_url="/s", hpc_ended={"": facts})
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Your server was stopped" in text and "its batch job ended" not in text
    assert "was stopped by you" in text


def test_jupyterhubs_own_stop_task_is_what_who_stopped_looks_for():
    """The installed JupyterHub stops a server in ``stop_single_user``'s ``stop`` closure, which holds
    the handler (``self``): if a release changes that, the cards say "stopped" (this test says why)."""
    from jupyterhub.handlers.base import BaseHandler as HubHandler

    code = HubHandler.stop_single_user.__code__
    closures = [c for c in code.co_consts if hasattr(c, "co_name") and c.co_name == "stop"]
    assert closures and "self" in closures[0].co_freevars
    assert "stop_single_user" in closures[0].co_qualname
