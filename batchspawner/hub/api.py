"""The hub side of the port callback: ``POST /hub/api/batchspawner``.

The job's wrapper (``batchspawner-singleuser``) reports the port its own server
already listens on (it checks /proc for the server's listening socket first), so
the report also says "ready to connect": the spawner then connects once instead
of probing. Authenticated with the server's own API token. The handler accepts exactly ``{"port": N}``
with 1 <= N <= 65535 (plus ``"proof": "hmac-sha256-v1"`` when the wrapper checked that its
server answers the hub's proof, batchspawner/job/proof.py), only from the token of a server that is starting and
waiting for a port, and only once. It never sets any other attribute on the
spawner (jupyterhub/batchspawner 1.3 set *any* key it was sent, which let a
user's server token rewrite ``exec_prefix``).

The same route takes ``{"event": "ended"}`` from the job's wrapper when its server has ended
(issue 24): the spawner then looks at the job at once (polling stays the source of truth; the
report alone never ends a server). After a hub restart, a server's token is recognised by the
SHA-256 kept in the spawner's state (JupyterHub does not keep the plain token), so an adopted
pending start takes its job's report.

``GET`` on the route, with a server's own token, answers that server's job's wall time (time
left, whether to warn now: ``BatchSpawnerBase.walltime_warning``) for the banner its JupyterLab
shows (issue 26; the job side is in batchspawner/job/proof.py).

Importing this module (which ``batchspawner.spawner`` does, and so does naming
a spawner through its entry point) adds the route to the hub.
"""

from __future__ import annotations

import hmac
import json

from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web

from batchspawner.job import proof
from batchspawner.hub import sessions

ROUTE = r"/api/batchspawner"
# {"port": 65535} is 15 bytes; anything much longer is not a port report
MAX_BODY = 1024


def _find_spawner(user, token):
    """The user's spawner whose server token is ``token``, or None."""
    for spawner in user.spawners.values():
        api_token = getattr(spawner, "api_token", "") or ""
        if api_token and hmac.compare_digest(api_token.encode(), token.encode()):
            return spawner
    for spawner in user.spawners.values():
        # issue 24: after a hub restart a server's token is known only by its SHA-256 (saved in
        # the spawner's state at submission); the job's own report brings the token back
        target = _port_target(spawner)
        owns = getattr(target, "owns_server_token", None)
        if not getattr(spawner, "api_token", "") and owns is not None and owns(token):
            spawner.api_token = token
            target.api_token = token
            return spawner
    return None


def _port_target(spawner):
    """The spawner that waits for the port: follow wrappers down to their child."""
    seen = 0
    while seen < 5:
        child = getattr(spawner, "child_spawner", None)
        if child is None:
            break
        spawner = child
        seen += 1
    return spawner if callable(getattr(spawner, "report_port", None)) else None


class BatchSpawnerAPIHandler(APIHandler):
    """Receives the port a batch job's server listens on."""

    def check_xsrf_cookie(self):
        # token-authenticated API call from the job, no browser cookie involved
        return

    @web.authenticated
    def get(self):
        """The wall time of the token's own server's job (issue 26: the in-Lab banner): the job's
        server asks with its own token; the answer comes from the hub's caches (no scheduler query)."""
        user = self.current_user
        if user is None or getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "Only a user's server token may ask about its job.")
        spawner = _find_spawner(user, self.get_auth_token() or "")
        if spawner is None:
            raise web.HTTPError(403, "This token does not belong to a server of this user.")

        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(sessions.walltime_answer(spawner)))

    @web.authenticated
    def post(self):
        user = self.current_user
        if user is None or getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "Only a user's server token may report a port.")
        token = self.get_auth_token() or ""
        spawner = _find_spawner(user, token)
        if spawner is None:
            raise web.HTTPError(403, "This token does not belong to a server of this user.")
        body = self.request.body or b"null"
        if len(body) > MAX_BODY:
            raise web.HTTPError(400, "Body must be exactly {\"port\": <integer 1-65535>}.")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested far too deep, still the sender's fault
            raise web.HTTPError(400, "Body must be JSON: {\"port\": <integer>}.")
        if isinstance(data, dict) and "event" in data:
            # issue 24: the job's wrapper says its server ended; the hub looks at the job now
            if set(data) != {"event"} or data["event"] != "ended":
                raise web.HTTPError(400, "An event report must be exactly {\"event\": \"ended\"}.")
            target = _port_target(spawner)
            heard = getattr(target, "job_end_reported", None)
            if heard is None or not heard():
                raise web.HTTPError(409, "This server has no running job to look at.")
            self.set_status(202)
            self.finish(json.dumps({"message": "the hub looks at the job now"}))
            return None
        if not isinstance(data, dict) or "port" not in data or not set(data) <= {"port", "proof"}:
            raise web.HTTPError(400, "Body must be exactly {\"port\": <integer 1-65535>} "
                                     f"(and optionally \"proof\": \"{proof.SCHEME}\").")
        port = data["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise web.HTTPError(400, "port must be an integer from 1 to 65535.")
        if "proof" in data and data["proof"] != proof.SCHEME:
            raise web.HTTPError(400, f"proof must be \"{proof.SCHEME}\" (the only scheme this hub checks).")
        if not getattr(spawner, "_spawn_pending", False):
            # a ready server never takes a second report (a requeued job is a pending start again
            # once the hub has seen it back in the queue: issue 24)
            raise web.HTTPError(403, "This server is not starting.")
        target = _port_target(spawner)
        if target is None:
            raise web.HTTPError(404, "This server does not take port reports.")
        # raises 403 when a port was already reported; the spawner then checks the address
        # (no other server of this hub on it) and, when asked to or required, the proof
        target.report_port(port, proof="proof" in data)
        self.set_status(201)
        self.finish(json.dumps({"message": "port accepted", "port": port}))


def register():
    """Add the route to JupyterHub's API handlers (idempotent)."""
    for route, handler in apihandlers.default_handlers:
        if route == ROUTE:
            return
    apihandlers.default_handlers.append((ROUTE, BatchSpawnerAPIHandler))


register()
