"""Relaunch with the same settings / Edit and launch on the home page's session cards (issue 26):
which server a relaunch starts, the form inputs it posts (the session's own options, checked again
by the hub's spawn form like any form post), the buttons in the card and the job-ended note."""

from __future__ import annotations

import re
from types import SimpleNamespace

import jinja2
import pytest
from wraphelpers import make_wrapper

from batchspawner.hub import sessions
from batchspawner.core.options import OptionError
from batchspawner.hub.web import TEMPLATES
from wrapspawner import ProfilesSpawner

PROFILES = [
    {"key": "small", "display": "Small", "class": "batchspawner.SlurmSpawner", "default": True,
     "fields": {"runtime": {"type": "walltime", "max": "04:00:00", "default": "01:00:00"}}},
    {"key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner",
     "fields": {"nprocs": {"type": "int", "min": 1, "max": 8, "default": 2}}},
]


def wrapper(server="q1", active=False, named=True, options=None, user="rita"):
    w = make_wrapper(ProfilesSpawner, name=user, profiles=PROFILES, cluster_limits=False)
    w.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None, user_options=None)
    w.user.allow_named_servers = named
    w.user.spawners[server] = w
    w.user_options = options if options is not None else {"profile": "custom", "nprocs": "6"}
    type(w).active = property(lambda self: getattr(self, "_test_active", False))
    w._test_active = active
    return w


@pytest.fixture(autouse=True)
def _restore_active():
    yield
    if "active" in ProfilesSpawner.__dict__:
        del ProfilesSpawner.active


def test_a_stopped_session_relaunches_on_its_own_server():
    w = wrapper(server="q1", active=False)
    facts = sessions.relaunch_facts(w)
    assert facts == {"target": "q1", "spawn_path": "spawn/rita/q1", "edit_path": "hpc/edit/rita/q1",
                     "inputs": [("profile", "custom"), ("custom.nprocs", "6")]}
    default = wrapper(server="", active=False)
    assert sessions.relaunch_facts(default)["spawn_path"] == "spawn/rita"


def test_a_running_session_relaunches_on_the_first_free_named_server():
    w = wrapper(server="q1", active=True)
    assert sessions.relaunch_target(w) == "q1-2"
    busy = SimpleNamespace(active=True)
    w.user.spawners["q1-2"] = busy
    assert sessions.relaunch_target(w) == "q1-3"
    w.user.spawners["q1-3"] = SimpleNamespace(active=False)  # stopped: reused
    assert sessions.relaunch_target(w) == "q1-3"
    w.user.spawners.clear()
    w.user.spawners["q1-2"] = w
    w.orm_spawner.name = "q1-2"
    assert sessions.relaunch_target(w) == "q1-3"  # not q1-2-2
    assert sessions.relaunch_target(wrapper(server="", active=True)) == "server-2"


def test_no_relaunch_without_named_servers_while_running_or_without_options():
    assert sessions.relaunch_facts(wrapper(active=True, named=False)) is None
    assert sessions.relaunch_facts(wrapper(options={})) is None
    assert sessions.relaunch_facts(wrapper(options={"profile": "gone"})) is None
    assert sessions.relaunch_facts(SimpleNamespace(name="", user=SimpleNamespace(name="x"))) is None


async def test_the_posted_inputs_go_through_the_same_checks_as_a_form():
    w = wrapper(options={"profile": "custom", "nprocs": "6"})
    form = {name: [value] for name, value in sessions.relaunch_facts(w)["inputs"]}
    fresh = wrapper()
    assert await fresh.run_options_from_form(form) == {"profile": "custom", "nprocs": "6"}
    # a session whose value the profile no longer allows: the relaunch is refused like a form (400)
    w.user_options = {"profile": "custom", "nprocs": "12"}
    form = {name: [value] for name, value in sessions.relaunch_facts(w)["inputs"]}
    with pytest.raises(OptionError) as err:
        await fresh.run_options_from_form(form)
    assert err.value.status_code == 400 and err.value.field == "nprocs"


def _env():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


CARD = {"job_id": "7", "server": "q1", "user": "rita", "profile": "Custom", "scheduler": "Slurm",
        "state": "running", "native_state": "RUNNING", "node": "n1", "partition": "debug", "cores": "1",
        "memory": "1G", "gpus": "", "reason_text": "", "position": None, "pending_in_partition": None,
        "estimated_start_text": "", "queue_wait_text": "", "walltime_text": "1 h 00 min", "time_left": None,
        "ends_soon": False, "log_path": "",
        "relaunch": {"target": "q1-2", "spawn_path": "spawn/rita/q1-2", "edit_path": "hpc/edit/rita/q1",
                     "inputs": [("profile", "custom"), ("custom.nprocs", '6"><b>')]}}


def test_card_fragment_has_relaunch_form_and_edit_link():
    html = _env().get_template("hpc_cards.html").render(sessions=[CARD], ended=[], base_url="/hub/", xsrf="tok")
    assert '<form method="post" action="/hub/spawn/rita/q1-2" class="d-inline hpc-relaunch-form">' in html
    assert '<input type="hidden" name="_xsrf" value="tok">' in html
    assert '<input type="hidden" name="profile" value="custom">' in html
    assert 'name="custom.nprocs" value="6&#34;&gt;&lt;b&gt;"' in html  # escaped
    assert 'class="btn btn-sm btn-outline-primary hpc-edit ms-1" href="/hub/hpc/edit/rita/q1"' in html
    assert "starts server q1-2" in html
    # without the page's xsrf (a template that imports the macro without context): no buttons
    macro = _env().get_template("hpc_macros.html").module.hpc_card
    assert "hpc-relaunch" not in str(macro(CARD, "/hub/"))


def test_job_ended_note_has_relaunch_and_edit():
    ended = {"server": "q1", "never_started": False, "start_path": "spawn/rita/q1", "job_id": "7",
             "state": "TIMEOUT", "what": "reached its wall time", "at_text": "", "advice": "Start again.",
             "relaunch": {"target": "q1", "spawn_path": "spawn/rita/q1", "edit_path": "hpc/edit/rita/q1",
                          "inputs": [("profile", "small"), ("small.runtime", "02:00:00")]}}
    html = _env().get_template("hpc_cards.html").render(sessions=[], ended=[ended], base_url="/hub/", xsrf="tok")
    note = html[html.index("hpc-ended"):]
    assert 'action="/hub/spawn/rita/q1"' in note and 'name="small.runtime" value="02:00:00"' in note
    assert 'href="/hub/hpc/edit/rita/q1"' in note


def test_user_sessions_and_user_ended_carry_relaunch_facts():
    w = wrapper(server="q1", active=False)
    w.last_ended = {"job_id": "7", "state": "TIMEOUT", "exit_code": None, "at": 0.0}
    ended = sessions.user_ended(w.user)
    assert ended["q1"]["relaunch"]["target"] == "q1"


class EditStub:
    """Just what EditHandler.get() reads and writes of a hub page handler."""

    def __init__(self, me, users):
        self.current_user = me
        self._users = users
        self.hub = SimpleNamespace(base_url="/hub/")
        self.redirected = None
        self.request = SimpleNamespace(method="GET", uri="/hub/hpc/edit")

    def find_user(self, name):
        return self._users.get(name)

    def redirect(self, url):
        self.redirected = url


async def test_edit_page_prefills_the_target_form_for_the_owner_or_an_admin_only():
    from tornado import web

    from batchspawner.hub.web import EditHandler

    w = wrapper(server="q1", active=True, options={"profile": "custom", "nprocs": "5"})
    users = {"rita": w.user}
    stranger = SimpleNamespace(name="sam", admin=False)
    for me, args in ((stranger, ("rita", "q1")), (w.user, ("rita", "nope")), (w.user, ("nobody", "q1"))):
        with pytest.raises(web.HTTPError) as err:
            await EditHandler.get(EditStub(me, users), *args)
        assert err.value.status_code == 404
    handler = EditStub(SimpleNamespace(name="root", admin=True), users)
    await EditHandler.get(handler, "rita", "q1")
    assert handler.redirected == "/hub/spawn/rita/q1-2"
    other = wrapper(server="q1-2", options={})
    html = await other.get_options_form()
    assert re.search(r'value="custom"\s+checked', html)
    assert re.search(r'name="custom.nprocs" id="custom.nprocs"\s+value="5"', html)
