"""The dashboard's start tiles and finished-session cards (issue 26): one tile per profile the user
may start (a new valid server name for each start), and a finished session's card with its exit
code, log link and Dismiss (only its owner, only that ended job; persisted in the server's state)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import jinja2
import pytest
from tornado import web
from wraphelpers import make_wrapper

from batchspawner.hub import dashboard, sessions
from batchspawner.hub.web import TEMPLATES
from wrapspawner import ProfilesSpawner

PROFILES = [
    {"key": "small", "display": "Small: 1 core, 1 GB", "class": "batchspawner.SlurmSpawner", "default": True,
     "description": "For notebooks.",
     "fields": {"runtime": {"type": "walltime", "max": "04:00:00", "default": "01:00:00"}}},
    {"key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner",
     "fields": {"nprocs": {"type": "int", "min": 1, "max": 8, "default": 2}}},
    {"key": "VS Code_2", "display": "VS Code (code-server)", "class": "batchspawner.SlurmSpawner"},
    {"key": "secret", "display": "Group only", "class": "batchspawner.SlurmSpawner", "groups": ["staff"]},
]


def wrapper(server="", named=True, user="rita", active=False):
    w = make_wrapper(ProfilesSpawner, name=user, profiles=PROFILES, cluster_limits=False, remember_file="")
    w.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None, user_options=None, state={})
    w.user.allow_named_servers = named
    w.user.spawners[server] = w
    w.user.orm_spawners = {server: w.orm_spawner}
    type(w).active = property(lambda self: getattr(self, "_test_active", False))
    w._test_active = active
    return w


@pytest.fixture(autouse=True)
def _restore_active():
    yield
    if "active" in ProfilesSpawner.__dict__:
        del ProfilesSpawner.active


# ------------------------------------------------------------------ server names and initials
def is_valid_safe_slug(name):
    """JupyterHub 6's rule for new server names (jupyterhub.slugs; JupyterHub 5 has no such module
    and allows more): 1-30 lowercase letters, digits, single hyphens, a letter first, no hyphen last."""
    try:
        from jupyterhub.slugs import is_valid_safe_slug as check
    except ImportError:
        return bool(re.fullmatch(r"[a-z](?:-?[a-z0-9])*", name)) and len(name) <= 30
    return check(name)


def test_a_new_server_name_is_a_valid_slug_that_collides_with_nothing():
    assert dashboard.new_server_name("small", {}) == "small"
    assert dashboard.new_server_name("small", {"": True, "small": False}) == "small-2"
    assert dashboard.new_server_name("small", {"small": True, "small-2": False, "small-3": True}) == "small-4"
    for key in ("VS Code_2", "9lives", "---", "Ünïcode Desktop!", "x" * 80, "a--b", "UPPER"):
        name = dashboard.new_server_name(key, {})
        assert is_valid_safe_slug(name), (key, name)
        taken = {name: False}
        again = dashboard.new_server_name(key, taken)
        assert again != name and is_valid_safe_slug(again), (key, again)
    assert dashboard.new_server_name("VS Code_2", {}) == "vs-code-2"


def test_at_the_named_server_limit_a_stopped_server_of_that_tile_is_reused_else_none():
    existing = {"": False, "small": True, "small-2": False, "custom": False}
    assert dashboard.new_server_name("small", existing, limit=3) == "small-2"
    assert dashboard.new_server_name("small", existing, limit=4) == "small-3"
    assert dashboard.new_server_name("custom", existing, limit=3) == "custom"
    assert dashboard.new_server_name("vscode", existing, limit=3) is None
    assert dashboard.new_server_name("vscode", existing, limit=0) == "vscode"  # 0: no limit


def test_a_free_server_of_the_tile_is_used_again_before_a_new_name():
    existing = {"": False, "small": True, "small-2": False, "small-3": False, "custom": False}
    # small-2 holds a finished session's state (not free): small-3 is free, custom is another tile's
    assert dashboard.new_server_name("small", existing, free={"small-3", "custom"}) == "small-3"
    assert dashboard.new_server_name("small", existing, free={"custom"}) == "small-4"
    assert dashboard.new_server_name("small", {"small": True}, free={"small"}) == "small-2"  # active: never


def test_initials():
    assert dashboard.initials("VS Code (code-server)") == "VC"
    assert dashboard.initials("Small: 1 core, 1 GB") == "Sm"
    assert dashboard.initials("JupyterLab") == "JL"
    assert dashboard.initials("Linux desktop (Xfce)") == "LD"
    assert dashboard.initials("") == "?"


# ------------------------------------------------------------------ tiles
def test_one_tile_per_profile_this_user_may_start():
    w = wrapper()
    tiles = dashboard.start_tiles(w.user)
    assert [t["key"] for t in tiles] == ["small", "custom", "VS Code_2"]  # not the staff-only one
    small = tiles[0]
    assert small["title"] == "Small: 1 core, 1 GB" and small["description"] == "For notebooks."
    assert small["href"] == "hpc/start/small" and small["initials"] == "Sm" and not small["disabled"]
    assert tiles[2]["href"] == "hpc/start/VS%20Code_2"
    w.user.groups = [SimpleNamespace(name="staff")]
    assert "secret" in [t["key"] for t in dashboard.start_tiles(w.user)]
    assert dashboard.start_tiles(None) == []


def test_a_spawner_without_profiles_has_one_start_tile():
    user = SimpleNamespace(name="rita", allow_named_servers=False, orm_spawners={},
                           spawners={"": SimpleNamespace(name="", active=False)})
    tiles = dashboard.start_tiles(user)
    assert len(tiles) == 1 and tiles[0]["href"] == "hpc/start" and tiles[0]["title"] == "Start a server"
    user.spawners[""].active = True  # no named servers and the one server runs: nothing to start
    assert dashboard.start_tiles(user)[0]["disabled"]


class Stub:
    """What the dashboard handlers read and write of a hub page handler."""

    def __init__(self, me, users, body=None, limit=0):
        self.current_user = me
        self._users = users
        self.hub = SimpleNamespace(base_url="/hub/")
        self.redirected = None
        self.request = SimpleNamespace(method="POST", uri="/hub/hpc/x")
        self.body = body or {}
        self.limit = limit
        self.commits = 0
        self.db = SimpleNamespace(commit=self._commit)

    def _commit(self):
        self.commits += 1

    def find_user(self, name):
        return self._users.get(name)

    def redirect(self, url, status=None):
        self.redirected = url

    def get_body_argument(self, name, default=None):
        return self.body.get(name, default)

    async def get_current_user_named_server_limit(self):
        return self.limit


async def test_a_tile_opens_the_form_of_a_new_server_with_its_profile_selected():
    w = wrapper(server="")
    w.user.orm_spawners["vs-code-2"] = SimpleNamespace(name="vs-code-2", state={"last_ended": {"job_id": "3"}})
    w.user.orm_spawners["small"] = SimpleNamespace(name="small", state={})  # opened, never started
    handler = Stub(w.user, {"rita": w.user})
    await dashboard.StartHandler.get(handler, "small")
    assert handler.redirected == "/hub/spawn/rita/small"
    handler = Stub(w.user, {"rita": w.user})
    await dashboard.StartHandler.get(handler, "VS Code_2")  # tornado decodes the path argument
    assert handler.redirected == "/hub/spawn/rita/vs-code-2-2"
    other = wrapper(server="vs-code-2-2")
    html = await other.get_options_form()
    assert re.search(r'value="VS Code_2"\s+checked', html), html[:2000]
    # the default server when the hub has no named servers
    plain = wrapper(server="", named=False)
    handler = Stub(plain.user, {"rita": plain.user})
    await dashboard.StartHandler.get(handler, "custom")
    assert handler.redirected == "/hub/spawn/rita"
    assert re.search(r'value="custom"\s+checked', await plain.get_options_form())


async def test_a_tile_of_a_profile_the_user_may_not_start_is_404_and_the_limit_is_400():
    w = wrapper(server="")
    for key in ("secret", "nope", ""):
        with pytest.raises(web.HTTPError) as err:
            await dashboard.StartHandler.get(Stub(w.user, {"rita": w.user}), key)
        assert err.value.status_code == 404
    w.user.orm_spawners.update({"a": SimpleNamespace(state={}), "b": SimpleNamespace(state={})})
    with pytest.raises(web.HTTPError) as err:
        await dashboard.StartHandler.get(Stub(w.user, {"rita": w.user}, limit=2), "small")
    assert err.value.status_code == 400 and "at most 2" in err.value.log_message


# ------------------------------------------------------------------ finished cards and Dismiss
def ended(server="q1", job="7", code=3, state="FAILED"):
    w = wrapper(server=server)
    record = {"job_id": job, "state": state, "exit_code": code, "at": 0.0}
    w.last_ended = dict(record)
    w.orm_spawner.state = {"last_ended": dict(record), "other": 1}
    return w


def test_a_finished_card_has_its_exit_code_log_link_and_dismiss():
    w = ended()
    cards = dashboard.finished_cards(w.user)
    card = cards["q1"]
    assert card["exit_code"] == 3 and card["job_id"] == "7"
    assert card["log_path"] == "hpc/log/rita/q1?job=7"
    assert card["dismiss_path"] == "hpc/dismiss/rita/q1"
    assert card["relaunch"] is None or card["relaunch"]["target"] == "q1"
    html = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True).get_template(
        "hpc_cards.html").render(sessions=[], ended=[card], base_url="/hub/", xsrf="tok")
    note = html[html.index("hpc-ended"):]
    assert 'action="/hub/hpc/dismiss/rita/q1"' in note and 'name="_xsrf" value="tok"' in note
    assert 'name="job_id" value="7"' in note and ">Dismiss</button>" in note
    assert "Exit code" in note and "3" in note
    assert 'href="/hub/hpc/log/rita/q1?job=7"' in note


async def test_dismiss_removes_the_card_for_its_owner_only_and_persists_in_state():
    w = ended()
    users = {"rita": w.user}
    bob = SimpleNamespace(name="bob", admin=False)
    for me, args, body in (
        (bob, ("rita", "q1"), {"job_id": "7"}),  # not hers
        (w.user, ("rita", "nope"), {"job_id": "7"}),  # no such server
        (w.user, ("rita", "q1"), {"job_id": "8"}),  # not the ended job shown
        (w.user, ("nobody", "q1"), {"job_id": "7"}),
    ):
        with pytest.raises(web.HTTPError) as err:
            await dashboard.DismissHandler.post(Stub(me, users, body), *args)
        assert err.value.status_code == 404, (me, args, body)
    for bad in ("", "7; rm -rf /", "x" * 200):
        with pytest.raises(web.HTTPError) as err:
            await dashboard.DismissHandler.post(Stub(w.user, users, {"job_id": bad}), "rita", "q1")
        assert err.value.status_code == 400 and "job_id" in err.value.log_message
    assert "q1" in dashboard.finished_cards(w.user)
    handler = Stub(w.user, users, {"job_id": "7"})
    await dashboard.DismissHandler.post(handler, "rita", "q1")
    assert handler.redirected == "/hub/home" and handler.commits == 1
    assert dashboard.finished_cards(w.user) == {}
    assert w.orm_spawner.state == {"other": 1}  # saved: the next hub process has no record either
    assert w.last_ended is None and "last_ended" not in w.get_state()
    with pytest.raises(web.HTTPError) as err:  # twice: gone
        await dashboard.DismissHandler.post(Stub(w.user, users, {"job_id": "7"}), "rita", "q1")
    assert err.value.status_code == 404


async def test_dismiss_a_stopped_server_the_hub_holds_only_in_its_database():
    w = ended(server="q2")
    del w.user.spawners["q2"]  # JupyterHub drops a stopped server's Spawner; the orm row keeps the state
    w.user.orm_user = SimpleNamespace(orm_spawners=w.user.orm_spawners)

    class Lazy(dict):  # user.spawners[name] builds it from the database
        def __missing__(self, name):
            self[name] = w
            return w

    w.user.spawners = Lazy(w.user.spawners)
    handler = Stub(w.user, {"rita": w.user}, {"job_id": "7"})
    await dashboard.DismissHandler.post(handler, "rita", "q2")
    assert "last_ended" not in w.orm_spawner.state and handler.commits == 1


async def test_the_log_link_of_a_finished_card_reads_only_that_ended_job():
    from batchspawner.hub.web import JobLogHandler

    w = ended()
    w.user.admin = False

    class LogStub(Stub):
        def get_argument(self, name, default=None):
            return {"job": "8"}.get(name, default)

    with pytest.raises(web.HTTPError) as err:  # not the job the card shows (or shown no longer)
        await JobLogHandler.get(LogStub(w.user, {"rita": w.user}), "rita", "q1")
    assert err.value.status_code == 404 and "ended job" in err.value.log_message


async def test_a_profile_key_with_a_percent_sign_is_not_decoded_twice():
    w = make_wrapper(ProfilesSpawner, name="rita", cluster_limits=False, remember_file="",
                     profiles=[{"key": "gpu%41", "display": "GPU", "class": "batchspawner.SlurmSpawner"}])
    w.user.allow_named_servers = False
    w.user.spawners[""] = w
    assert dashboard.start_tiles(w.user)[0]["href"] == "hpc/start/gpu%2541"
    handler = Stub(w.user, {"rita": w.user})
    await dashboard.StartHandler.get(handler, "gpu%41")  # what tornado hands over for /hpc/start/gpu%2541
    assert handler.redirected == "/hub/spawn/rita"


def test_the_tiles_render_as_links_or_a_disabled_card():
    from helpers import make_spawner

    from batchspawner import SlurmSpawner

    slurm = make_spawner(SlurmSpawner, None, name="rita")
    slurm.user.allow_named_servers = True
    slurm.user.spawners[""] = slurm
    tiles = dashboard.start_tiles(slurm.user) + dashboard.start_tiles(wrapper().user)
    tiles[-1] = dict(tiles[-1], disabled="Your server is running: stop it to start another.")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    html = str(env.get_template("hpc_tiles.html").module.hpc_tiles(tiles, "/hub/"))
    assert '<a class="card h-100 hpc-tile" id="hpc-tile-start" data-profile="" href="/hub/hpc/start">' in html
    assert 'id="hpc-tile-small" data-profile="small" href="/hub/hpc/start/small"' in html
    assert 'id="hpc-tile-vs-code-2" data-profile="VS Code_2" aria-disabled="true"' in html
    assert "stop it to start another" in html and html.count("<a ") == len(tiles) - 1
    assert str(env.get_template("hpc_tiles.html").module.hpc_tiles([], "/hub/")).strip() == ""


def test_the_tiles_are_worked_out_only_on_the_page_that_shows_them():
    # JupyterHub calls every template_vars callable for every page it renders (the cards fragment
    # every 5 s too): the tiles (and a site's visible() callables) only when the home page asks
    calls = []
    w = make_wrapper(ProfilesSpawner, name="rita", cluster_limits=False, remember_file="", profiles=[
        {"key": "v", "display": "V", "class": "batchspawner.SlurmSpawner", "visible": lambda s: calls.append(1) or True}])
    w.user.allow_named_servers = True
    w.user.spawners[""] = w
    lazy = dashboard.template_vars()["hpc_start_tiles"](w.user)
    assert calls == []
    assert [t["key"] for t in lazy()] == ["v"] and calls == [1]
