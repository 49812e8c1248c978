"""The spawner's ssh tunnel (batchspawner/commands/tunnel.py) with a fake Slurm and tests/fakessh/ssh, a FAKE ssh
client that really forwards TCP (no login). The real OpenSSH client and sshd, across network
namespaces, are in tests/e2e/test_tunnel_netns.py."""

import asyncio
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Server

from batchspawner.spawner import SpawnFailed
from batchspawner.commands.tunnel import SshTunnel
from test_slurm_spawner import Cluster, _start_and_report, spawner_with

FAKE_SSH = str(Path(__file__).resolve().parents[2] / "fakessh" / "ssh")


def _fake_ssh_relays() -> set:
    """Pids of tunnel relays that run tests/fakessh/ssh (this module's; the relays outlive their hub)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"batchspawner.commands.tunnelrelay" in argv and FAKE_SSH.encode() in argv:
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_relay_left_behind():
    """A test that fails before closing its tunnel leaves no relay running (the fast tier starts no
    daemon that outlives it): relays this test started are ended after it, by pid."""
    before = _fake_ssh_relays()
    yield
    for pid in _fake_ssh_relays() - before:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


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


def test_argv_forwards_a_private_unix_socket_to_node_port_via_the_login_host():
    tunnel = SshTunnel(login_host="hpc@login1:2222", ssh_options=["IdentityFile=/etc/jh/key"])
    tunnel.remote_host, tunnel.remote_port, tunnel.local_port = "10.1.2.7", 41234, 50000
    tunnel.dir = "/tmp/jhpc-tunnel-x"
    assert tunnel.argv() == ["ssh", "-N", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
                             "-o", "IdentityFile=/etc/jh/key", "-p", "2222",
                             "-L", "/tmp/jhpc-tunnel-x/fwd.sock:10.1.2.7:41234", "--", "hpc@login1"]
    with pytest.raises(Exception, match="Name=value"):
        SshTunnel(ssh_options=["-oProxyCommand evil"])


async def test_start_returns_the_local_end_and_stop_closes_it(echo_server):
    spawner, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    ip, port = await _start_and_report(spawner, echo_server)
    assert ip == "127.0.0.1" and port != echo_server
    assert await _read_through(port) == b"hello from the node\n"
    state = spawner.get_state()
    assert {k: state["tunnel"][k] for k in ("node", "port", "local_port")} == {
        "node": "127.0.0.1", "port": echo_server, "local_port": port}
    assert state["tunnel"]["pid"] == spawner.tunnel._proc.pid and state["tunnel"]["dir"]
    assert oct(os.stat(state["tunnel"]["dir"]).st_mode & 0o777) == "0o700"
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


# ---------------------------------------------------------------- issue 21, items 2 and 3
def _forward(spawner):
    argv = spawner.tunnel.argv()
    return argv[argv.index("-L") + 1]


async def test_tunnel_targets_the_numeric_address_of_the_servers_family(echo_server):
    # the scheduler names the node ("localhost"); the login node would resolve it itself and try
    # ::1 first, where a co-tenant can listen on the same port: the forward names 127.0.0.1
    spawner, _ = _tunnelled(Cluster(["RUNNING localhost None"] * 50))
    await _start_and_report(spawner, echo_server)
    assert spawner.tunnel.remote_host == "127.0.0.1"
    assert _forward(spawner).endswith(f":127.0.0.1:{echo_server}")
    assert "localhost" not in " ".join(spawner.tunnel.argv())
    await spawner.stop(now=True)


def test_ipv6_target_is_bracketed_for_ssh():
    tunnel = SshTunnel(login_host="login1")
    tunnel.remote_host, tunnel.remote_port, tunnel.local_port = "::1", 41234, 50000
    assert _forward(SimpleNamespace(tunnel=tunnel)).endswith(":[::1]:41234")


async def test_restart_adopts_the_tunnel_that_outlived_the_hub(echo_server):
    first, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    _, port = await _start_and_report(first, echo_server)
    state = first.get_state()
    pid = first.tunnel._proc.pid
    # the hub ends without stopping the server: the forward keeps holding the local port
    assert await _read_through(port) == b"hello from the node\n"
    second, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    second.load_state(state)
    assert await second.poll() is None
    assert second.tunnel.is_open and second.tunnel.local_port == port and second.tunnel.pid == pid
    assert await _read_through(port) == b"hello from the node\n"
    await second.tunnel.close()
    with pytest.raises(OSError):
        await _read_through(port)


async def test_restart_with_the_local_port_taken_moves_the_route_never_to_the_taker(echo_server):
    first, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
    _, port = await _start_and_report(first, echo_server)
    state = first.get_state()
    proc = first.tunnel._proc  # the hub host rebooted: the forward is gone
    proc.kill()
    await proc.wait()
    squatter = socket.socket()  # another local user binds the freed port meanwhile
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    squatter.settimeout(0.2)
    try:
        second, _ = _tunnelled(Cluster(["RUNNING 127.0.0.1 None"] * 50))
        second.server = Server(ip="127.0.0.1", port=port, base_url="/user/alice/")  # the saved URL
        second.load_state(state)
        assert await second.poll() is None
        new_port = second.tunnel.local_port
        assert new_port != port and second.tunnel.is_open
        assert f":{new_port}" in await second.get_url() and f":{port}" not in await second.get_url()
        assert second.get_state()["tunnel"]["local_port"] == new_port
        assert second.server.port == new_port  # the server's address (and with a hub, its route) moved
        assert await _read_through(new_port) == b"hello from the node\n"
        with pytest.raises(socket.timeout):
            squatter.accept()  # nothing of the hub's came to the taker
        await second.tunnel.close()
    finally:
        squatter.close()


async def test_a_forward_that_cannot_be_rebuilt_ends_the_server_with_a_message(echo_server, caplog):
    cluster = Cluster(["RUNNING 127.0.0.1 None"] * 50)
    first, _ = _tunnelled(cluster)
    await _start_and_report(first, echo_server)
    state = first.get_state()
    proc = first.tunnel._proc  # the forward is gone and the login node refuses the hub now
    proc.kill()
    await proc.wait()
    second, runner = _tunnelled(cluster)
    second.tunnel.ssh_options = ["FakeFail=1"]
    second.load_state(state)
    assert await second.poll() == 1  # not "running" on a route the hub does not hold
    assert "ending the server of job 123: its ssh tunnel through login1:2222 could not be rebuilt" in caplog.text
    assert "123" in cluster.cancelled and not second.tunnel.is_open
