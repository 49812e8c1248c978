"""Issue 21, item 8: the hub checks a port report instead of trusting the job's wrapper.

- the address a job reports must not be another server's of this hub (same node address and port);
- with ``server_proof`` the hub asks the server a random nonce and only a process holding the
  server's own API token can answer ``HMAC(token, nonce, the address and port it was reached on)``
  (batchspawner/job/proof.py, loaded into jupyter_server by batchspawner-singleuser). A squatter
  without the token cannot answer; one that relays the question to the real server gets an
  answer bound to the real server's address, which the hub refuses.
Real sockets and a real tornado server on loopback; the scheduler is the injected fake runner."""

import asyncio
import json
import socket

import pytest
from tornado import httpserver, web

from batchspawner import SpawnFailed
from batchspawner.job import proof
from batchspawner.hub.api import BatchSpawnerAPIHandler
from test_slurm_spawner import Cluster, PortHandlerStub, _start_and_report, spawner_with

TOKEN = "secret-token-value"  # what tests/unit/helpers.make_spawner gives every spawner


def serve_on_loopback(app):
    """(HTTPServer, base URL) of ``app`` on a free loopback port."""
    server = httpserver.HTTPServer(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def proof_server():
    """A tornado app with the extension's handler, as jupyter_server would serve it."""
    server, url = serve_on_loopback(web.Application(proof.handlers("/user/alice/", TOKEN)))
    yield int(url.rsplit(":", 1)[1])
    server.stop()


@pytest.fixture
def plain_listener():
    """A squatter: listens, answers HTTP 200 to anything, knows no token."""
    async def handle(reader, writer):
        await reader.read(4096)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"mac\": \"00\"}")
        await writer.drain()
        writer.close()

    return handle


async def _serve(handle):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_the_extension_proves_the_token_for_the_address_it_was_reached_on(proof_server):
    await proof.probe("127.0.0.1", proof_server, "/user/alice/", TOKEN, ("127.0.0.1", proof_server))
    with pytest.raises(proof.ProofError, match="wrong answer"):
        await proof.probe("127.0.0.1", proof_server, "/user/alice/", "another-token", ("127.0.0.1", proof_server))
    with pytest.raises(proof.ProofError, match="reached on 127.0.0.1"):
        await proof.probe("127.0.0.1", proof_server, "/user/alice/", TOKEN, ("10.1.2.3", proof_server))


async def test_a_squatter_without_the_token_gets_no_readiness(plain_listener):
    server, port = await _serve(plain_listener)
    try:
        spawner, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"] * 50), server_proof="required")
        with pytest.raises(SpawnFailed, match="could not prove"):
            await _start_and_report(spawner, port)
    finally:
        server.close()


async def test_a_relay_to_the_real_server_is_refused(proof_server):
    # the squatter relays the hub's question to the real server: the answer names the real
    # server's port, not the one the hub asked on
    async def relay(reader, writer):
        r2, w2 = await asyncio.open_connection("127.0.0.1", proof_server)
        w2.write(await reader.read(4096))
        await w2.drain()
        writer.write(await r2.read(65536))
        await writer.drain()
        writer.close()
        w2.close()

    server, port = await _serve(relay)
    try:
        spawner, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"] * 50))
        spawner.server = None
        task = asyncio.ensure_future(spawner.start())
        for _ in range(500):
            if spawner._port_future is not None and spawner.job_id:
                break
            await asyncio.sleep(0.01)
        spawner.report_port(port, proof=True)  # the wrapper said its server answers the proof
        with pytest.raises(SpawnFailed, match="could not prove"):
            await asyncio.wait_for(task, 10)
    finally:
        server.close()


async def test_the_server_that_proves_its_token_is_ready(proof_server):
    spawner, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"] * 50), server_proof="required")
    ip, port = await _start_and_report(spawner, proof_server)
    assert (ip, port) == ("127.0.0.1", proof_server)


async def test_a_port_of_another_server_of_the_hub_is_refused(proof_server, caplog):
    bob, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"] * 50, job_id="7"), name="bob", shared_status=False)
    await _start_and_report(bob, proof_server)
    alice, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"] * 50, job_id="8"), shared_status=False)
    with pytest.raises(SpawnFailed, match="another server"):
        await _start_and_report(alice, proof_server)
    assert "already the address of" in caplog.text
    await bob.stop(now=True)


def _post(spawner, body):
    handler = PortHandlerStub(spawner.user, spawner.api_token, body)
    BatchSpawnerAPIHandler.post(handler)
    return handler


async def test_the_port_api_takes_the_wrappers_proof_claim_and_nothing_else():
    spawner, _ = spawner_with(Cluster(["RUNNING 127.0.0.1 None"]))
    spawner.user.spawners[""] = spawner
    spawner._spawn_pending = True
    spawner._port_future = asyncio.get_running_loop().create_future()
    for bad in ({"port": 4000, "proof": "yes"}, {"port": 4000, "proof": 1}, {"port": 4000, "other": 1}):
        with pytest.raises(web.HTTPError) as e:
            _post(spawner, bad)
        assert e.value.status_code == 400, bad
    handler = _post(spawner, {"port": 4000, "proof": proof.SCHEME})
    assert handler.status == 201 and json.loads(handler.body)["port"] == 4000
    assert spawner._port_future.result() == 4000 and spawner._proof_claimed
