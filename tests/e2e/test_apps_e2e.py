"""Web apps and container images as profiles, on a real hub + real Slurm (one hub for the module).

- VS Code (code-server from npm) and a TigerVNC/noVNC desktop run inside the user's Slurm job,
  behind jupyter-server-proxy in the single-user server (examples/apps/jupyterhub_config.py as
  shipped): a real Chromium loads them for their logged-in owner (screenshots kept under
  docs/screenshots/), a client that is not logged in and another logged-in user are refused.
- A container profile: images in an admin folder, typed arguments from their labels. Apptainer
  cannot be installed here, so the profile uses tests/fakeapptainer/apptainer, a FAKE that runs
  the command with a sandbox directory's files (see its docstring); the form, the 400s, the job's
  command line and the server running from the image's files are all real.
"""

import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from conftest import require
from hubharness import VENV_BIN, Hub

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
# the fake apptainer the tests ship; copied into a folder job users can reach before use (the
# checkout may be private to root: CI clones into a 0700 temporary folder)
FAKE_APPTAINER_SOURCE = REPO / "tests" / "fakeapptainer" / "apptainer"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _make_image(folder: Path) -> Path:
    """A sandbox-directory image: labels declaring typed arguments, and its own server launcher."""
    image = folder / "analysis"
    (image / ".singularity.d").mkdir(parents=True)
    (image / "bin").mkdir()
    (image / ".singularity.d" / "labels.json").write_text(json.dumps(
        {"ANALYSIS_ARG_INT": "threads", "ANALYSIS_ARG_STR": "dataset", "ANALYSIS_ARG_BOOL": "verbose",
         "ANALYSIS_ARG_FLOAT": "tolerance", "org.opencontainers.image.title": "analysis"}))
    launcher = image / "bin" / "jupyterhub-singleuser"
    launcher.write_text(
        "#!/bin/sh\n"
        'echo "IN-IMAGE $APPTAINER_NAME threads=${threads-unset} dataset=${dataset-unset} '
        'verbose=${verbose-unset} tolerance=${tolerance-unset}" >&2\n'
        f'exec {VENV_BIN}/jupyterhub-singleuser "$@"\n'
    )
    for path in (folder, image, image / ".singularity.d", image / "bin"):
        path.chmod(0o755)
    launcher.chmod(0o755)
    (image / ".singularity.d" / "labels.json").chmod(0o644)
    return image


@pytest.fixture(scope="module")
def apps_hub(tmp_path_factory):
    ok, why = slurmtools.available()
    require(ok, why)
    import shutil

    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    shared = Path(tempfile.mkdtemp(prefix="jhpc-apps-"))
    shared.chmod(0o755)
    images = shared / "images"
    images.mkdir()
    image = _make_image(images)
    (shared / "bin").mkdir(mode=0o755)
    apptainer = shared / "bin" / "apptainer"
    shutil.copy(FAKE_APPTAINER_SOURCE, apptainer)
    apptainer.chmod(0o755)
    webdir = shared / "web"
    webdir.mkdir(mode=0o755)
    (webdir / "index.html").write_text("<h1>jhpc web app works</h1>")
    (webdir / "index.html").chmod(0o644)
    config = f"""
c.JupyterHub.allow_named_servers = True
import batchspawner.hub.web  # the home page's start tiles (as the gateway's config has them)
c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
exec(open({str(REPO / 'examples' / 'apps' / 'jupyterhub_config.py')!r}).read())
c.SlurmSpawner.startup_poll_interval = 0.25
c.ProfilesSpawner.profiles = c.ProfilesSpawner.profiles + [
    {{'key': 'box', 'display': 'Container', 'class': 'batchspawner.SlurmSpawner',
      'config': {{'req_partition': 'debug'}},
      'container': {{'dir': {str(images)!r}, 'apptainer': {str(apptainer)!r}, 'binds': [{str(VENV_BIN.parent)!r}]}},
      'fields': {{'memory': {{'type': 'memory', 'min': '128M', 'max': '1G', 'default': '256M'}}}}}},
]
"""
    hub = Hub(tmp_path_factory.mktemp("apps") / "hub", config,
              env={"JHPC_WEBAPP_DIR": str(webdir), "JHPC_PARTITION": "debug"})
    hub.start()
    yield hub, image, apptainer
    try:
        hub.stop()
    finally:
        ours = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
        live = slurmtools.live_jobs()
        slurmtools.cancel([j for j in ours if j in live])
        shutil.rmtree(shared, ignore_errors=True)


def _login(hub, name):
    s = requests.Session()
    s.get(hub.url + "/hub/login", timeout=30)
    r = s.post(hub.url + "/hub/login", data={"username": name, "password": "pw", "_xsrf": s.cookies.get("_xsrf")},
               timeout=30, allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def _spawn(hub, name, server, options):
    r, seconds = hub.spawn(name, options, server=server, timeout=240)
    assert r.status_code in (201, 202), r.text
    assert (hub.server_model(name, server) or {}).get("ready"), hub.log_tail(80)
    return seconds


def _refused(hub, path):
    """Not logged in: sent to the hub's login; bob logged in: 403. Neither sees the app."""
    anon = requests.get(hub.url + path, timeout=30)
    assert "/hub/login" in anon.url and anon.status_code == 200, (anon.status_code, anon.url)
    assert "code-server" not in anon.text and "noVNC" not in anon.text
    first = requests.get(hub.url + path, timeout=30, allow_redirects=False)
    assert first.status_code == 302 and "/hub/" in first.headers["Location"]
    bob = _login(hub, "bob")
    other = bob.get(hub.url + path, timeout=30)
    assert other.status_code == 403, (other.status_code, other.url, other.text[:300])
    assert "code-server" not in other.text and "noVNC" not in other.text


def _tcp_listeners_of(user, pattern):
    """Listening TCP sockets of ``user``'s processes whose command line matches ``pattern``."""
    pids = set(subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True, text=True).stdout.split())
    assert pids, f"no {pattern} process of {user} is running"
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return [line for line in listening.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def _browser():
    require(os.path.exists(CHROMIUM), "chromium not installed (scripts/setup-browser.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "python playwright not installed (scripts/setup-browser.sh)")
    return sync_playwright()


def _browser_login(page, hub, name):
    page.goto(hub.url + "/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "pw")
    with page.expect_navigation(timeout=60000):
        page.click("input[type=submit], button[type=submit]")
    assert "/hub/login" not in page.url, page.url


def test_vscode_profile_for_its_owner_only(apps_hub):
    import shutil

    require(bool(shutil.which("code-server")), "code-server not installed (scripts/setup-apps.sh)")
    hub = apps_hub[0]
    seconds = _spawn(hub, "alice", "", {"profile": "vscode", "memory": "1G"})
    print(f"vscode profile: submit -> ready {seconds:.1f} s")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            _browser_login(page, hub, "alice")
            t0 = time.monotonic()
            page.goto(hub.url + "/user/alice/")  # default_url: the editor is the landing page
            page.wait_for_selector(".monaco-workbench", timeout=120000)
            page.wait_for_timeout(3000)
            assert "/user/alice/vscode/" in page.url
            page.screenshot(path=str(SCREENSHOTS / "vscode-profile.png"))
            print(f"vscode editor loaded through the hub's proxy in {time.monotonic() - t0:.1f} s")
        finally:
            browser.close()
    # shared nodes: the editor listens on a private unix socket, on no TCP port other users could reach
    assert _tcp_listeners_of("alice", "code-server") == []
    _refused(hub, "/user/alice/vscode/")


def test_desktop_profile_for_its_owner_only(apps_hub):
    import shutil

    require(bool(shutil.which("Xvnc")) and os.path.isdir("/usr/share/novnc"),
            "TigerVNC/noVNC not installed (scripts/setup-apps.sh)")
    hub = apps_hub[0]
    seconds = _spawn(hub, "alice", "desk", {"profile": "desktop", "memory": "1G"})
    print(f"desktop profile: submit -> ready {seconds:.1f} s")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            _browser_login(page, hub, "alice")
            t0 = time.monotonic()
            page.goto(hub.url + "/user/alice/desk/")
            page.wait_for_function("document.documentElement.classList.contains('noVNC_connected')",
                                   timeout=90000)
            page.wait_for_timeout(2000)
            assert "/user/alice/desk/desktop/vnc.html" in page.url
            page.screenshot(path=str(SCREENSHOTS / "desktop-profile.png"))
            print(f"noVNC desktop connected through the hub's proxy in {time.monotonic() - t0:.1f} s")
        finally:
            browser.close()
    assert _tcp_listeners_of("alice", "Xvnc") == []
    _refused(hub, "/user/alice/desk/desktop/vnc.html")
    _refused(hub, "/user/alice/desk/desktop-vnc/")


def test_generic_webapp_profile(apps_hub):
    hub = apps_hub[0]
    _spawn(hub, "bob", "web", {"profile": "webapp", "memory": "512M"})
    owner = _login(hub, "bob").get(hub.url + "/user/bob/web/", timeout=60)
    assert owner.status_code == 200 and "jhpc web app works" in owner.text, (owner.url, owner.text[:300])
    assert owner.url.endswith("/user/bob/web/webapp/")
    alice = _login(hub, "alice").get(hub.url + "/user/bob/web/webapp/", timeout=30)
    assert alice.status_code == 403 and "jhpc web app works" not in alice.text
    anon = requests.get(hub.url + "/user/bob/web/webapp/", timeout=30)
    assert "/hub/login" in anon.url and "jhpc web app works" not in anon.text
    assert hub.stop_server("bob", "web")


def test_container_profile_form_refusals_and_command_line(apps_hub):
    hub, image, apptainer = apps_hub
    hub.ensure_user("alice")
    session = _login(hub, "alice")
    form = session.get(hub.url + "/hub/spawn/alice/box1", timeout=30)
    assert form.status_code == 200
    assert re.search(r'name="box.image"[^>]*>\s*<option value="analysis"', form.text), form.text[:3000]
    for arg in ("threads", "dataset", "verbose", "tolerance"):
        assert f'name="box.analysis.{arg}"' in form.text

    before = set(slurmtools.live_jobs())
    for options, field in [
        ({"threads": "8; id"}, "threads"),
        ({"dataset": "x y"}, "dataset"),
        ({"dataset": "a,LD_PRELOAD=/tmp/x.so"}, "dataset"),
        ({"verbose": "$(id)"}, "verbose"),
        ({"LD_PRELOAD": "/tmp/x.so"}, "LD_PRELOAD"),
    ]:
        r = hub.api("POST", "/users/alice/servers/box1", json={"profile": "box", "image": "analysis", **options})
        assert r.status_code == 400 and field in r.json()["message"], (options, r.text)
    r = hub.api("POST", "/users/alice/servers/box1", json={"profile": "box", "image": "../analysis"})
    assert r.status_code == 400 and "image" in r.json()["message"]
    xsrf = re.search(r'_xsrf=([^"&]+)', form.text).group(1)
    r = session.post(hub.url + "/hub/spawn/alice/box1", timeout=30, allow_redirects=False,
                     data={"profile": "box", "box.image": "analysis", "box.analysis.threads": "-1", "_xsrf": xsrf})
    assert r.status_code == 400 and "threads" in r.text
    assert hub.wait_stopped("alice", "box1", timeout=20)
    assert set(slurmtools.live_jobs()) - before == set()

    seconds = _spawn(hub, "alice", "box1", {"profile": "box", "image": "analysis", "threads": 8, "verbose": "yes",
                                             "memory": "256M"})
    print(f"container profile (fake apptainer): submit -> ready {seconds:.1f} s")
    state = hub.api("GET", "/users/alice").json()["servers"]["box1"]["state"]
    job_id = state["child_state"]["job_id"]
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True,
                            timeout=30).stdout
    line = next(line for line in script.splitlines() if str(apptainer) in line)
    words = shlex.split(line)
    i = words.index(str(apptainer))
    assert words[i:words.index(str(image)) + 1] == [
        str(apptainer), "exec", "--bind", str(VENV_BIN.parent), "--env", "threads=8", "--env", "verbose=true",
        str(image)]
    assert words[words.index(str(image)) + 1] == "jupyterhub-singleuser"
    # the server really started from the image's files, with exactly those arguments
    log = Path(state["child_state"]["log_file"]).read_text()  # ~/.jupyterhub-hpc/logs/... (issue 14)
    assert "IN-IMAGE analysis threads=8 dataset=unset verbose=true tolerance=unset" in log, log[-2000:]
    assert hub.user_request("alice", "api", server="box1").status_code == 200
    assert hub.stop_server("alice", "box1")


def test_vscode_and_desktop_show_the_walltime_banner_for_a_job_ending_soon(apps_hub):
    """Issue 26: 10 minutes of wall time is inside walltime_warning (900 s) from the start, so the
    app's own page (code-server's workbench, noVNC) shows "This session ends in N min; save your work"
    (jupyter-server-proxy's rewrite_response adds the script; code-server's CSP allows it: same origin)."""
    import shutil

    from playwright.sync_api import expect

    hub = apps_hub[0]
    apps = []
    if shutil.which("Xvnc") and os.path.isdir("/usr/share/novnc"):
        apps.append(("deskwt", "desktop", "/desktop/vnc.html",
                     "document.documentElement.classList.contains('noVNC_connected')"))
    if shutil.which("code-server"):
        apps.append(("vswt", "vscode", "/vscode/", "!!document.querySelector('.monaco-workbench')"))
    require(bool(apps), "neither code-server nor TigerVNC/noVNC installed (scripts/setup-apps.sh)")
    for server, profile, _, _ in apps:
        seconds = _spawn(hub, "alice", server, {"profile": profile, "memory": "1G", "runtime": "00:10:00"})
        print(f"{profile} with 10 min of wall time: submit -> ready {seconds:.1f} s")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            _browser_login(page, hub, "alice")
            for server, profile, path, loaded in apps:
                t0 = time.monotonic()
                page.goto(f"{hub.url}/user/alice/{server}/")
                page.wait_for_function(loaded, timeout=120000)
                assert f"/user/alice/{server}{path}" in page.url, page.url
                banner = page.locator("#jhpc-walltime-banner")
                expect(banner).to_be_visible(timeout=60000)
                text = banner.inner_text()
                minutes = int(re.search(r"This session ends in (\d+) min; save your work", text).group(1))
                assert 5 <= minutes <= 10, text
                print(f"{profile}: banner {time.monotonic() - t0:.1f} s after opening the app: {text!r}")
                assert page.locator("script[data-jhpc-walltime]").count() == 1
                assert not [e for e in errors if "Content Security Policy" in e], errors
                page.wait_for_timeout(1500)
                page.screenshot(path=str(SCREENSHOTS / f"{profile}-walltime-banner.png"))
                banner.locator("button").click()
                expect(banner).to_have_count(0)
        finally:
            browser.close()
    for server, _, _, _ in apps:
        assert hub.stop_server("alice", server)


def test_a_start_tile_per_container_image(apps_hub):
    """Issue 26: once the hub has listed the images (any form render), the home page has a tile per
    usable image that opens the form with the profile and that image selected."""
    hub = apps_hub[0]
    hub.ensure_user("alice")
    session = _login(hub, "alice")
    assert session.get(hub.url + "/hub/spawn/alice/tiles0", timeout=30).status_code == 200  # lists the images
    home = session.get(hub.url + "/hub/home", timeout=30)
    assert home.status_code == 200
    tile = re.search(r'<a [^>]*data-profile="box" data-image="analysis" href="([^"]+)"', home.text)
    assert tile, home.text[:4000]
    assert "Jupyter in analysis" in home.text
    form = session.get(hub.url + tile.group(1).replace("&amp;", "&"), timeout=30)
    assert form.status_code == 200 and "/hub/spawn/alice/" in form.url
    assert re.search(r'value="box"\s+checked', form.text), form.text[:3000]
    assert re.search(r'<option value="analysis"\s+selected', form.text), form.text[:3000]
    odd = session.get(hub.url + "/hub/hpc/start/box?image=%3Cnot-there%3E", timeout=30)
    assert odd.status_code == 200 and 'name="box.image"' in odd.text
    assert "selected" not in odd.text.split('name="box.image"')[1].split("</select>")[0]
