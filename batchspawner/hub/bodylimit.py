"""Refuse oversized server-option bodies before JupyterHub reads, parses or stores them (issue 21).

JupyterHub stores ``user_options`` as they arrive: ``POST /hub/api/users/:name/server(s)/:server``
and the spawn form save them in the database (and create the named server's row) before the
spawner sees them; ``PATCH`` logs them whole. A refused 20 MB value grew the database and its
WAL by 42 MB each, and four in parallel stalled the hub's event loop for 3.4 s.

:func:`limit_spawn_bodies` puts a gate in front of those routes: a tornado router consulted
first, when a request's headers have arrived and before its body is read. A request whose
``Content-Length`` is above the limit gets HTTP 413 naming ``user_options`` and the limit;
its body is read and thrown away chunk by chunk (no buffering; a proxy in front still gets a
whole answer), so JupyterHub's handler never runs: nothing parsed, nothing stored, no row.
A body without ``Content-Length`` (chunked) is cut by tornado at the limit (HTTP 400).

Registered with :data:`DEFAULT_MAX_BYTES` when ``batchspawner.spawner`` is imported (every
configuration that uses a batch spawner); a config may call ``limit_spawn_bodies(n)`` again
to change it. Other routes keep tornado's own limit.
"""

from __future__ import annotations

import html
import json
import logging

from tornado import httputil
from tornado.routing import Router

DEFAULT_MAX_BYTES = 64 * 1024

# JupyterHub's routes that take server options (joined to the hub's prefix by JupyterHub)
ROUTE = r"/(?:api/users/[^/]+/servers?(?:/[^/]*)?|spawn(?:/[^/]+){0,2})/?"

log = logging.getLogger("JupyterHub")


class _Refusal(httputil.HTTPMessageDelegate):
    """Reads and drops the body, then answers 413: the handler never sees the request."""

    def __init__(self, request, length, limit):
        self.request, self.length, self.limit = request, length, limit

    def data_received(self, chunk):
        return None  # dropped: never buffered

    def finish(self):
        path = self.request.path
        message = (f"user_options (the request body) is {self.length} bytes; this hub accepts at most "
                   f"{self.limit} bytes of server options (batchspawner.hub.bodylimit.limit_spawn_bodies). "
                   "Send fewer or shorter options.")
        if "/api/" in path:
            body = json.dumps({"status": 413, "message": message}).encode()
            ctype = "application/json"
        else:
            body = (f"<!DOCTYPE html><html><head><title>413 Options too large</title></head><body>"
                    f"<h1>Options too large</h1><p>{html.escape(message)}</p></body></html>").encode()
            ctype = "text/html; charset=UTF-8"
        log.warning("413 %s %s: body of %d bytes refused before JupyterHub read it (limit %d)",
                    self.request.method, path[:200], self.length, self.limit)
        headers = httputil.HTTPHeaders({"Content-Type": ctype, "Content-Length": str(len(body)),
                                        "Cache-Control": "no-store"})
        conn = self.request.connection
        conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"), headers, body)
        conn.finish()

    def on_connection_close(self):
        return None


class SpawnBodyGate(Router):
    """A router that answers only for oversized bodies; for any other request it returns None,
    and tornado goes on to the next rule (JupyterHub's own handler)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)

    def find_handler(self, request, **kwargs):
        length = request.headers.get("Content-Length")
        if length is None:
            if request.headers.get("Transfer-Encoding") and request.connection is not None:
                request.connection.set_max_body_size(self.max_bytes)
            return None
        try:
            length = int(length)
        except ValueError:
            return None  # tornado refuses it itself
        if length <= self.max_bytes:
            return None
        return _Refusal(request, length, self.max_bytes)


_gate = SpawnBodyGate()


def limit_spawn_bodies(max_bytes: int = DEFAULT_MAX_BYTES) -> SpawnBodyGate:
    """Refuse server-option bodies above ``max_bytes`` (HTTP 413) before JupyterHub reads them.

    Idempotent; call it in jupyterhub_config.py to change the limit (at least 1 KiB)."""
    if int(max_bytes) < 1024:
        raise ValueError(f"limit_spawn_bodies(max_bytes={max_bytes!r}): use at least 1024 bytes")
    _gate.max_bytes = int(max_bytes)
    from jupyterhub import handlers as hub_handlers

    routes = hub_handlers.default_handlers
    if not any(target is _gate for _, target, *rest in routes):
        routes.insert(0, (ROUTE, _gate))  # first: consulted before JupyterHub's own handlers
    return _gate


limit_spawn_bodies()
