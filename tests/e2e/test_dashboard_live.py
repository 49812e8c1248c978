"""Issue 26, warnings where the user is, while the pages stay open (no reload), in a real browser
(Playwright + Debian's Chromium) against a real hub on the host's real Slurm.

One hub for the module (jupyterhub_config.example.py as shipped, ``walltime_warning`` 130 s so a
3-minute job enters its warning window 50 s after it starts); users ``erin`` (whose sessions these
are, started through the REST API, i.e. elsewhere than the open pages) and ``bob`` (whose home page
is open at the same time and must see nothing of erin's). Notifications are allowed in the test
browser and recorded (gatewaytools.RECORD_NOTIFICATIONS).

1. erin's home pages, open before she has any session in a background tab and in the tab she looks
   at, get a queued card for a session started through the REST API, then "Your session started" once when its job runs; the
   card says "stopped" when the session is stopped elsewhere;
2. erin's home page and her JupyterLab, open before the session enters its last 130 s, show the
   "ends soon" notification and the in-Lab banner when it does (without a reload, within a few
   seconds of the crossing), once; a reload brings no second notification.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest


from gatewaytools import (
    chromium_page, hub_api, hub_login, notifying_page, start_filler, WRAPPER_CONFIG, ExampleHub,
    require_gateway, wait_for,
)

REPO = Path(__file__).resolve().parents[2]
USER, OTHER = "erin", "bob"
PARTITION = "jhpc-small"
WALL, WARN = 180, 130  # the crossing comes WALL - WARN = 50 s after the job starts


def expect(*args, **kwargs):
    """Playwright's expect, imported when a browser test runs: the JupyterHub 5 venv's fast tier
    collects this module without Playwright installed."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER, PARTITION, browser=True)
    require_gateway(OTHER)
    tmp = tmp_path_factory.mktemp("live26")
    config = WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py"))
    config += f"c.SlurmSpawner.walltime_warning = {WARN}\n"
    gw = ExampleHub(tmp, config, USER, f"debug {PARTITION}",
                    env={"JHPC_PARTITION": "debug", "JHPC_NAMED_SERVER_LIMIT": "20", "JHPC_APPS": "",
                         "JHPC_DEMO_USERS": f"{USER} {OTHER}"}, service_token=True)
    gw.wait_up()
    fillers: list[str] = []
    try:
        with chromium_page(1100, 900) as (browser, page):
            yield {"gw": gw, "base": gw.base, "token": gw.token, "password": gw.password, "tmp": tmp,
                   "page": page, "browser": browser, "fillers": fillers}
    finally:
        gw.stop()
        gw.cleanup("dashboard-live.log", fillers)


def _servers(h):
    r = hub_api(h, "GET", f"/users/{USER}")
    assert r.status_code == 200, r.text
    return r.json().get("servers", {})


def _start(h, server, partition, runtime):
    """Start erin's ``server`` through the REST API (the custom profile, 1 core)."""
    r = hub_api(h, "POST", f"/users/{USER}/servers/{server}",
                json={"profile": "custom", "partition": partition, "nprocs": 1, "memory": "512M", "runtime": runtime})
    assert r.status_code in (201, 202), r.text


def _stop(h, server):
    r = hub_api(h, "DELETE", f"/users/{USER}/servers/{server}")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server not in _servers(h), 60, f"server {server} to stop")


# a tab in the background, as the page sees it (headless Chromium reports every tab visible)
BACKGROUND_TAB = """
Object.defineProperty(Document.prototype, "hidden", {get: () => true, configurable: true});
Object.defineProperty(Document.prototype, "visibilityState", {get: () => "hidden", configurable: true});
"""


def _home(h, user, background=False):
    """A home page of ``user`` with notifications allowed and recorded; marked, to tell a reload;
    ``background``: the page sees itself in a background tab (document.hidden)."""
    page = notifying_page(h["browser"], h["base"])
    if background:
        page.add_init_script(BACKGROUND_TAB)
    page = hub_login(h, page, user)
    page.evaluate("window._sameDocument = true")
    return page


def _not_reloaded(page):
    return page.evaluate("window._sameDocument === true")


def _sees_nothing_of_erin(bob):
    """bob's open home page: no card, clock, notification or warning of erin's."""
    assert bob.locator(".hpc-card, .hpc-ended, .hpc-clock, .hpc-walltime-warning").count() == 0
    assert bob.evaluate("window._notes") == []
    assert USER not in bob.locator("#hpc-sessions").inner_text()


def test_background_home_tab_shows_a_session_started_elsewhere_and_notifies_its_start(hub):
    """erin's home page stays open in a background tab (where she is not looking: the reason for a
    notification) while a session is started elsewhere (the REST API)."""
    erin, bob = _home(hub, USER, background=True), _home(hub, OTHER)
    # and another home page of erin's in a tab of the same browser that she looks at
    front = hub_login(hub, erin.context.new_page(), USER)
    front.evaluate("window._sameDocument = true")
    pages = {"front": front, "background": erin}
    try:
        assert erin.evaluate("document.hidden") is True and front.evaluate("document.hidden") is False
        assert erin.locator(".hpc-card").count() == 0 and front.locator(".hpc-card").count() == 0
        filler = start_filler(USER, PARTITION, hub["fillers"])
        t0 = time.monotonic()
        _start(hub, "q", PARTITION, "00:10:00")  # waits behind the filler
        for name, page in pages.items():
            expect(page.locator("#hpc-card-q")).to_have_attribute("data-state", "queued", timeout=30_000)
            print(f"queued card on the {name} tab {time.monotonic() - t0:.1f} s after the REST start was sent (its POST answers after up to 10 s)")
            expect(page.locator("#hpc-cards-heading")).to_be_visible()
            expect(page.locator("#hpc-sessions .hpc-no-session")).to_be_hidden()
            assert page.evaluate("window._notes") == []
        t1 = time.time()
        subprocess.run(["scancel", filler], check=True, timeout=20)
        started = [["Your session started", "q: the batch job left the queue and is starting."]]
        for name, page in pages.items():
            notes = wait_for(lambda: page.evaluate("window._notes"), 60, f"the start notification on the {name} tab")
            at = page.evaluate("window._noteTimes[0]") / 1000 - t1
            print(f"notified on the {name} tab {at:.1f} s after the queue freed: {notes}")
            assert notes == started, notes
        job = front.locator("#hpc-card-q").get_attribute("data-job-id")
        print(f"(Slurm started job {job} {_job_start_epoch(job) - t1:.0f} s after the queue freed)")
        wait_for(lambda: _servers(hub).get("q", {}).get("ready"), 120, "server q to be ready")
        for page in pages.values():
            expect(page.locator("#hpc-card-q")).to_have_attribute("data-state", "running", timeout=30_000)
        erin.wait_for_timeout(6000)  # the next refreshes: no second notification for the same start
        for page in pages.values():
            assert page.evaluate("window._notes") == started and _not_reloaded(page)
        _sees_nothing_of_erin(bob)
        # a session gone (stopped through the REST API, elsewhere): its card on the open pages says so
        _stop(hub, "q")
        for page in pages.values():
            expect(page.locator("#hpc-card-q")).to_have_attribute("data-state", "stopped", timeout=30_000)
            assert _not_reloaded(page)
        _sees_nothing_of_erin(bob)
    finally:
        erin.context.close()
        bob.context.close()


def _job_start_epoch(job):
    """When Slurm started ``job`` (epoch seconds, from squeue's %S in local time)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%S"], capture_output=True, text=True, timeout=20).stdout
    return time.mktime(time.strptime(out.strip(), "%Y-%m-%dT%H:%M:%S"))


def test_end_warning_and_lab_banner_appear_when_the_session_crosses_into_its_last_minutes(hub):
    """A real 3-minute job (not the browser's clock moved: the hub and the job's server decide when
    the window starts): erin's home page and her Lab, both open before the job's last WARN seconds,
    notify and show the banner at the crossing (from Slurm's start time), once."""
    erin, bob = _home(hub, USER), _home(hub, OTHER)
    try:
        _start(hub, "w", "debug", "00:03:00")
        wait_for(lambda: _servers(hub).get("w", {}).get("ready"), 120, "server w to be ready")
        card = erin.locator("#hpc-card-w")
        expect(card).to_have_attribute("data-state", "running", timeout=30_000)
        job = card.get_attribute("data-job-id")
        crossing = _job_start_epoch(job) + WALL - WARN
        lab = erin.context.new_page()  # erin's JupyterLab in another tab of the same browser
        lab.goto(hub["base"] + f"/user/{USER}/w/lab")
        expect(lab.locator("#jp-main-dock-panel, .jp-LabShell").first).to_be_visible(timeout=60_000)
        banner = lab.locator("#jhpc-walltime-banner")
        ahead = crossing - time.time()
        assert ahead > 5, f"the Lab opened {-ahead:.0f} s after the crossing: too late to show it live"
        print(f"Lab open {ahead:.1f} s before the session's last {WARN} s")
        assert banner.count() == 0 and erin.evaluate("window._notes") == []
        # the crossing: both appear without a reload
        expect(banner).to_be_visible(timeout=int((ahead + 60) * 1000))
        banner_lag = time.time() - crossing
        notes = wait_for(lambda: erin.evaluate("window._notes"), 30, "the end notification")
        note_lag = erin.evaluate("window._noteTimes[0]") / 1000 - crossing
        print(f"banner {banner_lag:.1f} s, notification {note_lag:.1f} s after the crossing; {notes}")
        assert -3 <= note_lag <= 8, note_lag
        assert -3 <= banner_lag <= 8, banner_lag
        assert re.fullmatch(r"Your batch job reaches its wall time in 2 min: save your work now\. "
                            r"This server stops when the job ends\.", banner.inner_text().replace("\u00d7", "").strip())
        assert len(notes) == 1 and notes[0][0] == "Your session ends soon", notes
        assert re.fullmatch(rf"Server w \(job {job}\) reaches its wall time in 2 min: save your work now\.",
                            notes[0][1]), notes
        assert _not_reloaded(erin) and lab.evaluate("window._notes") == []
        # once: not on the next ticks and refreshes, not after a reload of the home page
        erin.wait_for_timeout(6000)
        assert erin.evaluate("window._notes") == notes and banner.count() == 1
        erin.reload()
        erin.wait_for_timeout(3000)
        assert erin.evaluate("window._notes") == []
        expect(erin.locator("#hpc-card-w .hpc-time-left")).to_contain_text("the job ends soon")
        _sees_nothing_of_erin(bob)
        bob.reload()
        bob.wait_for_timeout(2000)
        _sees_nothing_of_erin(bob)
    finally:
        erin.context.close()
        bob.context.close()
    if "w" in _servers(hub):
        _stop(hub, "w")


def test_hub_log_has_no_traceback(hub):
    text = (hub["tmp"] / "hub.log").read_text(errors="replace")
    assert "Traceback" not in text, text[text.find("Traceback") - 500:text.find("Traceback") + 2000]
