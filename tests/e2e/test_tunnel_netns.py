"""A hub that cannot reach the compute node: real network namespaces, a real sshd, real Slurm.

Layout (everything here is created by the test and removed after it):

    netns "hub side"  (10.215.N.2)          root namespace = "login node" + the Slurm node
    ---------------------------------      ------------------------------------------------
    jupyterhub + its proxy                  sshd on 10.215.N.1 (the login node)
    relay 127.0.0.1:LOCAL -> ssh -L sock:127.0.0.1:PORT   slurmctld/slurmd; the job's server binds 127.0.0.1
                       \\______ veth ______/                 (reachable from this side only)

The hub submits and queries through the login node (submit_hosts over ssh: slurmctld listens
on the root namespace's loopback, which the hub side cannot reach either), jobs report to the
hub at 10.215.N.2 (hub_connect_url), and the hub reaches the server only through the tunnel.
"""

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import slurmtools
import sshdtools
from conftest import require
from hubharness import Hub


def _sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


class Netns:
    def __init__(self):
        n = random.randint(1, 250)
        self.name = f"jhpc15-{os.getpid()}-{n}"
        self.host_if, self.ns_if = f"v15r{n}", f"v15h{n}"
        self.root_ip, self.ns_ip = f"10.215.{n}.1", f"10.215.{n}.2"

    def create(self):
        _sh("ip", "netns", "add", self.name)
        _sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _sh("ip", "link", "set", self.ns_if, "netns", self.name)
        _sh("ip", "addr", "add", f"{self.root_ip}/30", "dev", self.host_if)
        _sh("ip", "link", "set", self.host_if, "up")
        self.run("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")
        return self

    def run(self, *argv, check=True):
        return _sh("ip", "netns", "exec", self.name, *argv, check=check)

    def can_connect(self, host, port) -> bool:
        code = f"import socket,sys; s=socket.socket(); s.settimeout(3); sys.exit(s.connect_ex(({host!r}, {port})))"
        return self.run(sys.executable, "-c", code, check=False).returncode == 0

    def listening(self, port) -> bool:
        return bool(self.run("ss", "-Htln", f"sport = :{port}", check=False).stdout.strip())

    def delete(self):
        _sh("ip", "netns", "delete", self.name, check=False)  # takes the veth pair along
        _sh("ip", "link", "delete", self.host_if, check=False)


class NetnsHub(Hub):
    """The harness's hub, run inside the namespace and reached over the veth."""

    def __init__(self, workdir, extra_config, netns: Netns, **kw):
        super().__init__(workdir, extra_config, **kw)
        self.netns = netns
        self.url = f"http://{netns.ns_ip}:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.command_prefix = ["ip", "netns", "exec", netns.name]

    def stop(self, timeout=30):
        super().stop(timeout)
        deadline = time.monotonic() + 15  # the proxy inside the namespace frees its ports
        while time.monotonic() < deadline and (self.netns.listening(self.port) or self.netns.listening(self.proxy_api_port)):
            time.sleep(0.2)


def _tunnels(local_port, netns=None):
    """PIDs of the processes listening on the hub side's 127.0.0.1:local_port (the tunnel's relay)."""
    argv = ["ss", "-Hltnp", f"src 127.0.0.1:{local_port}"]
    out = (netns.run(*argv, check=False) if netns else _sh(*argv, check=False)).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def _netns_pids(netns):
    return {int(p) for p in _sh("ip", "netns", "pids", netns.name, check=False).stdout.split()}


def _kill(pids, sig=signal.SIGTERM):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def login_node_for(login_user="alice", hosts_file=None):
    """netns + sshd (the login node, in the root namespace); with ``hosts_file`` sshd resolves
    names through that file (a private mount namespace), e.g. a dual-stack ``localhost``."""
    ok, why = slurmtools.available()
    require(ok, why)
    ok, why = sshdtools.available()
    require(ok, why)
    require(shutil.which("ip") is not None and os.geteuid() == 0, "needs root and iproute2 for network namespaces")
    netns = Netns()
    try:
        netns.create()
    except subprocess.CalledProcessError as e:
        netns.delete()
        require(False, f"cannot create a network namespace here: {e.stderr.strip()}")
    key = sshdtools.ClientKey()
    sshd = sshdtools.Sshd(key, login_user=login_user)
    sshd.config.write_text(sshd.config.read_text().replace(
        "ListenAddress 127.0.0.1", f"ListenAddress 127.0.0.1\nListenAddress {netns.root_ip}"))
    hostkey = Path(sshdtools.HOST_KEY + ".pub").read_text().split()
    with key.known_hosts.open("a") as f:
        f.write(f"[{netns.root_ip}]:{sshd.port} {hostkey[0]} {hostkey[1]}\n")
    if hosts_file is None:
        sshd.start()
    else:
        _sh("unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/hosts && exec "$2" -f "$3" -E "$4"', "sshd",
            str(hosts_file), sshdtools.SSHD, str(sshd.config), str(sshd.log))
        deadline = time.monotonic() + 15
        pidfile = sshd.dir / "sshd.pid"
        while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text().strip()):
            time.sleep(0.05)
        sshd.pid = int(pidfile.read_text())
    control = Path(tempfile.mkdtemp(prefix="jhpc-cm15-"))
    try:
        yield netns, key, sshd, control
    finally:
        _kill(_netns_pids(netns))  # hub, proxy, tunnel relays: all started inside it by the test
        sshd.cleanup()
        key.cleanup()
        shutil.rmtree(control, ignore_errors=True)
        netns.delete()


def tunnel_hub_config(netns, key, sshd, control, login_user="alice"):
    login = f"{netns.root_ip}:{sshd.port}"
    ssh_opts = key.ssh_options()
    return f"""
c.JupyterHub.ip = {netns.ns_ip!r}
c.JupyterHub.hub_ip = '0.0.0.0'
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.ip = '127.0.0.1'  # the server binds the node's loopback: only the login side reaches it
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.exec_prefix = '/bin/false'
c.SlurmSpawner.submit_hosts = [{login!r}]
c.SlurmSpawner.ssh_identity_file = {str(key.key)!r}
c.SlurmSpawner.ssh_options = {ssh_opts!r}
c.SlurmSpawner.ssh_control_dir = {str(control)!r}
c.SlurmSpawner.tunnel_login_host = '{login_user}@{login}'
c.SshTunnel.ssh_options = ['BatchMode=yes', 'IdentityFile={key.key}'] + {ssh_opts!r}
"""


@pytest.fixture
def login_node():
    with login_node_for() as node:
        yield node


def test_hub_reaches_the_job_only_through_the_login_node(login_node, tmp_path):
    netns, key, sshd, control = login_node
    config = tunnel_hub_config(netns, key, sshd, control)
    hub = NetnsHub(tmp_path / "hub", config, netns)
    hub.extra_config += f"\nc.JupyterHub.hub_connect_url = 'http://{netns.ns_ip}:{hub.hub_port}'\n"
    hub.start()
    local = 0
    try:
        # the hub side has its own loopback: the node's (where the job's server will bind) is not reachable
        assert not netns.can_connect("127.0.0.1", 6817)
        t0 = time.monotonic()
        r, seconds = hub.spawn("alice", timeout=180)
        assert r.status_code in (201, 202), r.text
        assert (hub.server_model("alice") or {}).get("ready"), hub.log_tail(80)
        state = hub.api("GET", "/users/alice").json()["servers"][""]["state"]
        job_id, tunnel = state["job_id"], state["tunnel"]
        print(f"tunnelled spawn: submit -> ready {seconds:.1f} s (job {job_id}, {tunnel})")
        node_port, local = tunnel["port"], tunnel["local_port"]
        assert hub.user_request("alice", "api").status_code == 200
        # the server answers on the node's loopback (the login side) and nowhere the hub could reach
        with socket.create_connection(("127.0.0.1", node_port), timeout=5):
            pass
        assert not netns.can_connect(netns.root_ip, node_port)
        assert not netns.can_connect("127.0.0.1", node_port) or local == node_port
        first = _tunnels(local, netns)
        assert len(first) == 1, first
        # issue 21: the server proved it holds its own token, through the tunnel, before it was ready
        assert "server proved its token" in hub.log_text(), hub.log_tail(60)

        # hub restart: the tunnel's relay outlives the hub and keeps holding the local port; the
        # first poll adopts it (no moment in which another local user could bind that port)
        hub.restart()
        assert _tunnels(local, netns) == first
        assert hub.server_model("alice")["ready"]
        r = hub.user_request("alice", "api")
        assert r.status_code == 200, (r.status_code, hub.log_tail(60))
        assert "adopted" in hub.log_text()

        # stop: the job is cancelled and the tunnel closed
        assert hub.stop_server("alice")
        assert _tunnels(local, netns) == set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and slurmtools.job_state(job_id) not in ("", "CANCELLED", "COMPLETED"):
            time.sleep(0.5)
        assert slurmtools.job_state(job_id) in ("", "CANCELLED", "COMPLETED")
        print(f"tunnel test total {time.monotonic() - t0:.1f} s")
    finally:
        hub.stop()
        ours = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
        live = slurmtools.live_jobs()
        slurmtools.cancel([j for j in ours if j in live])
        _kill(_tunnels(local, netns) if local else ())  # only if the test failed before the stop
