"""Issue 21 (9): the spawn-body gate answers 413 before the route's own handler runs.

A real tornado server on loopback with the gate in front of a recording handler (standing in
for JupyterHub's, which would store the options); requests over a real socket."""

from __future__ import annotations

import json
import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from batchspawner.hub.bodylimit import ROUTE, SpawnBodyGate, limit_spawn_bodies


class Recorder(web.RequestHandler):
    seen: list = []

    def check_xsrf_cookie(self):
        pass

    def post(self, *args):
        Recorder.seen.append(len(self.request.body))
        self.write("stored")

    put = patch = post


async def _raw(port, method, path, body: bytes, chunked=False):
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    if chunked:
        writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        writer.write(b"0\r\n\r\n")
    else:
        writer.write((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    try:
        await writer.drain()
    except ConnectionError:
        pass
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:  # the server closed while we were still sending
        pass
    writer.close()
    return data


@pytest.fixture
async def server():
    Recorder.seen = []
    gate = SpawnBodyGate(4096)
    app = web.Application([("/hub" + ROUTE, gate), (r"/hub/(.*)", Recorder)])
    socks = bind_sockets(0, "127.0.0.1")
    srv = HTTPServer(app)
    srv.add_sockets(socks)
    yield socks[0].getsockname()[1]
    srv.stop()


@pytest.mark.parametrize("method,path", [
    ("POST", "/hub/api/users/alice/servers/big"),
    ("PUT", "/hub/api/users/alice/servers/big"),
    ("PATCH", "/hub/api/users/alice/servers/big"),
    ("POST", "/hub/api/users/alice/server"),
    ("POST", "/hub/spawn/alice/big"),
    ("POST", "/hub/spawn"),
])
async def test_oversized_body_is_413_and_never_reaches_the_handler(server, method, path):
    body = json.dumps({"user_options": {"x": "A" * 100_000}}).encode()
    answer = await _raw(server, method, path, body)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"user_options (the request body) is" in payload and b"at most 4096 bytes" in payload
    assert Recorder.seen == []


async def test_small_bodies_and_other_routes_pass(server):
    answer = await _raw(server, "POST", "/hub/api/users/alice/servers/ok", b'{"user_options": {}}')
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"stored")
    answer = await _raw(server, "POST", "/hub/api/users/alice/tokens", b"B" * 100_000)  # not a server route
    assert answer.startswith(b"HTTP/1.1 200")
    assert Recorder.seen == [20, 100_000]


async def test_chunked_oversized_body_is_cut_at_the_limit(server):
    answer = await _raw(server, "POST", "/hub/spawn/alice", b"C" * 100_000, chunked=True)
    # tornado answers 400 and closes (the answer may be lost to the reset while we still send)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert Recorder.seen == []
    answer = await _raw(server, "POST", "/hub/spawn/alice", b"C" * 1000, chunked=True)  # under the limit
    assert answer.startswith(b"HTTP/1.1 200") and Recorder.seen == [1000]


def test_registered_first_in_the_hubs_routes_and_limit_validated():
    from jupyterhub import handlers

    import batchspawner.spawner  # noqa: F401  (registers the gate)

    assert isinstance(handlers.default_handlers[0][1], SpawnBodyGate)
    assert sum(isinstance(h[1], SpawnBodyGate) for h in handlers.default_handlers) == 1
    with pytest.raises(ValueError, match="limit_spawn_bodies"):
        limit_spawn_bodies(10)
