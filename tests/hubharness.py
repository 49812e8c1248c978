"""A real JupyterHub (and its configurable-http-proxy) for end-to-end tests.

``Hub(tmp_path, extra_config).start()`` writes a config on free loopback
ports, starts ``jupyterhub`` from the test venv as a subprocess, and waits for
its API. The ``tester`` service token (random per hub, passed through the
environment, never written to disk) drives it through the REST API.
``stop()`` ends only the hub we started (by PID); the hub ends its proxy.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASE_CONFIG = """
import os
c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{proxy_api_port}'
c.ConfigurableHTTPProxy.pid_file = '{workdir}/proxy.pid'
c.JupyterHub.db_url = 'sqlite:///{workdir}/hub.sqlite'
c.JupyterHub.cookie_secret_file = '{workdir}/cookie_secret'
c.JupyterHub.pid_file = '{workdir}/hub.pid'
c.JupyterHub.cleanup_servers = False
c.JupyterHub.authenticator_class = 'dummy'
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{'name': 'tester', 'api_token': os.environ['JHPC_TEST_SERVICE_TOKEN']}}]
c.JupyterHub.load_roles = [{{
    'name': 'tester-role',
    'scopes': ['admin:users', 'admin:servers', 'read:users', 'tokens', 'access:servers', 'admin:groups'],
    'services': ['tester'],
}}]
"""


class Hub:
    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None, env: dict | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.port = port or free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.token = secrets.token_hex(16)
        self.extra_config = extra_config
        self.extra_env = env or {}
        self.proc = None
        self.command_prefix: list[str] = []  # e.g. ["ip", "netns", "exec", NS] (tests/e2e/test_tunnel_netns.py)
        self.log_path = self.workdir / "hub.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/hub/api"

    def write_config(self):
        cfg = BASE_CONFIG.format(
            port=self.port,
            hub_port=self.hub_port,
            proxy_api_port=self.proxy_api_port,
            workdir=self.workdir,
        ) + "\n" + textwrap.dedent(self.extra_config)
        path = self.workdir / "jupyterhub_config.py"
        path.write_text(cfg)
        return path

    def start(self, timeout: float = 60):
        cfg = self.write_config()
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', os.defpath)}"
        env["JHPC_TEST_SERVICE_TOKEN"] = self.token
        env.update(self.extra_env)
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [*self.command_prefix, str(VENV_BIN / "jupyterhub"), "-f", str(cfg), "--debug"],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.api_url, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"hub did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        # wait for the proxy to free its ports, so a restart can bind them again
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (_port_free(self.port) and _port_free(self.proxy_api_port)):
            time.sleep(0.2)
        self._log.close()

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=60):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    # ------------------------------------------------------------ REST API
    def api(self, method, path, token=None, **kw):
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {token or self.token}"
        kw.setdefault("timeout", 30)
        return requests.request(method, self.api_url + path, headers=headers, **kw)

    def ensure_user(self, name):
        r = self.api("GET", f"/users/{name}")
        if r.status_code == 404:
            r = self.api("POST", f"/users/{name}")
            assert r.status_code == 201, r.text
        return self.api("GET", f"/users/{name}").json()

    def server_model(self, name, server=""):
        user = self.api("GET", f"/users/{name}").json()
        return user.get("servers", {}).get(server)

    def spawn(self, name, options=None, server="", timeout=180):
        """POST the server and wait until it is ready; returns (response, seconds)."""
        self.ensure_user(name)
        path = f"/users/{name}/server" if not server else f"/users/{name}/servers/{server}"
        t0 = time.monotonic()
        r = self.api("POST", path, json=options or {})
        if r.status_code not in (201, 202):
            return r, time.monotonic() - t0
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            model = self.server_model(name, server)
            if model and model.get("ready"):
                return r, time.monotonic() - t0
            if model is None or (not model.get("pending") and not model.get("ready")):
                break
            time.sleep(0.25)
        return r, time.monotonic() - t0

    def wait_stopped(self, name, server="", timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_model(name, server) is None:
                return True
            time.sleep(0.25)
        return False

    def stop_server(self, name, server="", timeout=120):
        path = f"/users/{name}/server" if not server else f"/users/{name}/servers/{server}"
        r = self.api("DELETE", path)
        assert r.status_code in (202, 204, 404), r.text
        return self.wait_stopped(name, server, timeout)

    def user_request(self, name, path="api", server=""):
        """A request through the proxy to the user's server (as the tester service)."""
        prefix = f"/user/{name}/" + (f"{server}/" if server else "")
        return requests.get(
            self.url + prefix + path, headers={"Authorization": f"token {self.token}"}, timeout=30
        )

    def login_session(self, user):
        """A browser session of ``user``, logged in through the login form (the dummy
        authenticator takes any password); asserts the form answered with a redirect."""
        s = requests.Session()
        page = s.get(f"{self.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        data = {"username": user, "password": "any"}
        if xsrf:
            data["_xsrf"] = xsrf.group(1)
        r = s.post(f"{self.url}/hub/login?next=/hub/home", data=data, allow_redirects=False, timeout=30)
        assert r.status_code == 302, (r.status_code, r.text[:300])
        return s


def _port_free(port):
    """True when nothing listens on the port (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
