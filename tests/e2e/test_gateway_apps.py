"""The gateway's admins and apps (issue 26), on the README's gateway config in a real browser.

One hub runs jupyterhub_config.example.py as ``bash scripts/gateway`` does (through the
ExampleHub harness), with ``JHPC_ADMIN_USERS`` naming ``bob`` and his admin password in a 0600
file; ``erin`` is the user. tests/e2e/test_apps_e2e.py covers the apps' own security (other users,
sockets, the generic web app) on examples/apps/ alone; this module covers the gateway side:

- an admin (logged in with the admin password) sees "Sessions (all users)" in the navbar and the
  page behind it, with erin's live sessions; erin sees no link and gets 403 on the URL; bob cannot
  log in with the users' shared password; a bad name in JHPC_ADMIN_USERS stops the hub (and scripts/gateway)
  with a message, before anything runs; a name taken off the list is no admin after the hub's
  restart, even with the browser cookie it had;
- the spawn form offers the Jupyter profiles and VS Code and the desktop next to each other; the
  VS Code profile lands on code-server's workbench, the desktop profile on noVNC connected to an
  Xfce session whose screen follows the browser window's size; stopping both ends their jobs and
  the desktop's processes.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from conftest import require
from gatewaytools import (
    CHROMIUM, CHROMIUM_ARGS, WRAPPER_CONFIG, ExampleHub, fill_form, require_gateway, wait_for,
)
from hubharness import ARTIFACTS, VENV_BIN

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "jupyterhub_config.example.py"
SHOTS = REPO / "docs" / "screenshots"
USER = "erin"
ADMIN = "bob"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    require_gateway(USER, browser=True)
    require(subprocess.run(["id", ADMIN], capture_output=True).returncode == 0,
            f"user {ADMIN} missing (scripts/ensure-users.sh {ADMIN})")
    tmp = tmp_path_factory.mktemp("gateway-apps")
    admin_pw = tmp / "admin-pw"
    admin_password = secrets.token_urlsafe(32)
    admin_pw.write_text(admin_password)
    admin_pw.chmod(0o600)
    hub = ExampleHub(tmp, WRAPPER_CONFIG.format(example=str(EXAMPLE)), USER, "debug",
                     env={"JHPC_ADMIN_USERS": f" {ADMIN}, ", "JHPC_DEMO_ADMIN_PASSWORD_FILE": str(admin_pw)},
                     env_drop=("JHPC_APPS",), service_token=True)
    hub.wait_up()
    yield {"hub": hub, "admin_password": admin_password}
    hub.stop()
    hub.cleanup("gateway-apps.log")


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def _login(context, base, name, password):
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(base + "/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    with page.expect_navigation(timeout=60_000):
        page.click("#login_submit")
    assert "/hub/login" not in page.url, f"{name} could not log in: {page.url}"
    return page


def _api(gw, method, path, **kw):
    hub = gw["hub"]
    return requests.request(method, hub.base + "/hub/api" + path, timeout=30,
                            headers={"Authorization": f"token {hub.token}"}, **kw)


def _shot(page, name):
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))
    shutil.copy(SHOTS / name, ARTIFACTS / "screenshots" / name)


def _stop_server(gw, server):
    path = f"/users/{USER}/servers/{server}" if server else f"/users/{USER}/server"
    r = _api(gw, "DELETE", path)
    assert r.status_code in (202, 204), (r.status_code, r.text)

    def gone():
        model = _api(gw, "GET", f"/users/{USER}").json()
        return (server or "") not in (model.get("servers") or {})
    wait_for(gone, 60, f"{USER}'s server {server!r} to stop")


def test_admins_see_the_sessions_page_others_get_403(gateway):
    from playwright.sync_api import sync_playwright

    base, hub = gateway["hub"].base, gateway["hub"]
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            # the admin, with the admin password: the navbar links every user's sessions
            admin = _login(browser.new_context(), base, ADMIN, gateway["admin_password"])
            admin.goto(base + "/hub/home")
            link = admin.locator("a.hpc-sessions-link")
            assert link.count() == 1, admin.inner_html("nav")
            assert link.inner_text().strip() == "Sessions (all users)"
            link.click()
            admin.wait_for_selector("#hpc-sessions-table")
            assert admin.url.endswith("/hub/hpc/sessions"), admin.url
            assert "batch session(s) across all users" in admin.inner_text("body")

            # an admin name with the users' shared password is not let in at all
            with pytest.raises(AssertionError, match="could not log in"):
                _login(browser.new_context(), base, ADMIN, hub.password)

            # the user: no link, 403 on the URL
            user = _login(browser.new_context(), base, USER, hub.password)
            user.goto(base + "/hub/home")
            assert user.locator("a.hpc-sessions-link").count() == 0
            assert user.locator("a[href$='/hub/hpc/sessions']").count() == 0
            r = user.goto(base + "/hub/hpc/sessions")
            assert r.status == 403, r.status
            assert "hpc-sessions-table" not in user.content()
        finally:
            browser.close()


def test_a_bad_admin_name_stops_the_hub_and_the_gateway(tmp_path):
    # the hub config: the message, no traceback, no hub
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", JHPC_STATE_DIR=str(tmp_path),
               JHPC_ADMIN_USERS="bob, alice;touch /tmp/jhpc-pwned", JHPC_PORT="1", JHPC_HUB_PORT="1")
    r = subprocess.run([str(VENV_BIN / "jupyterhub"), "-f", str(EXAMPLE)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "JHPC_ADMIN_USERS: 'alice;touch' is not a local user name" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert not os.path.exists(tmp_path / "jupyterhub.sqlite")
    # scripts/gateway refuses before installing anything or making any account
    r = subprocess.run(["bash", str(REPO / "scripts" / "gateway")], env=dict(env, JHPC_ADMIN_USERS="Root"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "gateway: 'Root' is not a local user name" in r.stderr, (r.returncode, r.stderr)
    assert r.stdout == "", r.stdout  # install.sh never ran


def test_a_name_taken_off_the_list_is_no_admin_after_the_restart(tmp_path):
    require_gateway(USER)
    admin_pw = tmp_path / "admin-pw"
    admin_password = secrets.token_urlsafe(32)
    admin_pw.write_text(admin_password)
    admin_pw.chmod(0o600)
    hub = ExampleHub(tmp_path, WRAPPER_CONFIG.format(example=str(EXAMPLE)), USER, "debug",
                     env={"JHPC_ADMIN_USERS": ADMIN, "JHPC_DEMO_ADMIN_PASSWORD_FILE": str(admin_pw),
                          "JHPC_APPS": ""}, service_token=True)
    try:
        hub.wait_up()
        bob = requests.Session()
        bob.get(hub.base + "/hub/login", timeout=30)
        r = bob.post(hub.base + "/hub/login", data={"username": ADMIN, "password": admin_password,
                                                     "_xsrf": bob.cookies.get("_xsrf")},
                     timeout=30, allow_redirects=False)
        assert r.status_code == 302, r.status_code
        assert bob.get(hub.base + "/hub/hpc/sessions", timeout=30).status_code == 200
        assert _api({"hub": hub}, "GET", f"/users/{ADMIN}").json()["admin"] is True
        # the site takes bob off the list and restarts the hub; his browser keeps its cookie
        hub.proc.terminate()
        hub.proc.wait(30)
        hub.env["JHPC_ADMIN_USERS"] = ""
        hub.launch()
        hub.wait_up("the hub restarted without admins")
        assert _api({"hub": hub}, "GET", f"/users/{ADMIN}").json()["admin"] is False
        assert bob.get(hub.base + "/hub/hpc/sessions", timeout=30).status_code == 403
        assert bob.get(hub.base + "/hub/api/users", timeout=30,
                       headers={"Referer": hub.base + "/hub/home"}).status_code == 403
    finally:
        hub.stop()
        hub.cleanup("gateway-admin-revoked.log")


def _canvas_size(page):
    return page.evaluate("() => { const c = document.querySelector('#noVNC_container canvas');"
                         " return c ? [c.width, c.height] : null; }")


def test_vscode_and_the_desktop_through_the_gateway(gateway):
    from playwright.sync_api import sync_playwright

    require(bool(shutil.which("code-server")), "code-server not installed (scripts/setup-apps.sh)")
    require(bool(shutil.which("Xvnc")) and os.path.isdir("/usr/share/novnc"),
            "TigerVNC/noVNC not installed (scripts/setup-apps.sh)")
    require(bool(shutil.which("xfce4-session")), "Xfce not installed (scripts/setup-apps.sh)")
    hub = gateway["hub"]
    base = hub.base
    started = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = _login(context, base, USER, hub.password)
            # the form: Jupyter profiles and the apps next to each other
            page.goto(base + "/hub/spawn")
            for key in ("small", "custom", "vscode", "desktop"):
                page.wait_for_selector(f"#profile-radio-{key}")
            # VS Code: the landing page is code-server's workbench
            t0 = time.monotonic()
            fill_form(page, "vscode", memory="1G", runtime="00:20:00")
            page.click("form button[type=submit]")
            started.append("")
            page.wait_for_selector(".monaco-workbench", timeout=180_000)
            assert f"/user/{USER}/vscode/" in page.url, page.url
            print(f"gateway vscode: submit -> workbench {time.monotonic() - t0:.1f} s")
            page.wait_for_timeout(1500)
            _shot(page, "gateway-vscode.png")

            # the desktop, as a named server: noVNC connected to an Xfce session
            t0 = time.monotonic()
            page.goto(base + f"/hub/spawn/{USER}/desk")
            fill_form(page, "desktop", memory="1G", runtime="00:20:00")
            page.click("form button[type=submit]")
            started.append("desk")
            page.wait_for_function("document.documentElement.classList.contains('noVNC_connected')",
                                   timeout=180_000)
            assert f"/user/{USER}/desk/desktop/vnc.html" in page.url, page.url
            print(f"gateway desktop: submit -> noVNC connected {time.monotonic() - t0:.1f} s")
            wait_for(lambda: subprocess.run(["pgrep", "-u", USER, "-x", "xfwm4"], capture_output=True).returncode == 0,
                     60, "Xfce's window manager (xfwm4) in erin's desktop")
            wait_for(lambda: subprocess.run(["pgrep", "-u", USER, "-x", "xfce4-panel"],
                                            capture_output=True).returncode == 0, 60, "Xfce's panel")
            # the screen follows the browser window (noVNC resize=remote -> Xvnc resizes)
            wait_for(lambda: _canvas_size(page) == [1280, 800], 30,
                     f"the desktop at the window's 1280x800 (is {_canvas_size(page)})")
            page.wait_for_timeout(2000)
            _shot(page, "gateway-desktop.png")
            page.set_viewport_size({"width": 1000, "height": 640})
            wait_for(lambda: _canvas_size(page) == [1000, 640], 30,
                     f"the desktop to follow the window to 1000x640 (is {_canvas_size(page)})")

            # the admin's sessions page lists both of erin's sessions
            admin = _login(browser.new_context(), base, ADMIN, gateway["admin_password"])
            admin.goto(base + "/hub/hpc/sessions")
            rows = admin.locator(f"#hpc-sessions-table tr[data-user='{USER}']")
            assert rows.count() == 2, admin.inner_text("#hpc-sessions-table")
        finally:
            browser.close()
            for server in started:
                try:
                    _stop_server(gateway, server)
                except AssertionError as e:
                    print(e)
    # stopped: no job of this hub left, no desktop process of erin's left
    jobs = set(re.findall(r"Job (\d+) submitted", hub.log_path.read_text(errors="replace")))
    assert len(jobs) == 2, jobs
    wait_for(lambda: not (jobs & set(slurmtools.live_jobs((USER,)))), 60, "erin's app jobs to end")
    wait_for(lambda: subprocess.run(["pgrep", "-u", USER, "-f", "Xvnc|xfwm4|code-server"],
                                    capture_output=True).returncode == 1, 30, "erin's app processes to end")
