"""Issue 26, built parts in a real browser (Playwright + Debian's Chromium) on real Slurm: forms that
remember, Relaunch with the same settings, Edit and launch, the in-Lab wall-time banner.

One hub for the module (jupyterhub_config.example.py as shipped, with its remember_file in the
hub's state folder); the user ``erin``. Order matters and is the order below:

1. a form posted with non-default values: after Stop the next form (same server, another server,
   and after a hub restart) shows those values;
2. Relaunch on a running session's card starts a new named server with the same settings; a
   session whose values the profile no longer allows is refused like a form (400); (at the end)
   Relaunch on a finished session's note (its job was cancelled from outside) starts the same
   server with them;
3. Edit and launch opens the form pre-filled with that session's values (not the last ones
   submitted); what is changed there is what the job gets;
4. a job with a short wall time: its JupyterLab shows the wall-time banner;
5. with notifications allowed, the home page notifies when a queued session starts, and (a job with a
   short wall time) once before its end; the user's Stop leaves a "stopped by you" card until dismissed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import slurmtools
from gatewaytools import (
    chromium_page, hub_api, hub_login, notifying_page, start_filler, WRAPPER_CONFIG, ExampleHub, fill_form,
    require_gateway, wait_for,
)

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"  # docs/users.md shows these
USER = "erin"
PARTITION = "jhpc-small"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER, PARTITION, browser=True)
    tmp = tmp_path_factory.mktemp("remember26")
    config = WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py"))
    gw = ExampleHub(tmp, config, USER, f"debug {PARTITION}",
                    env={"JHPC_PARTITION": "debug", "JHPC_NAMED_SERVER_LIMIT": "20", "JHPC_APPS": ""},
                    service_token=True)
    gw.wait_up()
    fillers: list[str] = []
    try:
        with chromium_page(1100, 900) as (browser, page):
            h = {"gw": gw, "base": gw.base, "token": gw.token, "password": gw.password, "tmp": tmp, "page": page,
                 "browser": browser, "fillers": fillers}
            yield h
    finally:
        gw.stop()
        gw.cleanup("dashboard-remember.log", fillers)


def _goto(h, path, page=None):
    return hub_login(h, page or h["page"], USER, path)


def _servers(h):
    r = hub_api(h, "GET", f"/users/{USER}")
    assert r.status_code == 200, r.text
    return r.json().get("servers", {})


def _stop(h, server):
    r = hub_api(h, "DELETE", f"/users/{USER}/servers/{server}")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server not in _servers(h), 60, f"server {server} to stop")


def _job_of(h, server):
    """The job id of a running server (its home-page card)."""
    page = _goto(h, "/hub/home")
    card = page.locator(f"#hpc-card-{server}")
    card.wait_for(timeout=30_000)
    return card.get_attribute("data-job-id")


def _job_settings(job):
    """(partition, cores, memory, time limit) as Slurm has them for ``job``."""
    r = subprocess.run(["squeue", "-h", "-j", job, "-o", "%P %C %m %l"], capture_output=True, text=True, timeout=20)
    return tuple(r.stdout.split())


def _shot(page, name, full_page=False):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


def _submit_and_wait_ready(page, server, timeout=150_000):
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(rf"/user/{USER}/{server}/"), timeout=timeout)


VALUES = {"partition": PARTITION, "nprocs": "1", "memory": "768M", "runtime": "00:20:00"}  # none the default


def _form_values(page):
    return {name: page.input_value(f"[name='custom.{name}']") for name in VALUES}


def test_form_remembers_the_last_values_after_stop_and_a_hub_restart(hub):
    page = _goto(hub, f"/hub/spawn/{USER}/r1")
    page.wait_for_selector("#profile-radio-small")
    assert page.is_checked("#profile-radio-small")  # first visit: the site's default profile
    assert _form_values(page) != VALUES
    fill_form(page, "custom", **VALUES)
    _submit_and_wait_ready(page, "r1")
    _stop(hub, "r1")
    # the same server's form, then a new server's: the values are there, the profile chosen
    for server in ("r1", "r-new"):
        page = _goto(hub, f"/hub/spawn/{USER}/{server}")
        page.wait_for_selector("#profile-radio-custom")
        assert page.is_checked("#profile-radio-custom"), server
        assert _form_values(page) == VALUES, server
    page.locator("#profile-custom").scroll_into_view_if_needed()
    _shot(page, "form-remembered.png")
    # kept across a hub restart (the file next to the hub's database, 0600)
    forms = hub["tmp"] / "forms.json"
    assert oct(forms.stat().st_mode & 0o777) == "0o600"
    gw = hub["gw"]
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(30)
    gw.launch()
    gw.wait_up("the restarted hub")
    page = _goto(hub, f"/hub/spawn/{USER}/r-other")
    page.wait_for_selector("#profile-radio-custom")
    assert page.is_checked("#profile-radio-custom") and _form_values(page) == VALUES


def test_relaunch_a_running_session_and_a_refused_one(hub):
    from playwright.sync_api import expect

    page = _goto(hub, f"/hub/spawn/{USER}/r2")
    fill_form(page, "custom", partition="debug", nprocs="3", memory="640M", runtime="00:30:00")
    _submit_and_wait_ready(page, "r2")
    job = _job_of(hub, "r2")
    assert _job_settings(job) == ("debug", "3", "640M", "30:00")
    # the running session's card: Relaunch starts a new named server with the same settings
    page = _goto(hub, "/hub/home")
    card = page.locator("#hpc-card-r2")
    expect(card.locator(".hpc-relaunch-target")).to_contain_text("r2-2")
    card.scroll_into_view_if_needed()
    _shot(page, "card-relaunch.png")
    card.locator(".hpc-relaunch").click()
    page.wait_for_url(re.compile(rf"/user/{USER}/r2-2/"), timeout=150_000)
    job3 = _job_of(hub, "r2-2")
    assert job3 != job and _job_settings(job3) == ("debug", "3", "640M", "30:00")
    assert "r2" in _servers(hub), "the relaunch left the running session alone"
    # the same form post with a value the profile does not allow: 400, nothing submitted
    page = _goto(hub, "/hub/home")
    before = set(slurmtools.live_jobs((USER,)))
    page.evaluate("""() => {
        const f = document.querySelector('#hpc-card-r2 .hpc-relaunch-form');
        f.querySelector("[name='custom.nprocs']").value = '99';
        f.submit();
    }""")
    page.wait_for_load_state("load")
    error = page.locator(".spawn-error-msg, .alert-danger").first
    expect(error).to_contain_text("CPU cores")
    assert set(slurmtools.live_jobs((USER,))) == before
    _stop(hub, "r2-2")
    _stop(hub, "r2")


def test_edit_and_launch_prefills_that_sessions_values(hub):
    from playwright.sync_api import expect

    page = _goto(hub, f"/hub/spawn/{USER}/e1")
    fill_form(page, "custom", partition="debug", nprocs="2", memory="700M", runtime="00:40:00")
    _submit_and_wait_ready(page, "e1")
    # a later form post with other values: those are now the remembered ones
    page = _goto(hub, f"/hub/spawn/{USER}/e-other")
    fill_form(page, "small", runtime="00:15:00")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(rf"/user/{USER}/e-other/"), timeout=150_000)
    _stop(hub, "e-other")
    page = _goto(hub, "/hub/home")
    page.locator("#hpc-card-e1 .hpc-edit").click()
    page.wait_for_url(re.compile(rf"/hub/spawn/{USER}/e1-2$"))
    page.wait_for_selector("#profile-radio-custom")
    assert page.is_checked("#profile-radio-custom")  # the session's profile, not the last one (small)
    assert _form_values(page) == {"partition": "debug", "nprocs": "2", "memory": "700M", "runtime": "00:40:00"}
    page.fill("[name='custom.nprocs']", "4")
    _submit_and_wait_ready(page, "e1-2")
    assert _job_settings(_job_of(hub, "e1-2")) == ("debug", "4", "700M", "40:00")
    _stop(hub, "e1-2")
    _stop(hub, "e1")


def test_lab_shows_the_walltime_banner_for_a_job_ending_soon(hub):
    from playwright.sync_api import expect

    page = _goto(hub, f"/hub/spawn/{USER}/wt")
    # 10 minutes of wall time: inside the last 15 minutes (walltime_warning) from the start
    fill_form(page, "custom", partition="debug", nprocs="1", memory="512M", runtime="00:10:00")
    t0 = time.monotonic()
    _submit_and_wait_ready(page, "wt")
    page.wait_for_url(re.compile(rf"/user/{USER}/wt/lab"), timeout=60_000)
    banner = page.locator("#jhpc-walltime-banner")
    expect(banner).to_be_visible(timeout=60_000)
    expect(banner).to_contain_text("reaches its wall time in")
    text = banner.inner_text()
    minutes = int(re.search(r"in (\d+) min", text).group(1))
    assert 5 <= minutes <= 10, text
    print(f"banner shown {time.monotonic() - t0:.1f} s after the form was posted: {text!r}")
    # the Lab itself still works under the banner (its menus stay reachable), and it can be dismissed
    expect(page.locator("#jp-main-dock-panel, .jp-LabShell").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1500)  # Lab's first layout
    _shot(page, "lab-walltime-banner.png")
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="File").click()
    expect(page.locator(".lm-Menu").first).to_be_visible()
    page.keyboard.press("Escape")
    banner.locator("button").click()
    expect(banner).to_have_count(0)
    _stop(hub, "wt")


def test_notification_when_a_queued_session_starts(hub):
    from playwright.sync_api import expect

    page = notifying_page(hub["browser"], hub["base"])
    context = page.context
    try:
        # a running 2-core job of the user's own fills jhpc-small (2 cores): the next start there waits
        filler = start_filler(USER, PARTITION, hub["fillers"])
        _goto(hub, f"/hub/spawn/{USER}/nq", page)
        fill_form(page, "custom", partition=PARTITION, nprocs="1", memory="512M", runtime="00:10:00")
        page.click("form button[type=submit]")
        expect(page.locator("#progress-message")).to_contain_text("waiting in the queue", timeout=30_000)
        page.goto(hub["base"] + "/hub/home")
        card = page.locator("#hpc-card-nq")
        expect(card).to_have_attribute("data-state", "queued")
        expect(page.locator("#hpc-notify")).to_be_hidden()  # allowed already: nothing to ask
        assert page.evaluate("Notification.permission") == "granted"
        assert page.evaluate("window._notes") == []
        t0 = time.monotonic()
        subprocess.run(["scancel", filler], check=True, timeout=20)
        notes = wait_for(lambda: page.evaluate("window._notes"), 60, "the notification")
        print(f"notified {time.monotonic() - t0:.1f} s after the queue freed: {notes}")
        assert notes == [["Your session started", "nq: the batch job left the queue and is starting."]], notes
        page.wait_for_timeout(6000)  # the next refreshes: no second notification for the same start
        # (its 10 minutes of wall time are inside walltime_warning: "ends soon" may follow, once)
        later = page.evaluate("window._notes")
        assert [n for n in later if n[0] == "Your session started"] == notes, later
        assert len([n for n in later if n[0] == "Your session ends soon"]) <= 1, later
    finally:
        context.close()
    _stop(hub, "nq")


def test_notification_before_the_end_then_stop_leaves_a_stopped_card(hub):
    """A running session with 10 minutes of wall time (inside walltime_warning, 900 s, from its
    start): the home page (opened at once, before the hub knows the job's start: its live refresh
    brings the time left) notifies once, naming the server, the job and the time left; not again on
    the next refreshes or a reload. Then the user's own Stop on that page leaves a "stopped by you"
    card with Relaunch and the log, which Dismiss removes (also after a reload)."""
    from playwright.sync_api import expect

    page = notifying_page(hub["browser"], hub["base"])
    context = page.context
    try:
        # servers the tests above stopped with the "tester" service's token (_stop): their cards do
        # not blame the user (in this module's order: wt, e1, e1-2, r2, r2-2, e-other, nq...)
        _goto(hub, "/hub/home", page)
        by_service = page.locator(".hpc-ended[data-state=stopped]")
        for i in range(by_service.count()):
            text = by_service.nth(i).inner_text()
            assert "was stopped by the hub (its tester service)" in text and "by you" not in text, text
        print(f"{by_service.count()} cards of servers the tester service stopped")
        _goto(hub, f"/hub/spawn/{USER}/we", page)
        fill_form(page, "custom", partition="debug", nprocs="1", memory="512M", runtime="00:10:00")
        _submit_and_wait_ready(page, "we")
        t0 = time.monotonic()
        page.goto(hub["base"] + "/hub/home")
        card = page.locator("#hpc-card-we")
        expect(card).to_have_attribute("data-state", "running")
        job = card.get_attribute("data-job-id")
        notes = wait_for(lambda: page.evaluate("window._notes"), 60, "the end notification")
        print(f"end notification {time.monotonic() - t0:.1f} s after the home page opened: {notes}")
        assert len(notes) == 1 and notes[0][0] == "Your session ends soon", notes
        m = re.fullmatch(rf"Server we \(job {job}\) reaches its wall time in (\d+) min: save your work now\.", notes[0][1])
        assert m and 5 <= int(m.group(1)) <= 10, notes
        expect(card.locator(".hpc-time-left")).to_contain_text("the job ends soon")
        page.wait_for_timeout(6000)  # the next refreshes: no second notification for this job
        assert len(page.evaluate("window._notes")) == 1
        page.reload()
        page.wait_for_timeout(2500)
        assert page.evaluate("window._notes") == []  # another page of the user's: not again
        # the user's own Stop (the home page's button): a finished card, "stopped by you"
        t1 = time.monotonic()
        page.locator('tr.home-server-row[data-server-name="we"] .stop-server').click()
        note = page.locator("#hpc-ended-we")
        expect(note).to_contain_text("was stopped by you", timeout=60_000)
        print(f"stopped card {time.monotonic() - t1:.1f} s after Stop")
        expect(note).to_have_attribute("data-state", "stopped")
        expect(note).to_contain_text(f"its batch job {job}")
        expect(note.locator(".hpc-relaunch")).to_have_text("Relaunch with the same settings")
        expect(note.locator(".hpc-finished-log")).to_have_attribute("href", re.compile(rf"hpc/log/{USER}/we\?job={job}$"))
        assert "we" not in _servers(hub)
        page.reload()  # kept through the hub's clear_state (saved in the server's state)
        expect(note).to_contain_text("was stopped by you")
        note.scroll_into_view_if_needed()
        _shot(page, "stopped-card.png")
        note.locator(".hpc-dismiss").click()
        page.wait_for_load_state("load")
        expect(page.locator("#hpc-ended-we")).to_have_count(0)
        page.reload()
        expect(page.locator("#hpc-ended-we")).to_have_count(0)
        assert len(page.evaluate("window._notes")) == 0
    finally:
        context.close()
    if "we" in _servers(hub):
        _stop(hub, "we")


def test_relaunch_a_finished_session(hub):
    """A session whose job ended (cancelled from outside): the home page's job-ended note offers
    Relaunch, which starts the same server with the same settings."""
    from playwright.sync_api import expect

    page = _goto(hub, f"/hub/spawn/{USER}/r3")
    fill_form(page, "custom", partition="debug", nprocs="3", memory="640M", runtime="00:30:00")
    _submit_and_wait_ready(page, "r3")
    job = _job_of(hub, "r3")
    subprocess.run(["scancel", job], check=True, timeout=20)
    wait_for(lambda: "r3" not in _servers(hub), 60, "the hub to notice the job's end")
    page = _goto(hub, "/hub/home")
    note = page.locator("#hpc-ended-r3")
    expect(note).to_contain_text("was cancelled", timeout=20_000)
    expect(note.locator(".hpc-relaunch")).to_have_text("Relaunch with the same settings")
    _shot(page, "ended-relaunch.png")
    note.locator(".hpc-relaunch").click()
    page.wait_for_url(re.compile(rf"/user/{USER}/r3/"), timeout=150_000)
    job2 = _job_of(hub, "r3")
    assert job2 != job and _job_settings(job2) == ("debug", "3", "640M", "30:00")
    _stop(hub, "r3")


def test_hub_log_has_no_traceback(hub):
    """The refused relaunch above (a user mistake) and everything else here: no traceback."""
    text = (hub["tmp"] / "hub.log").read_text(errors="replace")
    assert "Traceback" not in text, text[text.find("Traceback") - 500:text.find("Traceback") + 2000]
