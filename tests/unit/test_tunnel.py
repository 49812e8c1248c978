"""The spawner's ssh tunnel (batchspawner/tunnel.py) with a fake Slurm and tests/fakessh/ssh, a FAKE ssh
client that really forwards TCP (no login). The real OpenSSH client and sshd, across network
namespaces, are in tests/e2e/test_tunnel_netns.py."""

import asyncio
from pathlib import Path

import pytest

from batchspawner.spawner import SpawnFailed
from batchspawner.tunnel import SshTunnel
from test_slurm_spawner import Cluster, _start_and_report, spawner_with

FAKE_SSH = str(Path(__file__).resolve().parents[1] / "fakessh" / "ssh")


@pytest.fixture
async def echo_server():
    async def handle(reader, writer):
        writer.write(b"hello from the node\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _read_through(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return data


def _tunnelled(cluster, **traits):
    spawner, runner = spawner_with(cluster, tunnel_login_host="login1:2222", **traits)
    spawner.tunnel.ssh_command = FAKE_SSH
    return spawner, runner


def test_argv_forwards_a_local_port_to_node_port_via_the_login_host():
    tunnel = SshTunnel(login_host="hpc@login1:2222", ssh_options=["IdentityFile=/etc/jh/key"])
    tunnel.remote_host, tunnel.remote_port, tunnel.local_port = "node7", 41234, 50000
    assert tunnel.argv() == ["ssh", "-N", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "IdentityFile=/etc/jh/key",
                             "-p", "2222", "-L", "127.0.0.1:50000:node7:41234", "--", "hpc@login1"]
    with pytest.raises(Exception, match="Name=value"):
        SshTunnel(ssh_options=["-oProxyCommand evil"])


async def test_start_returns_the_local_end_and_stop_closes_it(echo_server):
    spawner, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    ip, port = await _start_and_report(spawner, echo_server)
    assert ip == "127.0.0.1" and port != echo_server
    assert await _read_through(port) == b"hello from the node\n"
    state = spawner.get_state()
    assert state["tunnel"] == {"node": "127.0.0.1", "port": echo_server, "local_port": port}
    assert any("through login1:2222" in e["message"] for e in spawner._events)
    proc = spawner.tunnel._proc
    await spawner.stop(now=True)
    assert proc.returncode is not None and not spawner.tunnel.is_open
    with pytest.raises(OSError):
        await _read_through(port)


async def test_restart_reopens_on_the_same_local_port(echo_server):
    first, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    _, port = await _start_and_report(first, echo_server)
    state = first.get_state()
    await first.tunnel.close()  # the old hub is gone, and its ssh with it
    with pytest.raises(OSError):
        await _read_through(port)
    second, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    second.load_state(state)
    assert not second.tunnel.is_open
    assert await second.poll() is None  # the first poll of a running job reopens it
    assert second.tunnel.is_open and second.tunnel.local_port == port
    assert await _read_through(port) == b"hello from the node\n"
    await second.tunnel.close()


async def test_job_seen_ended_closes_the_tunnel(echo_server):
    cluster = Cluster(["RUNNING 127.0.0.1 None"] * 10)
    spawner, _ = _tunnelled(cluster, shared_status=False)  # one query per poll
    await _start_and_report(spawner, echo_server)
    proc = spawner.tunnel._proc
    cluster.states = ["COMPLETED 127.0.0.1 None"]
    assert await spawner.poll() == 1
    assert proc.returncode is not None and not spawner.tunnel.is_open


async def test_ssh_that_died_is_reopened_by_poll(echo_server):
    spawner, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 10))
    await _start_and_report(spawner, echo_server)
    assert spawner.tunnel.is_open
    spawner.tunnel._proc.terminate()  # ssh died: the next poll of the running job reopens it
    await spawner.tunnel._proc.wait()
    assert await spawner.poll() is None and spawner.tunnel.is_open
    await spawner.tunnel.close()


async def test_ssh_that_fails_fails_the_spawn_with_a_message(echo_server):
    spawner, runner = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    spawner.tunnel.ssh_options = ["FakeFail=1"]
    with pytest.raises(SpawnFailed, match="through the login node login1:2222: ssh to login1:2222 ended: ssh: connect"):
        await _start_and_report(spawner, echo_server)
    assert not spawner.tunnel.is_open


def test_no_login_host_no_tunnel():
    spawner, _ = spawner_with(Cluster([]))
    assert spawner.tunnel is None and "tunnel" not in spawner.get_state()
