"""The README's gateway (jupyterhub_config.example.py as shipped, loaded from a test's wrapper
config) run as a real ``jupyterhub`` subprocess on free loopback ports, for tests that drive it as
a user would: with requests or in a real browser (Playwright + Debian's Chromium).

``ExampleHub(tmp, config_text, user, partitions)`` writes the wrapper config and a random demo
password, starts the hub (output to ``tmp/hub.log``) and waits until its login page answers;
``stop()`` ends only that hub (by its process), ``cleanup(name)`` keeps its log under
test-artifacts/hub-logs and cancels the user's jobs that this hub submitted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time

import requests

import slurmtools
from conftest import require
from hubharness import ARTIFACTS, VENV_BIN, free_port

# the example config plus test additions only: quicker polling, a service for the test's REST calls
# (token from the env); format with example=<path of jupyterhub_config.example.py>
WRAPPER_CONFIG = """
c = get_config()  # noqa
load_subconfig({example!r})
c.SlurmSpawner.status_interval = 2
c.SlurmSpawner.session_interval = 2
c.SlurmSpawner.startup_poll_interval = 0.5
import os  # noqa: E402
c.JupyterHub.services = list(c.JupyterHub.services) + [
    {{"name": "tester", "api_token": os.environ["JHPC_TEST_SERVICE_TOKEN"]}}]
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [
    {{"name": "tester-role", "scopes": ["admin:users", "admin:servers", "read:users"], "services": ["tester"]}}]
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def chromium_page(width=1100, height=900):
    """Headless Debian Chromium through Playwright: ``(browser, page)`` with a 30 s default
    timeout; the browser and Playwright are stopped on leaving."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        page = browser.new_context(viewport={"width": width, "height": height}).new_page()
        page.set_default_timeout(30_000)
        yield browser, page
    finally:
        browser.close()
        pw.stop()


def hub_api(h, method, path, **kw):
    """``method`` on the hub's REST API (``/hub/api`` + ``path``) with the tester service's token;
    ``h`` is a test module's hub dict (``base``, ``token``)."""
    return requests.request(method, h["base"] + "/hub/api" + path, timeout=60,
                            headers={"Authorization": f"token {h['token']}"}, **kw)


def wait_for(check, timeout, what, interval=0.5):
    """``check()``'s first true value; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def hub_login(h, page, user, path="/hub/home"):
    """``page`` at ``path`` of the hub ``h`` (``base``, ``password``), through the login form as
    ``user`` if the hub asks."""
    page.goto(h["base"] + path)
    if "/hub/login" in page.url:
        page.fill("#username_input", user)
        page.fill("#password_input", h["password"])
        page.click("#login_submit")
        page.wait_for_load_state("load")
        if path not in page.url:
            page.goto(h["base"] + path)
    return page


# every Notification a page creates, recorded in window._notes as [title, body] (and still shown by
# the browser); window._noteTimes has each one's Date.now()
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (!Real) { return; }
  window._notes = [];
  window._noteTimes = [];
  function Recorded(title, options) {
    window._notes.push([title, (options || {}).body || ""]);
    window._noteTimes.push(Date.now());
    return new Real(title, options);
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
})();
"""


def notifying_page(browser, origin, width=1100, height=900):
    """A page in a new context of ``browser`` where ``origin`` may show notifications, each one
    recorded (RECORD_NOTIFICATIONS); close it with ``page.context.close()``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["notifications"], origin=origin)
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def start_filler(user, partition, fillers):
    """A running 2-core job of ``user``'s own in ``partition`` (at most 2 cores per node): the next
    start there waits in the queue until it is cancelled. Its id is added to ``fillers``."""
    r = subprocess.run(["sudo", "-u", user, "sbatch", "--parsable", "-p", partition, "-c", "2", "-t", "10",
                        "-J", "jhpc-filler", "-o", "/dev/null", "--wrap", "sleep 600"],
                       capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert r.returncode == 0, r.stderr
    filler = r.stdout.strip().split(";")[0]
    fillers.append(filler)
    wait_for(lambda: slurmtools.job_state(filler) == "RUNNING", 30, "the filler to run")
    return filler


def fill_form(page, profile, **fields):
    """In the spawn form on ``page``: choose ``profile`` and set its fields (select or type)."""
    page.wait_for_selector(f"#profile-radio-{profile}")
    page.check(f"#profile-radio-{profile}")
    for name, value in fields.items():
        sel = f"[name='{profile}.{name}']"
        if page.eval_on_selector(sel, "e => e.tagName") == "SELECT":
            page.select_option(sel, value)
        else:
            page.fill(sel, value)


def require_gateway(user, partition=None, browser=False):
    """Skip (a failure in CI) unless Slurm, the proxy, ``user`` and, if named, ``partition`` and
    Chromium are here."""
    ok, why = slurmtools.available()
    require(ok, why)
    if browser:
        require(os.path.exists(CHROMIUM), "chromium not installed (scripts/setup-browser.sh)")
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    if partition:
        r = subprocess.run(["scontrol", "show", "partition", partition], capture_output=True, text=True, timeout=20)
        require(r.returncode == 0, f"partition {partition} missing (scripts/setup-slurm-partitions.sh)")
    require(subprocess.run(["id", user], capture_output=True).returncode == 0,
            f"user {user} missing (scripts/ensure-users.sh {user})")


class ExampleHub:
    """One gateway hub for ``user`` (the only demo user) on ``partitions`` (JHPC_PARTITIONS).

    ``service_token=True`` puts a random token in JHPC_TEST_SERVICE_TOKEN (for a wrapper config
    that defines a ``tester`` service); ``env`` adds to and ``env_drop`` removes from the hub's
    environment. Its usage log is ``tmp/usage.jsonl``."""

    def __init__(self, tmp, config_text, user, partitions, env=None, env_drop=(), service_token=False):
        self.tmp = tmp
        self.user = user
        self.log_path = tmp / "hub.log"
        self.usage = tmp / "usage.jsonl"
        port, hub_port, api_port = free_port(), free_port(), free_port()
        self.password = secrets.token_urlsafe(12)
        self.token = secrets.token_hex(16) if service_token else None
        (tmp / "pw").write_text(self.password)
        self.cfg = tmp / "jupyterhub_config.py"
        self.cfg.write_text(config_text)
        self.env = dict(os.environ)
        for name in env_drop:
            self.env.pop(name, None)
        self.env.update(
            PATH=f"{VENV_BIN}:{self.env['PATH']}", JHPC_PORT=str(port), JHPC_HUB_PORT=str(hub_port),
            JHPC_PROXY_API_PORT=str(api_port), JHPC_STATE_DIR=str(tmp), JHPC_DEMO_PASSWORD_FILE=str(tmp / "pw"),
            JHPC_DEMO_USERS=user, JHPC_PARTITIONS=partitions, JHPC_USAGE_LOG=str(self.usage),
        )
        if service_token:
            self.env["JHPC_TEST_SERVICE_TOKEN"] = self.token
        self.env.update(env or {})
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(self.log_path, "w")
        self.proc = None
        self.launch()

    def launch(self):
        """Start the hub (again: same config and database, output appended to the same log)."""
        self.proc = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(self.cfg)], cwd=self.tmp,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self.proc

    def up(self):
        """True once the login page answers 200; AssertionError with the log's tail if the hub exited."""
        if self.proc.poll() is not None:
            raise AssertionError("hub exited:\n" + self.log_path.read_text()[-3000:])
        try:
            return requests.get(self.base + "/hub/login", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_up(self, what="the hub"):
        wait_for(self.up, 60, what)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def cleanup(self, artifact_name, extra_jobs=()):
        """Keep the log as test-artifacts/hub-logs/``artifact_name``; cancel the user's live jobs
        this hub submitted, and ``extra_jobs``."""
        text = self.log_path.read_text(errors="replace")
        dest = ARTIFACTS / "hub-logs"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.log_path, dest / artifact_name)
        ours = set(re.findall(r"Job (\d+) submitted", text)) | set(extra_jobs)
        live = slurmtools.live_jobs((self.user,))
        slurmtools.cancel([j for j in ours if j in live])
