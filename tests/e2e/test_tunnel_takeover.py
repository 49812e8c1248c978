"""Issue 21, items 2 and 3: the ssh tunnel must reach only the job's own server, and the proxy's
route must never point at a local port the hub does not hold. Real Slurm, real OpenSSH, real
network namespace (tests/e2e/test_tunnel_netns.py), a real second local user (bob).

2. The login node (sshd) resolves ``localhost`` to ``::1`` first (a dual-stack node: sshd runs with
   its own /etc/hosts naming ::1 and 127.0.0.1). The victim's server binds 127.0.0.1:P; bob, on the
   node, takes [::]:P (tests/e2e/squatter.py learns P from /proc/net/tcp). A tunnel forwarding to
   the *name* reached bob: he got the hub's readiness check and the victim's requests.
3. The hub host loses the tunnel's local port L (its holder is killed, as on a host reboot or a
   service manager that kills the hub's whole group), bob binds 127.0.0.1:L on the hub host, and
   the hub restarts: the route must move to a port the hub holds (or the server end with a
   message), never reach bob.
"""

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squattertools import jsonl, squatting
from test_tunnel_netns import NetnsHub, _kill, _tunnels, login_node_for, tunnel_hub_config

HERE = Path(__file__).parent
VICTIM = "sqvictim"  # a user no other test spawns for: the squatter attacks every port of its uid


@pytest.fixture
def dual_stack_login(shared_dir):
    hosts = shared_dir / "hosts"
    hosts.write_text("::1 localhost\n127.0.0.1 localhost\n")
    with login_node_for(login_user=VICTIM, hosts_file=hosts) as node:
        yield node


def _hub(tmp_path, node):
    netns, key, sshd, control = node
    hub = NetnsHub(tmp_path / "hub", tunnel_hub_config(netns, key, sshd, control, login_user=VICTIM), netns)
    hub.extra_config += f"\nc.JupyterHub.hub_connect_url = 'http://{netns.ns_ip}:{hub.hub_port}'\n"
    return hub


def _finish(hub, netns):
    try:
        hub.stop_server(VICTIM, timeout=60)
    finally:
        hub.stop()
        import re

        import slurmtools

        ours = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
        live = slurmtools.live_jobs()
        slurmtools.cancel([j for j in ours if j in live])


def test_a_squatter_on_the_names_other_family_gets_no_readiness_and_no_request(dual_stack_login, tmp_path, shared_dir):
    netns, key, sshd, control = dual_stack_login
    victim = pwd.getpwnam(VICTIM)
    with squatting(shared_dir, victim, "300") as out:
        hub = _hub(tmp_path, dual_stack_login)
        try:
            hub.start()
            r, seconds = hub.spawn(VICTIM, timeout=240)
            assert r.status_code in (201, 202), r.text
            model = hub.server_model(VICTIM)
            answers = [hub.user_request(VICTIM, "api") for _ in range(3)] if model and model.get("ready") else []
            time.sleep(1)
            received = jsonl(out / "requests.jsonl")
            assert received == [], f"bob's listener received {len(received)} request(s): {received[:3]}"
            log = hub.log_text()
            assert model and model.get("ready"), hub.log_tail(80)
            assert all(a.status_code == 200 and "squatter" not in a.text for a in answers), [a.text for a in answers]
            tunnel = model["state"]["tunnel"]
            port = tunnel["port"]
            # the forward names the numeric address of the server's family, never the node's name
            assert tunnel["node"] == "127.0.0.1", tunnel
            assert "fwd.sock:127.0.0.1:" in log and ":localhost:" not in log
            assert "server proved its token" in log
            # the attack really ran: bob holds the victim's port on the other family
            bound = jsonl(out / "bound.jsonl")
            assert any(b["port"] == port and b["address"] in ("::", "::1") for b in bound), (port, bound)
        finally:
            _finish(hub, netns)


def test_after_a_restart_with_the_local_port_taken_no_route_reaches_the_taker(dual_stack_login, tmp_path, shared_dir):
    netns, key, sshd, control = dual_stack_login
    script = shared_dir / "takeover_listener.py"
    script.write_text((HERE / "takeover_listener.py").read_text())
    script.chmod(0o755)
    taken = shared_dir / "taken.jsonl"
    hub = _hub(tmp_path, dual_stack_login)
    taker = None
    try:
        hub.start()
        r, seconds = hub.spawn(VICTIM, timeout=240)
        assert r.status_code in (201, 202), r.text
        model = hub.server_model(VICTIM)
        assert model and model.get("ready"), hub.log_tail(80)
        local = model["state"]["tunnel"]["local_port"]
        hub.stop()
        # the hub host loses whatever held the local port (a reboot; a service manager killing the
        # hub's group); bob takes 127.0.0.1:L at once
        _kill(_tunnels(local, netns), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _tunnels(local, netns) and time.monotonic() < deadline:
            time.sleep(0.05)
        taker = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, "sudo", "-u", "bob", "/usr/bin/python3", str(script),
             str(local), str(taken), "300"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while not Path(str(taken) + ".bound").exists():
            assert taker.poll() is None, taker.stderr.read().decode()
            assert time.monotonic() < deadline, "bob could not bind the port"
            time.sleep(0.05)

        hub.start()
        deadline = time.monotonic() + 60
        model = hub.server_model(VICTIM)
        while time.monotonic() < deadline and model and not model.get("ready"):
            time.sleep(0.25)
            model = hub.server_model(VICTIM)
        answers = [hub.user_request(VICTIM, "api") for _ in range(3)]
        received = jsonl(taken)
        assert received == [], f"bob's listener received {len(received)} request(s): {received[:3]}"
        log = hub.log_text()
        # this spawner rebinds another port and the route follows it (ending the server with a
        # message would also be safe, but is not what it does when a port can be bound)
        assert model and model.get("ready"), hub.log_tail(60)
        new_local = model["state"]["tunnel"]["local_port"]
        assert new_local != local, hub.log_tail(60)
        assert "is held by another process now; the server's route moves" in log
        assert all(a.status_code == 200 and "taker" not in a.text for a in answers), [a.text for a in answers]
        print(f"route moved from 127.0.0.1:{local} (taken by bob) to 127.0.0.1:{new_local}")
    finally:
        if taker is not None:
            taker.terminate()  # sudo passes it on to bob's python
            try:
                taker.wait(10)
            except subprocess.TimeoutExpired:
                taker.kill()
        _finish(hub, netns)
