"""The user's dashboard (issue 26): start tiles on the home page and finished sessions' cards.

**Start tiles**: one per thing the user may start (each ProfilesSpawner profile visible to her,
with its name, description and initials; one "Start a server" tile for any other spawner). A
tile is a plain link to ``GET /hub/hpc/start/<profile key>`` (:class:`StartHandler`), which
chooses the server (a new named server, ``<key>``, ``<key>-2``..., a valid JupyterHub server name
that collides with none of the user's servers; the default server when the hub has no named
servers), pre-selects the profile in that server's next form (with the values the user last
submitted for it, as the form would show them) and redirects to the hub's spawn form. Nothing
starts before the user submits that form.

**Finished sessions** keep their note on the home page (how the job ended, its exit code, a link
to its log, Relaunch) until the user dismisses it: ``POST /hub/hpc/dismiss/<user>/<server>``
(:class:`DismissHandler`, the hub's XSRF check, ``job_id`` in the body) forgets that server's
``last_ended`` record, in memory and in the server's saved state in the hub's database (so it
stays gone after a reload and a hub restart). Only the owner may dismiss, only the ended job
the card shows (anything else: 404; a malformed job id: 400).

Both read only what the hub holds (no scheduler command). The routes are added to the hub's
page handlers when :mod:`batchspawner.hub.web` is imported.
"""

from __future__ import annotations

import re
import zlib
from urllib.parse import quote

from jupyterhub.handlers import BaseHandler
from tornado import web

from batchspawner.hub import sessions

# ---------------------------------------------------------------- server names
_MAX_NAME = 30  # JupyterHub's safe server names: 1-30 characters (jupyterhub.slugs.is_valid_safe_slug)
_SUFFIX = re.compile(r"-([0-9]{1,3})$")


def name_base(key: str) -> str:
    """A profile key as the start of a server name: lowercase letters, digits and single hyphens,
    starting with a letter, ending with a letter or digit; short enough for a ``-NNN`` suffix."""
    base = re.sub(r"[^a-z0-9]+", "-", (key or "").lower()).strip("-")
    if base and not base[0].isalpha():
        base = "s-" + base
    base = base[: _MAX_NAME - 4].rstrip("-")
    return base or "server"


def new_server_name(key: str, existing: dict, limit: int = 0, free=()) -> str | None:
    """The server a tile of profile ``key`` starts. ``existing``: {server name: active?} of the
    user's servers (the default server is ``""``); ``limit``: the hub's named servers per user
    (0: none); ``free``: stopped servers with nothing saved (a form opened and left, a server
    stopped by its user). A free server of this tile's own names (``<base>`` or ``<base>-N``) is
    used again (tiles do not pile up empty servers), else a name none of the servers has; at the
    limit, any stopped server of this tile's names; None if there is none."""
    base = name_base(key)
    named = sorted((n for n in existing if n), key=lambda n: (len(n), n))
    for name in named:
        if name in free and not existing[name] and (name == base or _SUFFIX.sub("", name) == base):
            return name
    if not limit or len(named) < limit:
        for i in range(1, 1000):
            candidate = base if i == 1 else f"{base}-{i}"
            if candidate not in existing:
                return candidate
    for name in named:
        if not existing[name] and (name == base or _SUFFIX.sub("", name) == base):
            return name
    return None


def initials(display: str) -> str:
    """Up to two letters for a tile's icon: ``VS Code (code-server)`` -> ``VC``, ``JupyterLab`` ->
    ``JL``, ``Small: 1 core`` -> ``Sm``."""
    name = re.split(r"[:(,]", display or "", maxsplit=1)[0]
    words = re.findall(r"[^\W_]+", name)
    if not words:
        return "?"
    if len(words) >= 2:
        return (words[0][0] + words[1][0]).upper()
    capitals = [c for c in words[0] if c.isupper()]
    if len(capitals) >= 2:
        return "".join(capitals[:2])
    return words[0][:1].upper() + words[0][1:2].lower()


def _servers(user) -> tuple[dict, set]:
    """({name: active?} of every server of ``user``, stopped named servers too: the hub's database;
    the set of stopped ones with no saved state)."""
    spawners = getattr(user, "spawners", {}) or {}
    orm = getattr(user, "orm_spawners", None) or {}
    names = set(orm) | set(spawners)
    active = {name: bool(name in spawners and getattr(spawners[name], "active", False)) for name in names}
    free = {name for name in names if not active[name] and name in orm and not getattr(orm[name], "state", None)}
    return active, free


def _default_spawner(user):
    spawners = getattr(user, "spawners", {}) or {}
    if "" in spawners:
        return spawners[""]
    return getattr(user, "spawner", None)  # JupyterHub's User builds its default server's Spawner


def _is_profiles(spawner) -> bool:
    return hasattr(spawner, "parsed_profiles") and callable(getattr(spawner, "prefill_form", None))


def _visible_now(spawner, profile) -> bool:
    check = getattr(spawner, "_visible_now", None)
    if callable(check):
        return bool(check(profile))
    return not (profile.groups or profile.users or profile.visible)


# ---------------------------------------------------------------- tiles
def start_tiles(user) -> list[dict]:
    """The home page's tiles for ``user`` (``JupyterHub.template_vars``: called with the page's user)."""
    if user is None or not hasattr(user, "spawners"):
        return []
    try:
        spawner = _default_spawner(user)
    except Exception:  # a page must render even without its tiles
        sessions.log.exception("start tiles of %s", getattr(user, "name", "?"))
        return []
    busy = ""
    if not getattr(user, "allow_named_servers", False) and getattr(spawner, "active", False):
        busy = "Your server is running: stop it to start another."
    if not _is_profiles(spawner):
        return [{"key": "", "id": "start", "title": "Start a server", "initials": "▶", "hue": 210,
                 "description": "Choose its resources in the next form.", "href": "hpc/start", "disabled": busy}]
    tiles = []
    for p in spawner.parsed_profiles:
        try:
            visible = _visible_now(spawner, p)
        except Exception:
            sessions.log.exception("visibility of profile %s for %s", p.key, getattr(user, "name", "?"))
            visible = False
        if not visible:
            continue
        per_image = _image_tiles(p, busy)
        if per_image:
            tiles.extend(per_image)
            continue
        tiles.append({
            "key": p.key, "id": name_base(p.key), "title": p.display, "description": p.description,
            "initials": initials(p.display), "hue": zlib.crc32(p.key.encode()) % 360,
            "href": "hpc/start/" + quote(p.key, safe=""), "disabled": busy,
        })  # fmt: skip
    return tiles


def _image_tiles(profile, busy) -> list[dict]:
    """A container profile's tiles: one per usable image the catalog already holds ("Jupyter in
    <image>", opening the form with that image selected); [] (the profile's one tile) for any other
    profile, or while the catalog has not listed its folder yet. Reads the catalog's cache only: the
    first page that finds it never listed starts that one listing in the background."""
    container = getattr(profile, "container", None)
    if container is None:
        return []
    try:
        catalog = container.catalog(sessions.log)
        if not catalog.loaded_at:
            _first_listing(catalog)
            return []
        names = sorted(container.usable())
    except Exception:  # a page must render even without these tiles
        sessions.log.exception("image tiles of profile %s", profile.key)
        return []
    tiles = []
    for image in names:
        tiles.append({
            "key": profile.key, "image": image, "id": name_base(f"{profile.key}-{image}")
            + "-" + format(zlib.crc32(f"{profile.key}/{image}".encode()), "08x"),
            "title": f"Jupyter in {image}", "description": profile.description or profile.display,
            "initials": initials(image), "hue": zlib.crc32(f"{profile.key}/{image}".encode()) % 360,
            "href": "hpc/start/" + quote(profile.key, safe="") + "?image=" + quote(image, safe=""),
            "disabled": busy,
        })  # fmt: skip
    return tiles


def _first_listing(catalog) -> None:
    """Start the catalog's very first listing (once, in the background), when a loop runs."""
    task = getattr(catalog, "_task", None)
    if task is not None:
        return
    try:
        catalog.refresh_soon()
    except RuntimeError:  # no running loop (a test, a script): the form's first render lists it
        pass


def _remembered(spawner, key: str) -> dict:
    """What the user last submitted for profile ``key`` (the form checks it again), or {}."""
    path = getattr(spawner, "remember_file", "")
    if not path:
        return {}
    from wrapspawner import remember

    memory = remember.store(path)
    return memory.values(spawner.user.name, key) if memory is not None else {}


class StartHandler(BaseHandler):
    """A start tile: the spawn form of a new server with the tile's profile selected (nothing starts)."""

    @web.authenticated
    async def get(self, key=""):
        user = self.current_user
        if user is None:
            raise web.HTTPError(404)
        key = key or ""  # tornado has decoded the path argument already
        spawner = _default_spawner(user)
        profile = None
        if _is_profiles(spawner):
            profile = spawner.profile(key) if key else None
            if profile is None or not await profile.visible_to(spawner):
                raise web.HTTPError(404, "No such profile.")
        elif key:
            raise web.HTTPError(404, "No such profile.")
        server = ""
        if getattr(user, "allow_named_servers", False):
            limit = await self.get_current_user_named_server_limit()
            active, free = _servers(user)
            server = new_server_name(key or "server", active, limit or 0, free)
            if server is None:
                raise web.HTTPError(
                    400, f"You have at most {limit} named servers, all in use or of other kinds: delete a "
                    "stopped one on your home page first.")  # fmt: skip
        if profile is not None:
            values = {**_remembered(spawner, key), "profile": key}
            image = self.get_argument("image", "") if profile.container is not None else ""
            if image and len(image) <= 255 and image.isprintable():
                values[profile.container.field] = image  # the form selects it only if it is offered
            spawner.prefill_form(server, values)
        path = "spawn/" + quote(user.name, safe="@~") + ("/" + server if server else "")
        self.redirect(self.hub.base_url + path)


# ---------------------------------------------------------------- finished sessions
def _record(spawner) -> dict:
    record = getattr(spawner, "last_ended", None)
    if not record:
        batch = sessions.batch_child(spawner)
        record = getattr(batch, "last_ended", None) if batch is not None and batch is not spawner else None
    return record if isinstance(record, dict) else {}


def ended_job_id(spawner) -> str:
    """The job id of the finished session ``spawner``'s card shows ("" if none)."""
    return str(_record(spawner).get("job_id") or "") if sessions.ended_facts(spawner) else ""


def finished_cards(user) -> dict:
    """:func:`batchspawner.hub.sessions.user_ended` with what a finished session's card adds: the exit
    code, the ended job's log (``log_path``, under the hub's base_url) and ``dismiss_path``."""
    cards = sessions.user_ended(user)
    spawners = getattr(user, "spawners", {}) or {}
    for name, card in cards.items():
        spawner = spawners[name] if name in spawners else None
        code = _record(spawner).get("exit_code") if spawner is not None else None
        where = quote(user.name, safe="@~") + ("/" + quote(name, safe="@~") if name else "")
        card["exit_code"] = code if isinstance(code, int) else None
        card["log_path"] = f"hpc/log/{where}?job={quote(card['job_id'], safe='')}"
        card["dismiss_path"] = f"hpc/dismiss/{where}"
    return cards


_JOB_ID = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")


def forget_ended(spawner) -> None:
    """Forget how ``spawner``'s last job ended, in memory and in its saved state (the caller commits)."""
    spawner.last_ended = None
    batch = sessions.batch_child(spawner)
    if batch is not None and batch is not spawner and hasattr(batch, "last_ended"):
        batch.last_ended = None
    orm = getattr(spawner, "orm_spawner", None)
    state = getattr(orm, "state", None)
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k != "last_ended"}
        child = state.get("child_state")
        if isinstance(child, dict) and "last_ended" in child:
            state["child_state"] = {k: v for k, v in child.items() if k != "last_ended"}
        orm.state = state  # a new dict: the database column sees the change


class DismissHandler(BaseHandler):
    """Dismiss a finished session's card: its owner only (404 for anyone else, admins too)."""

    @web.authenticated
    async def post(self, user_name, server_name=""):
        me = self.current_user
        if me is None or me.name != user_name:
            raise web.HTTPError(404)  # not yours: do not even say whether it exists
        job_id = self.get_body_argument("job_id", "")
        if not _JOB_ID.fullmatch(job_id or ""):
            raise web.HTTPError(400, "job_id: not a job id of a finished session.")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        server_name = server_name or ""
        shown = sessions.user_ended(user).get(server_name)  # loads a stopped server from the database
        spawners = getattr(user, "spawners", {}) or {}
        if shown is None or shown.get("job_id") != job_id or server_name not in spawners:
            raise web.HTTPError(404, "No such finished session.")
        forget_ended(spawners[server_name])
        self.db.commit()
        self.redirect(self.hub.base_url + "home", status=303)


def _tiles_when_asked(user):
    """JupyterHub calls each template_vars callable for every page it renders: the tiles (and a
    site's ``visible`` callables) are worked out only when the home page calls ``hpc_start_tiles()``."""
    return lambda: start_tiles(user)


def template_vars() -> dict:
    """Added to :func:`batchspawner.hub.web.template_vars`: the tiles (``hpc_start_tiles()``), and the
    richer finished cards."""
    return {"hpc_start_tiles": _tiles_when_asked, "hpc_ended": finished_cards}


ROUTES = [
    (r"/hpc/start/?([^/]*)", StartHandler),
    (r"/hpc/dismiss/([^/]+)/?([^/]*)", DismissHandler),
]
