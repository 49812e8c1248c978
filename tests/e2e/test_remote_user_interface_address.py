"""Issue 21 (4): a hub on the host's cluster address without the proxy secret must not start.

A real hub (and its proxy) in a network namespace this test creates, on a veth address that the
host name does not resolve to: what the example calls the cluster address, the one nodes use.
The front end's trust (`trusted_proxy_networks`) and the hub's proxy (`hub_proxy_networks`)
are that address, as the issue's configuration had them. Any local user of that host connects
from that address too, so without `proxy_secret` bob could send `REMOTE_USER: carol` (an admin)
and be carol. The hub must refuse to start, naming the setting; with the secret it starts and
the same forged request gets a 403 and no login.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from conftest import require
from hubharness import Hub


def _sh(*argv, check=True, env=None):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=check, env=env)


class ClusterNetns:
    """A namespace with a veth whose inside end is the host's 'cluster address'."""

    def __init__(self):
        n = random.randint(1, 250)
        self.name = f"jhpc21a-{os.getpid()}-{n}"
        self.host_if, self.ns_if = f"v21r{n}", f"v21c{n}"
        self.root_ip, self.cluster_ip = f"10.216.{n}.1", f"10.216.{n}.5"

    def create(self):
        _sh("ip", "netns", "add", self.name)
        _sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _sh("ip", "link", "set", self.ns_if, "netns", self.name)
        _sh("ip", "addr", "add", f"{self.root_ip}/24", "dev", self.host_if)
        _sh("ip", "link", "set", self.host_if, "up")
        self.run("ip", "addr", "add", f"{self.cluster_ip}/24", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")
        return self

    def run(self, *argv, check=True, env=None):
        return _sh("ip", "netns", "exec", self.name, *argv, check=check, env=env)

    def delete(self):
        _sh("ip", "netns", "delete", self.name, check=False)
        _sh("ip", "link", "delete", self.host_if, check=False)


class NsHub(Hub):
    def __init__(self, workdir, extra_config, ns: ClusterNetns, **kw):
        super().__init__(workdir, extra_config, **kw)
        self.ns = ns
        self.url = f"http://{ns.cluster_ip}:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.command_prefix = ["ip", "netns", "exec", ns.name]

    def stop(self, timeout=30):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()


@pytest.fixture
def cluster_ns():
    require(os.geteuid() == 0 and bool(shutil.which("ip")), "needs root and iproute2 for a network namespace")
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    require(bool(shutil.which("runuser")) and bool(shutil.which("curl")), "runuser/curl missing")
    ns = ClusterNetns()
    try:
        ns.create()
    except subprocess.CalledProcessError as e:
        ns.delete()
        require(False, f"cannot create a network namespace here: {e.stderr}")
    try:
        yield ns
    finally:
        ns.delete()


def _config(ns, secret: bool):
    return f"""
c.JupyterHub.ip = {ns.cluster_ip!r}
c.JupyterHub.hub_ip = {ns.cluster_ip!r}
c.JupyterHub.authenticator_class = 'remote-user'
c.RemoteUserAuthenticator.trusted_proxy_networks = [{ns.cluster_ip + '/32'!r}]
c.RemoteUserAuthenticator.hub_proxy_networks = [{ns.cluster_ip + '/32'!r}]
c.Authenticator.admin_users = {{'carol'}}
c.JupyterHub.default_url = '/hub/home'
"""


def _forge_as_bob(ns, port):
    """bob, a local user of the hub's host, sends carol's name from the host's cluster address."""
    r = ns.run("runuser", "-u", "bob", "--", "curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "20",
               "--interface", ns.cluster_ip, "-H", "REMOTE_USER: carol",
               "-H", f"X-Forwarded-For: {ns.cluster_ip}", f"http://{ns.cluster_ip}:{port}/hub/login", check=False)
    lines = r.stdout.splitlines()
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    return status, r.stdout


def test_cluster_address_without_secret_refuses_to_start(cluster_ns, tmp_path):
    hub = NsHub(tmp_path / "no-secret", _config(cluster_ns, secret=False), cluster_ns,
                env={"REMOTE_USER_PROXY_SECRET": ""})
    try:
        t0 = time.monotonic()
        try:
            hub.start(timeout=60)
        except RuntimeError as e:
            assert "hub exited with 1" in str(e), str(e)
        else:
            # it started: show what that costs (the finding), then fail
            status, head = _forge_as_bob(cluster_ns, hub.port)
            pytest.fail(f"the hub started without proxy_secret on the cluster address {cluster_ns.cluster_ip}; "
                        f"bob's forged REMOTE_USER: carol got HTTP {status}, login cookie set: "
                        f"{'jupyterhub-hub-login' in head}")
        print(f"hub refused to start in {time.monotonic() - t0:.2f} s")
        log = hub.log_text()
        assert f"RemoteUserAuthenticator.trusted_proxy_networks entry {cluster_ns.cluster_ip}/32 includes " \
               f"{cluster_ns.cluster_ip}" in log, log[-3000:]
        assert "RemoteUserAuthenticator.proxy_secret (or $REMOTE_USER_PROXY_SECRET) is not set" in log
        assert "unsafe_trust_local_users" in log
    finally:
        hub.stop()


def test_cluster_address_with_secret_starts_and_refuses_forged_headers(cluster_ns, tmp_path):
    secret = secrets.token_hex(32)
    hub = NsHub(tmp_path / "secret", _config(cluster_ns, secret=True), cluster_ns,
                env={"REMOTE_USER_PROXY_SECRET": secret})
    try:
        hub.start(timeout=90)
        for port in (hub.port, hub.hub_port):  # through the proxy, and straight to the hub
            status, head = _forge_as_bob(cluster_ns, port)
            assert status == 403, head
            assert "jupyterhub-hub-login" not in head
        assert "Refused RemoteUserAuthenticator login: missing, repeated or wrong X-Proxy-Secret" in hub.log_text()
        # the front end (it holds the secret; here root in the namespace, secret via the environment)
        code = ("import os, urllib.request as u, sys\n"
                "class N(u.HTTPRedirectHandler):\n    def redirect_request(self, *a): return None\n"
                f"req = u.Request('http://{cluster_ns.cluster_ip}:{hub.port}/hub/login', headers={{"
                "'REMOTE_USER': 'carol', 'X-Proxy-Secret': os.environ['S']})\n"
                "try:\n    r = u.build_opener(N).open(req); print(r.status, r.headers.get_all('Set-Cookie'))\n"
                "except u.HTTPError as e:\n    print(e.code, e.headers.get_all('Set-Cookie'))\n")
        out = cluster_ns.run(sys.executable, "-c", code, env=dict(os.environ, S=secret)).stdout
        assert out.startswith("302") and "jupyterhub-hub-login" in out, out
        assert hub.api("GET", "/users/carol").json()["admin"] is True
        assert secret not in hub.log_text()
    finally:
        hub.stop()
