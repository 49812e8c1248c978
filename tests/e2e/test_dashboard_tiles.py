"""Issue 26, the dashboard's start tiles and finished cards, in a real browser (Playwright + Debian's
Chromium) on real Slurm.

One hub for the module (jupyterhub_config.example.py as shipped, with its apps: JupyterLab small and
custom, VS Code, the desktop); users ``erin`` (who starts) and ``bob`` (who must not touch erin's
cards). Order matters and is the order below:

1. the home page shows one tile per profile, reachable with the keyboard;
2. a tile opens the spawn form of a new server with its profile selected; a spawn from it reaches
   ready; the same tile again chooses another new server name;
3. that session's job cancelled from outside: its finished card shows how it ended, the exit code,
   the log link and Relaunch; bob cannot dismiss it (404), a post without the XSRF token is refused
   (403), unknown job ids are 404; Dismiss removes it, also after a reload and a hub restart;
4. no traceback in the hub log.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from gatewaytools import chromium_page, hub_api, hub_login, WRAPPER_CONFIG, ExampleHub, require_gateway, wait_for

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"  # docs/users.md shows these
USER, OTHER = "erin", "bob"
PROFILES = ["small", "custom", "vscode", "desktop"]  # the example's two and its apps (JHPC_APPS default)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER, "jhpc-small", browser=True)
    tmp = tmp_path_factory.mktemp("tiles26")
    config = WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py"))
    gw = ExampleHub(tmp, config, USER, "debug jhpc-small",
                    env={"JHPC_PARTITION": "debug", "JHPC_NAMED_SERVER_LIMIT": "20",
                         "JHPC_DEMO_USERS": f"{USER} {OTHER}"}, service_token=True)
    gw.wait_up()
    try:
        with chromium_page(1100, 900) as (browser, page):
            h = {"gw": gw, "base": gw.base, "token": gw.token, "password": gw.password, "tmp": tmp, "page": page,
                 "browser": browser}
            yield h
    finally:
        gw.stop()
        gw.cleanup("dashboard-tiles.log")


def _servers(h, user=USER):
    r = hub_api(h, "GET", f"/users/{user}")
    assert r.status_code == 200, r.text
    return r.json().get("servers", {})


def _shot(page, name, **kw):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), **kw)


def test_one_tile_per_profile_reachable_with_the_keyboard(hub):
    from playwright.sync_api import expect

    page = hub_login(hub, hub["page"], USER)
    tiles = page.locator("#hpc-tiles a.hpc-tile")
    expect(tiles).to_have_count(len(PROFILES))
    assert tiles.evaluate_all("ts => ts.map(t => t.dataset.profile)") == PROFILES
    expect(page.locator("#hpc-tile-vscode .hpc-tile-title")).to_have_text("VS Code (code-server)")
    expect(page.locator("#hpc-tile-small .hpc-tile-description")).to_contain_text("For notebooks")
    expect(page.locator("#hpc-tile-vscode .hpc-tile-icon")).to_have_text("VC")
    _shot(page, "home-tiles.png", clip={"x": 0, "y": 0, "width": 1100, "height": 560})
    # keyboard: Tab reaches the tiles (links), Enter opens one
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "hpc-tile-custom":
            break
    else:
        raise AssertionError("Tab never reached the custom tile")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/hub/spawn/{USER}/custom$"))
    page.wait_for_selector("#profile-radio-custom")
    assert page.is_checked("#profile-radio-custom")


def test_a_tile_opens_its_form_and_the_spawn_reaches_ready(hub):
    page = hub_login(hub, hub["page"], USER)
    t0 = time.monotonic()
    page.click("#hpc-tile-small")
    page.wait_for_url(re.compile(rf"/hub/spawn/{USER}/small$"))
    page.wait_for_selector("#profile-radio-small")
    assert page.is_checked("#profile-radio-small")
    assert not page.is_checked("#profile-radio-custom")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(rf"/user/{USER}/small/"), timeout=150_000)
    print(f"tile click to a ready server: {time.monotonic() - t0:.1f} s")
    assert _servers(hub)["small"]["ready"]
    # the same tile again: a new server, not the running one
    page = hub_login(hub, page, USER)
    page.click("#hpc-tile-small")
    page.wait_for_url(re.compile(rf"/hub/spawn/{USER}/small-2$"))
    assert page.is_checked("#profile-radio-small")


def _job_of(page, server):
    card = page.locator(f"#hpc-card-{server}")
    card.wait_for(timeout=30_000)
    return card.get_attribute("data-job-id")


def _post(page, h, path, form):
    """A form post from ``page``'s browser context (its cookies): the status code."""
    return page.context.request.post(h["base"] + path, form=form, max_redirects=0).status


def test_finished_card_stays_until_dismissed_by_its_owner(hub):
    from playwright.sync_api import expect

    page = hub_login(hub, hub["page"], USER)
    job = _job_of(page, "small")
    subprocess.run(["scancel", job], check=True, timeout=20)
    wait_for(lambda: "small" not in _servers(hub), 60, "the hub to notice the job's end")
    page = hub_login(hub, page, USER)
    card = page.locator("#hpc-ended-small")
    expect(card).to_contain_text("was cancelled", timeout=20_000)
    expect(card.locator(".hpc-exit-code")).to_contain_text("Exit code")
    expect(card.locator(".hpc-relaunch")).to_have_text("Relaunch with the same settings")
    expect(card.locator(".hpc-dismiss")).to_have_text("Dismiss")
    log = card.locator("a.hpc-finished-log")
    expect(log).to_have_attribute("href", f"/hub/hpc/log/{USER}/small?job={job}")
    _shot(page, "finished-card.png", full_page=True)
    page.wait_for_timeout(6000)  # the home page's live refresh keeps the card (and its Dismiss)
    expect(card.locator(".hpc-dismiss")).to_have_count(1)
    r = page.context.request.get(hub["base"] + f"/hub/hpc/log/{USER}/small?job={job}")
    assert r.status == 200 and job in r.text(), r.text()[:500]
    assert page.context.request.get(hub["base"] + f"/hub/hpc/log/{USER}/small?job=1{job}").status == 404
    xsrf = page.evaluate("window.jhdata.xsrf_token")
    path = f"/hub/hpc/dismiss/{USER}/small"
    # bob, logged in with his own XSRF token, cannot dismiss erin's card
    other = hub["browser"].new_context()
    try:
        bob = hub_login(hub, other.new_page(), OTHER)
        expect(bob.locator("#hpc-tiles a.hpc-tile")).to_have_count(len(PROFILES))  # his own tiles
        bob_xsrf = bob.evaluate("window.jhdata.xsrf_token")
        assert _post(bob, hub, path, {"_xsrf": bob_xsrf, "job_id": job}) == 404
        assert _post(bob, hub, f"/hub/hpc/dismiss/{OTHER}/small", {"_xsrf": bob_xsrf, "job_id": job}) == 404
    finally:
        other.close()
    assert _post(page, hub, path, {"job_id": job}) == 403  # no XSRF token
    assert _post(page, hub, path, {"_xsrf": xsrf, "job_id": "999999999"}) == 404
    assert _post(page, hub, f"/hub/hpc/dismiss/{USER}/nosuch", {"_xsrf": xsrf, "job_id": job}) == 404
    assert _post(page, hub, path, {"_xsrf": xsrf, "job_id": "1;reboot"}) == 400
    page.reload()
    expect(card.locator(".hpc-dismiss")).to_have_count(1)  # nothing above removed it
    # erin dismisses it with the keyboard: the focus stays on the button through the page's live
    # refresh (every 5 s; an unchanged note is not rebuilt)
    card.locator(".hpc-dismiss").focus()
    page.wait_for_timeout(6000)
    assert page.evaluate("document.activeElement.classList.contains('hpc-dismiss')"), "the refresh took the focus"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/hub/home$"))
    expect(page.locator("#hpc-ended-small")).to_have_count(0)
    page.reload()
    page.wait_for_timeout(6000)  # the live refresh does not bring it back either
    expect(page.locator("#hpc-ended-small")).to_have_count(0)
    # a hub restart: still gone (the server's saved state no longer holds the ending)
    gw = hub["gw"]
    gw.proc.terminate()
    gw.proc.wait(30)
    gw.launch()
    gw.wait_up("the restarted hub")
    page = hub_login(hub, page, USER)
    expect(page.locator("#hpc-tiles a.hpc-tile")).to_have_count(len(PROFILES))
    expect(page.locator("#hpc-ended-small")).to_have_count(0)


def test_hub_log_has_no_traceback(hub):
    text = (hub["tmp"] / "hub.log").read_text(errors="replace")
    assert "Traceback" not in text, text[text.find("Traceback") - 500:text.find("Traceback") + 2000]
