"""What a user sees on the README's gateway, in a real browser (Playwright + Debian's Chromium).

One hub runs jupyterhub_config.example.py as shipped (ProfilesSpawner form, session cards, spawn
page, idle culler as a hub service, usage log), loaded from a wrapper config that only adds a
profile whose job dies and short culler/poll timings. The user ``carol`` is this test's own
(scripts/test creates her), so "no job in squeue" is about this test only. The small partition
``jhpc-small`` (2 CPUs, scripts/setup-slurm-partitions.sh) is filled with jobs of our own so
carol's job queues. Screenshots land in docs/screenshots/ (used by README) and test-artifacts/.

Flow (one hub, one browser): login (no job yet) -> form -> queued spawn (card and progress show
the reason, queue position and estimated start) -> free the partition -> JupyterLab -> card
shows node and time left, log link shows the log (0700 folder, 0600 file) -> a second, queued
spawn is cancelled (job gone, page says cancelled, Start again works) -> a spawn whose job dies
shows the failure page with the log tail -> the idle culler stops the idle server and its job is
gone -> the report over this run's usage log gives the right counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from gatewaytools import CHROMIUM, CHROMIUM_ARGS, ExampleHub, fill_form, require_gateway, wait_for
from hubharness import ARTIFACTS, VENV_BIN

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
USER = "carol"
PARTITION = "jhpc-small"
CULL_TIMEOUT = 40

WRAPPER_CONFIG = """
c = get_config()  # noqa
load_subconfig({example!r})
# test additions only: a profile whose job dies at once, quicker polling
c.ProfilesSpawner.profiles = list(c.ProfilesSpawner.profiles) + [{{
    "key": "broken", "display": "Broken environment (test)", "class": "batchspawner.SlurmSpawner",
    "config": {{"req_partition": "debug", "req_memory": "256M", "req_runtime": "00:10:00",
               "req_prologue": "echo 'module load python/3.99: no such module' >&2; exit 7"}},
}}]
c.SlurmSpawner.status_interval = 2
c.SlurmSpawner.session_interval = 2
c.SlurmSpawner.startup_poll_interval = 0.5
# a service for the test's REST API checks (token from the environment, never on disk)
import os  # noqa: E402
c.JupyterHub.services = list(c.JupyterHub.services) + [
    {{"name": "tester", "api_token": os.environ["JHPC_TEST_SERVICE_TOKEN"]}}]
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [
    {{"name": "tester-role", "scopes": ["admin:users", "admin:servers", "read:users"], "services": ["tester"]}}]
"""


def squeue_user(user=USER) -> dict:
    return slurmtools.live_jobs((user,))


def sbatch_filler(cpus=2) -> str:
    r = subprocess.run(["sudo", "-u", USER, "sbatch", "--parsable", "-p", PARTITION, "-c", str(cpus), "-t", "10",
                        "-J", "jhpc-filler", "-o", "/dev/null", "--wrap", "sleep 600"],
                       capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, request):
    require_gateway(USER, PARTITION, browser=True)
    tmp = tmp_path_factory.mktemp("gateway")
    hub = ExampleHub(tmp, WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py")), USER,
                     f"debug {PARTITION}", env={"JHPC_CULL_TIMEOUT": str(CULL_TIMEOUT), "JHPC_CULL_EVERY": "10"},
                     service_token=True)
    fillers: list[str] = []
    hub.wait_up()
    gw = {"base": hub.base, "token": hub.token, "password": hub.password, "usage": hub.usage, "tmp": tmp,
          "fillers": fillers, "proc": hub.proc}
    yield gw
    hub.stop()
    hub.cleanup("gateway-browser.log", fillers)


def _shot(page, name, full_page=True):
    SHOTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)
    shutil.copy(SHOTS / name, ARTIFACTS / "screenshots" / name)


def _job_of(text):
    m = re.search(r"Job (\d+)", text)
    return m.group(1) if m else None


def test_gateway_in_a_browser(gateway):
    from playwright.sync_api import expect, sync_playwright

    base = gateway["base"]
    timings = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            # --- login: the form, and no job yet
            page.goto(base + "/hub/login")
            page.fill("#username_input", USER)
            page.fill("#password_input", gateway["password"])
            page.click("#login_submit")
            page.wait_for_selector("#profile-radio-small")
            assert "/hub/spawn" in page.url, page.url
            time.sleep(2)  # a job submitted at login would show by now
            assert squeue_user() == {}, "logging in submitted a job"
            # more cores than jhpc-small allows: refused on the server, naming the field, nothing submitted
            fill_form(page, "custom", partition=PARTITION, nprocs="4", memory="1G", runtime="00:30:00")
            # the browser marks it at once (test_form_facts_live); bypassed here: the server refuses too
            expect(page.locator("[id='custom.nprocs-live']")).to_contain_text("at most 2 cores on jhpc-small")
            page.evaluate("document.getElementById('spawn_form').noValidate = true")
            page.click("form button[type=submit]")
            expect(page.locator("body")).to_contain_text("CPU cores is more than partition jhpc-small allows")
            assert squeue_user() == {}
            # the form knows the cluster: partitions with free cores and limits, in words
            expect(page.locator(".hpc-partition[data-partition='jhpc-small']").first).to_contain_text(
                "cores free now; at most 2 cores per node, 4 h 00 min per job")
            page.goto(base + "/hub/spawn")
            fill_form(page, "custom", partition=PARTITION, nprocs="2", memory="1G", runtime="00:30:00")
            _shot(page, "profiles-form.png", full_page=False)

            # --- fill the partition: one running filler, one pending ahead of us
            f1 = sbatch_filler()
            gateway["fillers"].append(f1)
            wait_for(lambda: slurmtools.job_state(f1) == "RUNNING", 30, "the first filler to run")
            f2 = sbatch_filler()
            gateway["fillers"].append(f2)

            t0 = time.monotonic()
            page.click("form button[type=submit]")
            msg = page.locator("#progress-message")
            expect(msg).to_contain_text("waiting in the queue", timeout=30_000)
            expect(msg).to_contain_text("position 2 of 2 pending in partition jhpc-small", timeout=30_000)
            # the filler ahead of us waits for Resources, we wait behind it (Priority)
            expect(msg).to_contain_text("Priority: other jobs are ahead in the queue", timeout=30_000)
            # Slurm's backfill pass (every 30 s) computes the estimate; the stream refreshes it
            expect(msg).to_contain_text(re.compile(r"estimated start \d\d:\d\d UTC"), timeout=75_000)
            job = _job_of(page.locator("#progress-log").text_content())
            assert job and squeue_user().get(job) == "PENDING", (job, squeue_user())
            expect(page.locator("#hpc-cancel")).to_be_visible()
            # the card on this page (rendered when the page loaded after the submit) follows the stream
            if page.locator("#hpc-pending-card").count():
                expect(page.locator("#hpc-pending-card .hpc-estimate")).to_contain_text(re.compile(r"\d\d:\d\d UTC"))
            _shot(page, "spawn-pending.png")

            home = context.new_page()
            home.set_default_timeout(30_000)
            home.goto(base + "/hub/home")
            card = home.locator("#hpc-card-default")
            expect(card).to_have_attribute("data-state", "queued")
            expect(card.locator(".hpc-job")).to_contain_text(job)
            expect(card.locator(".hpc-reason")).to_contain_text("other jobs are ahead in the queue")
            expect(card.locator(".hpc-position")).to_contain_text("2 of 2 pending in jhpc-small")
            expect(card.locator(".hpc-estimate")).to_contain_text("UTC")
            expect(card.locator(".hpc-resources")).to_contain_text("2 cores, 1G memory")
            expect(card.locator(".hpc-profile")).to_contain_text("Custom")
            _shot(home, "card-queued.png")

            # --- free the partition: the job runs and the browser lands in JupyterLab
            slurmtools.cancel([f1, f2])
            page.wait_for_url(re.compile(r"/user/carol/lab"), timeout=120_000)
            page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
            timings["queued spawn -> JupyterLab after freeing"] = time.monotonic() - t0
            assert squeue_user().get(job) == "RUNNING"

            home.goto(base + "/hub/home")
            card = home.locator("#hpc-card-default")
            expect(card).to_have_attribute("data-state", "running")
            expect(card.locator(".hpc-node")).to_contain_text("localhost")
            expect(card.locator(".hpc-time-left")).to_contain_text("min")
            expect(card.locator(".hpc-walltime")).to_contain_text("30 min")
            log_path = card.locator(".hpc-log a").inner_text().strip()
            assert re.fullmatch(rf"/home/{USER}/\.jupyterhub-hpc/logs/jupyter-\d{{8}}-\d{{6}}-default-job{job}\.log",
                                log_path), log_path
            _shot(home, "card-running.png")
            # the same facts as JSON for scripts (the user's own session); none in the saved state
            facts = home.request.get(base + "/hub/hpc/cards?format=json").json()["sessions"][0]
            model = requests.get(base + f"/hub/api/users/{USER}", timeout=30,
                                 headers={"Authorization": f"token {gateway['token']}"}).json()
            assert "session" not in model["servers"][""]["state"]["child_state"]
            assert facts["job_id"] == job and facts["node"] == "localhost" and facts["state"] in ("running",
                                                                                                  "starting")
            assert facts["time_left"] and 0 < facts["time_left"] <= 1800
            # the log, through the hub, read as carol; private folder and file
            home.click("#hpc-card-default .hpc-log a")
            expect(home.locator("#hpc-log-text")).to_contain_text("jupyterhub")
            d, f = os.stat(os.path.dirname(log_path)), os.stat(log_path)
            assert stat.S_IMODE(d.st_mode) == 0o700 and stat.S_IMODE(f.st_mode) == 0o600, (oct(d.st_mode),
                                                                                            oct(f.st_mode))
            assert d.st_uid == f.st_uid == int(subprocess.check_output(["id", "-u", USER]))
            # not an admin: the every-user sessions page is refused
            assert home.goto(base + "/hub/hpc/sessions").status == 403
            page.goto(base + "/hub/home")  # leave JupyterLab: the default server is now idle

            # --- a second spawn queues (carol's own server fills jhpc-small); cancel it
            page.goto(base + "/hub/spawn/carol/q")
            fill_form(page, "custom", partition=PARTITION, nprocs="1", memory="512M", runtime="00:10:00")
            page.click("form button[type=submit]")
            expect(page.locator("#progress-message")).to_contain_text("waiting in the queue", timeout=30_000)
            job_q = _job_of(page.locator("#progress-log").text_content())
            assert squeue_user().get(job_q) == "PENDING"
            page.click("#hpc-cancel")
            expect(page.locator("#hpc-cancelled")).to_be_visible(timeout=30_000)
            expect(page.locator("#hpc-cancelled")).to_contain_text("cancelled")
            wait_for(lambda: job_q not in squeue_user(), 30, "the cancelled job to leave squeue")
            url = page.url
            time.sleep(3)  # no reload, no redirect loop, no "ready"
            assert page.url == url
            body = page.locator("body").inner_text()
            assert "Server ready" not in body and "not running" not in body.lower() and "424" not in body
            _shot(page, "spawn-cancelled.png")
            page.click("#hpc-start-again-cancelled")
            page.wait_for_selector("#profile-radio-small")
            fill_form(page, "small", partition="debug", runtime="00:10:00")
            page.click("form button[type=submit]")
            page.wait_for_url(re.compile(r"/user/carol/q/lab"), timeout=120_000)
            page.goto(base + "/hub/home")
            r = requests.delete(base + f"/hub/api/users/{USER}/servers/q", timeout=60,
                                headers={"Authorization": f"token {gateway['token']}"})
            assert r.status_code in (202, 204), r.text

            # --- a job that dies: the failure page says what happened and what to do
            page.goto(base + "/hub/spawn/carol/f")
            fill_form(page, "broken")
            page.click("form button[type=submit]")
            # the spawn page's failure box, or (when the job dies within the hub's first second) the
            # form page's error box: the same facts either way, and the form to start again
            page.wait_for_selector("#hpc-failed:visible, .spawn-error-msg", timeout=60_000)
            on_form = page.locator("#hpc-failed:visible").count() == 0
            text = page.locator(".spawn-error-msg").first.inner_text() if on_form else page.locator(
                "#hpc-failed").inner_text()
            assert "ended before your server started" in text and "FAILED" in text and "exit code 7" in text, text
            assert "module load python/3.99: no such module" in text, text
            assert "What to do" in text and "tail:" not in text and "cannot open" not in text, text
            assert "Server ready" not in page.locator("body").inner_text()
            assert "Unhandled error" not in page.locator("body").inner_text()
            _shot(page, "spawn-failed.png")
            if not on_form:
                page.click("#hpc-start-again")
            page.wait_for_selector("#profile-radio-small")
            print("failed spawn shown on the", "form page (job died within 1 s)" if on_form else "spawn page")

            # --- the idle culler stops the idle default server; its job leaves squeue
            t_cull = time.monotonic()
            wait_for(lambda: job not in squeue_user(), CULL_TIMEOUT + 120, "the culler to stop the idle server",
                     interval=2)
            timings["culler: idle server's job gone after"] = time.monotonic() - t_cull
            # the culler's DELETE is logged when the stop returns (after the job is gone)
            wait_for(lambda: re.search(rf"DELETE /hub/api/users/{USER}/server \(idle-culler@",
                                       (gateway["tmp"] / "hub.log").read_text(errors="replace")), 30,
                     "the culler's DELETE in the hub log (it was the culler that stopped the server)")
            home.goto(base + "/hub/home")
            expect(home.locator("#hpc-card-default")).to_have_count(0)
        finally:
            browser.close()
    for k, v in timings.items():
        print(f"{k}: {v:.1f} s")

    # --- the report over this run's usage log
    wait_for(lambda: sum(1 for _ in open(gateway["usage"])) >= 8, 30, "the usage log's stop lines")
    out = subprocess.run([str(VENV_BIN / "jupyterhub-hpc-report"), "--json", str(gateway["usage"]),
                          "--csv", str(gateway["tmp"] / "r.csv"), "--html", str(gateway["tmp"] / "r.html")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    (user_row,) = summary["users"]
    assert user_row["user"] == USER
    assert (user_row["sessions"], user_row["started"], user_row["failures"], user_row["cancelled"]) == (4, 2, 1, 1), \
        summary
    profiles = {r["profile"]: r for r in summary["profiles"]}
    assert profiles["custom"]["sessions"] == 2 and profiles["custom"]["cancelled"] == 1
    assert profiles["small"]["sessions"] == 1 and profiles["broken"]["failures"] == 1
    assert profiles["custom"]["max_queue_wait"] >= 1  # the queued session waited for the fillers
    assert user_row["total_run_time"] > 0
    html = (gateway["tmp"] / "r.html").read_text()
    # charts: sessions per profile, queue wait per profile, core time per user (report.py)
    assert html.count("<svg") == 3 and "Per profile" in html
    assert len((gateway["tmp"] / "r.csv").read_text().splitlines()) == 5
    shutil.copy(gateway["tmp"] / "r.html", ARTIFACTS / "usage-report.html")
