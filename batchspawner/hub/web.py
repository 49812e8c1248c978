"""Hub pages for batch sessions: templates this package ships, the job-log page, the admin's sessions page.

Enable them in ``jupyterhub_config.py``::

    import batchspawner.hub.web
    c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
    c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
    c.Spawner.progress_ready_hook = batchspawner.hub.web.ready_or_cancelled

The templates override ``home.html`` (a session card per server), ``spawn_pending.html``
(Cancel; a cancelled or failed start says so and offers Start again) and ``page.html``
(the wall-time warning on every hub page), each extending JupyterHub's own.

Importing this module (``batchspawner.spawner`` does, so every spawner class and wrapspawner do) adds four hub routes:

- ``GET /hub/hpc/log/<user>/<server>``: the current job's log of that server, read as its
  user (``exec_prefix``), for the owner or an admin only (404 for anyone else);
- ``GET /hub/hpc/sessions``: every live batch session across users, for admins (403 otherwise);
- ``GET /hub/hpc/edit/<user>/<server>``: "Edit and launch" of a session card: the spawn form
  pre-filled with that session's values (owner or admin);
- ``GET /hub/hpc/cards``: the current user's session cards and job-ended notes as an HTML
  fragment (the home and spawn pages refresh their cards from it without a reload).

and :mod:`batchspawner.hub.dashboard`'s two: ``GET /hub/hpc/start/<profile>`` (a start tile) and
``POST /hub/hpc/dismiss/<user>/<server>`` (Dismiss on a finished session's card).

Neither runs a scheduler query: the facts come from the shared pollers' caches.
"""

from __future__ import annotations

import json
import os
import re

from jupyterhub import handlers as hub_handlers
from jupyterhub.handlers import BaseHandler
from tornado import web

from batchspawner.core import joblogs
from batchspawner.hub import dashboard, sessions

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


def template_vars() -> dict:
    """Variables the templates read (``hpc_sessions``: the current user's session cards; the
    dashboard's ``hpc_start_tiles`` and finished cards, :mod:`batchspawner.hub.dashboard`)."""
    return {**sessions.template_vars(), **dashboard.template_vars()}


def ready_or_cancelled(spawner, ready_event):
    """``Spawner.progress_ready_hook``: no "Server ready" for a start that was cancelled.

    When a pending start is stopped, JupyterHub cancels the spawn and, for about a second before
    the stop runs, the server looks ready (its spawn is no longer pending, its server record not yet
    gone). The hub's progress stream then sends "Server ready at ...", the spawn page reloads into
    the server's URL and ends on a 424 "Server not running" page. This hook turns that event into
    a "Start cancelled" failure event, which the spawn page shows with a Start again button.

    The hub clears ``_spawn_future`` as soon as a cancelled spawn is done, so that alone does not
    tell: the batch spawner does. Its start() returned (``_starting`` cleared) only for a server
    that came up; a start still marked starting, or without a job, was cancelled.
    """
    future = getattr(spawner, "_spawn_future", None)
    cancelled = future is not None and future.cancelled()
    batch = sessions.batch_child(spawner)
    if batch is not None and (getattr(batch, "_starting", False) or not getattr(batch, "job_id", "")):
        cancelled = True
    if cancelled or getattr(spawner, "pending", None) == "stop" or getattr(spawner, "server", None) is None:
        return {"progress": 100, "failed": True, "cancelled": True, "message": "Start cancelled"}
    return ready_event


class JobLogHandler(BaseHandler):
    """The log of a server's current job, for its owner or an admin."""

    @web.authenticated
    async def get(self, user_name, server_name=""):
        me = self.current_user
        if me is None or (me.name != user_name and not getattr(me, "admin", False)):
            raise web.HTTPError(404)  # not yours: do not even say whether it exists
        user = self.find_user(user_name)
        if user is not None and self.get_argument("job", ""):
            sessions.user_ended(user)  # a finished card's server the hub dropped: loaded from its database
        if user is None or (server_name or "") not in user.spawners:
            raise web.HTTPError(404, "No such server.")
        spawner = user.spawners[server_name or ""]
        batch = sessions.batch_child(spawner)
        wanted = self.get_argument("path", "")
        job = self.get_argument("job", "")  # a finished session's card: that ended job's log
        if job and job != dashboard.ended_job_id(spawner):
            raise web.HTTPError(404, "No such ended job of this server.")
        if (wanted or job) and batch is None and hasattr(spawner, "child_for_stopped_server"):
            # a wrapper whose start failed has no child now: a temporary one like it (not started)
            batch = sessions.batch_child(await spawner.child_for_stopped_server("read a job log"))
        if job and batch is not None:
            wanted = batch.format_log_path(job)
        if wanted and batch is not None:
            # a job that already ended (the failure page links its log): only a log file in this
            # server's own log folder, read as its user like the current job's
            path = self._ended_job_log(batch, wanted)
            job_id = _LOG_JOB.search(os.path.basename(path)).group(1) if _LOG_JOB.search(os.path.basename(path)) else ""
        else:
            if batch is None or not getattr(batch, "job_id", ""):
                raise web.HTTPError(404, "This server has no batch job now.")
            path = batch.log_file or batch.format_log_path(batch.job_id)
            job_id = batch.job_id
        text = await joblogs.read_log(batch, path)
        html = await self.render_template(
            "hpc_log.html",
            job_id=job_id,
            log_path=path,
            text=text,
            missing="The job has not written its log yet (it is created when the job starts), or it was removed.",
        )
        self.finish(html)


    @staticmethod
    def _ended_job_log(batch, wanted: str) -> str:
        """``wanted`` if it is a ``*.log`` file directly in the server's log folder, else HTTP 404."""
        folder = os.path.dirname(batch.format_log_path("0") or "")
        name = os.path.basename(wanted)
        if not folder or os.path.dirname(wanted) != folder or not _LOG_NAME.fullmatch(name):
            raise web.HTTPError(404, "No such log of this server.")
        return os.path.join(folder, name)


_LOG_NAME = re.compile(r"[A-Za-z0-9_@+][A-Za-z0-9_.@+-]{0,200}\.log")
_LOG_JOB = re.compile(r"job(\d+)\.log$")


class SessionsHandler(BaseHandler):
    """Every live batch session across users (admins only), like Open OnDemand's Active Jobs."""

    @web.authenticated
    async def get(self):
        me = self.current_user
        if me is None or not getattr(me, "admin", False):
            raise web.HTTPError(403, "Only admins may list every user's sessions.")
        cards = []
        for user in list(self.users.values()):
            cards.extend(sessions.user_sessions(user))
        cards.sort(key=lambda s: (s["user"], s["server"]))
        self.finish(await self.render_template("hpc_sessions.html", sessions=cards))


class CardsHandler(BaseHandler):
    """The session cards and job-ended notes of one user, as an HTML fragment the home and spawn
    pages fetch every few seconds to stay current without a reload (after Stop, a job that
    started or ended). ``?server=NAME``: that server only; ``?user=NAME``: another user's, for
    admins (404 for anyone else); ``?format=json``: the same facts as JSON (``{"sessions": [...],
    "ended": [...]}``) for scripts. Reads caches only (no scheduler command)."""

    @web.authenticated
    async def get(self):
        me = self.current_user
        name = self.get_argument("user", "") or (me.name if me is not None else "")
        if me is None or (name != me.name and not getattr(me, "admin", False)):
            raise web.HTTPError(404)
        user = self.find_user(name)
        if user is None:
            raise web.HTTPError(404)
        only = self.get_argument("server", None)
        cards = [s for s in sessions.user_sessions(user) if only is None or s["server"] == only]
        ended = [e for n, e in sorted(dashboard.finished_cards(user).items()) if only is None or n == only]
        self.set_header("Cache-Control", "no-store")
        if self.get_argument("format", "") == "json":  # for scripts and monitoring (same rules)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"sessions": cards, "ended": ended}, default=str))
            return
        self.finish(await self.render_template("hpc_cards.html", sessions=cards, ended=ended))


class EditHandler(BaseHandler):
    """"Edit and launch" of a session card: the spawn form of the server the relaunch would start
    (the same one if stopped, a new named server if it runs), pre-filled with that session's
    values. For the owner or an admin (404 for anyone else); nothing is started here."""

    @web.authenticated
    async def get(self, user_name, server_name=""):
        me = self.current_user
        if me is None or (me.name != user_name and not getattr(me, "admin", False)):
            raise web.HTTPError(404)
        user = self.find_user(user_name)
        if user is None or (server_name or "") not in user.spawners:
            raise web.HTTPError(404, "No such server.")
        spawner = user.spawners[server_name or ""]
        facts = sessions.relaunch_facts(spawner)
        if facts is None or not callable(getattr(spawner, "prefill_form", None)):
            raise web.HTTPError(404, "This session's settings cannot be edited here; start a new server instead.")
        spawner.prefill_form(facts["target"], spawner.user_options)
        self.redirect(self.hub.base_url + facts["spawn_path"])


ROUTES = [
    (r"/hpc/log/([^/]+)/?([^/]*)", JobLogHandler),
    (r"/hpc/edit/([^/]+)/?([^/]*)", EditHandler),
    (r"/hpc/sessions", SessionsHandler),
    (r"/hpc/cards", CardsHandler),
    *dashboard.ROUTES,
]


def register():
    """Add the routes to the hub's page handlers (idempotent)."""
    known = {route for route, *_ in hub_handlers.default_handlers}
    for route, handler in ROUTES:
        if route not in known:
            hub_handlers.default_handlers.append((route, handler))


register()
