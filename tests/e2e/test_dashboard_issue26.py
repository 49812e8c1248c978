"""Issue 26 items 1 to 7 in a real browser (Playwright + Debian's Chromium) on real Slurm.

One hub for the module, started fresh by this module: jupyterhub_config.example.py as shipped,
plus the apps example's "A web app" profile as shipped (its default folder) and a profile whose job
dies at once. The user ``erin`` is this module's own. Order matters and is the order below:

1. the very first form after the hub started already shows the partitions' facts and limits;
2. a refused form keeps everything entered, names the field by its label and highlights it;
3. the "A web app" profile lands on a page, not on a raw 404 (its server stays running for 6);
4. labels and words: "Wall time" everywhere, "1 core" (not "1 cores", never "? cores"); the
   failure page's log tail wraps (nothing cut off on the right) and the log path is a link
   to the whole log;
5. the hub log after a refused form, a failed start and a cancel has no traceback, no "Task
   exception was never retrieved", no proxy 404 error, no "unhandled user_options"; SIGTERM ends
   the hub in < 5 s while a server runs, and that server's job keeps running.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from gatewaytools import chromium_page, hub_api, ExampleHub, fill_form, require_gateway, start_filler, wait_for

REPO = Path(__file__).resolve().parents[2]
USER = "erin"
PARTITION = "jhpc-small"

WRAPPER_CONFIG = """
c = get_config()  # noqa
load_subconfig({example!r})
_profiles = list(c.ProfilesSpawner.profiles)
# the apps example as shipped (its "A web app" profile with its default folder), next to the example's
load_subconfig({apps!r})
_webapp = [p for p in c.ProfilesSpawner.profiles if p["key"] == "webapp"]
c.ProfilesSpawner.profiles = _profiles + _webapp + [{{
    "key": "broken", "display": "Broken environment (test)", "class": "batchspawner.SlurmSpawner",
    "config": {{"req_partition": "debug", "req_memory": "256M", "req_runtime": "00:10:00",
               "req_prologue": "echo 'module load python/3.99: no such module {long}' >&2; exit 7"}},
}}]
c.SlurmSpawner.status_interval = 2
c.SlurmSpawner.session_interval = 2
c.SlurmSpawner.startup_poll_interval = 0.5
import os  # noqa: E402
c.JupyterHub.services = list(c.JupyterHub.services) + [
    {{"name": "tester", "api_token": os.environ["JHPC_TEST_SERVICE_TOKEN"]}}]
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [
    {{"name": "tester-role", "scopes": ["admin:users", "admin:servers", "read:users"], "services": ["tester"]}}]
"""
LONG_WORD = "x" * 300  # one long log line: the failure page must wrap it, not cut it off


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER, PARTITION, browser=True)
    tmp = tmp_path_factory.mktemp("dash26")
    config = WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py"),
                                   apps=str(REPO / "examples" / "apps" / "jupyterhub_config.py"),
                                   long=LONG_WORD)
    # without JHPC_WEBAPP_DIR: the shipped default folder
    gw = ExampleHub(tmp, config, USER, f"debug {PARTITION}",
                    env={"JHPC_PARTITION": "debug", "JHPC_NAMED_SERVER_LIMIT": "20"},
                    env_drop=("JHPC_WEBAPP_DIR",), service_token=True)
    fillers: list[str] = []
    gw.wait_up()
    try:
        with chromium_page(1000, 900) as (browser, page):
            h = {"base": gw.base, "token": gw.token, "password": gw.password, "tmp": tmp, "proc": gw.proc,
                 "page": page, "fillers": fillers, "log": gw.log_path, "up": gw.up}

            def restart():  # the same hub again (same database), its output appended to the same log
                h["proc"] = gw.launch()
                gw.wait_up("the restarted hub")
                return h["proc"]

            h["restart"] = restart
            yield h
    finally:
        gw.stop()
        gw.cleanup("dashboard-issue26.log", fillers)


def test_first_form_after_hub_start_knows_the_partitions(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    page.goto(hub["base"] + "/hub/login")
    page.fill("#username_input", USER)
    page.fill("#password_input", hub["password"])
    page.click("#login_submit")
    page.wait_for_selector("#profile-radio-small")  # the very first form this hub renders
    facts = page.locator("#profile-custom .hpc-partition[data-partition='jhpc-small']")
    expect(facts).to_have_count(1, timeout=1)
    expect(facts).to_contain_text("at most 2 cores per node, 4 h 00 min per job", timeout=1)
    expect(page.locator("#profile-custom .hpc-partition[data-partition='debug']")).to_have_count(1, timeout=1)


def test_refused_form_keeps_values_names_the_label_and_marks_the_field(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    page.goto(hub["base"] + "/hub/spawn")
    # more cores than jhpc-small allows (2 per node): refused on the server before anything is submitted
    fill_form(page, "custom", partition=PARTITION, nprocs="4", memory="1G", runtime="00:30:00")
    # the browser marks these at once and submits nothing (test_form_facts_live); this test is about
    # the server's refusal, so the browser's check is bypassed as a script or an old browser would
    page.evaluate("document.getElementById('spawn_form').noValidate = true")
    page.click("form button[type=submit]")
    error = page.locator(".spawn-error-msg, .alert-danger").first
    expect(error).to_contain_text("CPU cores")
    expect(error).to_contain_text("more than partition jhpc-small allows")
    assert "'nprocs'" not in error.inner_text(), error.inner_text()
    # everything entered is still there
    assert page.is_checked("#profile-radio-custom")
    assert page.input_value("[name='custom.partition']") == PARTITION
    assert page.input_value("[name='custom.nprocs']") == "4"
    assert page.input_value("[name='custom.memory']") == "1G"
    assert page.input_value("[name='custom.runtime']") == "00:30:00"
    # the field is marked (Bootstrap's is-invalid, aria-invalid) with the rule under it
    nprocs = page.locator("[name='custom.nprocs']")
    expect(nprocs).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(nprocs).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#profile-custom .invalid-feedback:visible")).to_contain_text("more than partition")
    assert page.locator(".is-invalid").count() == 1
    # a malformed value: the same, named by its label "Wall time"
    fill_form(page, "custom", nprocs="2", runtime="half an hour")
    page.evaluate("document.getElementById('spawn_form').noValidate = true")
    page.click("form button[type=submit]")
    error = page.locator(".spawn-error-msg, .alert-danger").first
    expect(error).to_contain_text("Wall time")
    assert "'runtime'" not in error.inner_text(), error.inner_text()
    assert page.input_value("[name='custom.runtime']") == "half an hour"
    assert page.input_value("[name='custom.nprocs']") == "2"
    assert page.input_value("[name='custom.partition']") == PARTITION
    expect(page.locator("[name='custom.runtime']")).to_have_class(re.compile(r"\bis-invalid\b"))
    # the next plain visit shows a fresh form again (the kept values were for that one answer)
    page.goto(hub["base"] + "/hub/spawn")
    page.wait_for_selector("#profile-radio-small")
    assert page.locator(".is-invalid").count() == 0
    assert slurmtools.live_jobs((USER,)) == {}, "a refused form submitted a job"


def test_web_app_profile_lands_on_a_page(hub):
    page = hub["page"]
    page.goto(hub["base"] + f"/hub/spawn/{USER}/web")
    fill_form(page, "webapp", memory="512M")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(rf"/user/{USER}/web/webapp/"), timeout=150_000)
    page.wait_for_load_state("load")
    body = page.locator("body").inner_text()
    assert "Error code: 404" not in body and "Error response" not in body, body[:500]
    assert page.locator("a").count() >= 1, body[:500]  # the folder's files, as links
    assert page.title(), "the page has a title"


def test_words_on_the_form_card_and_failure_page(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    page.goto(hub["base"] + "/hub/spawn")
    page.wait_for_selector("#profile-radio-small")
    labels = [page.inner_text(f"label[for='{i}']").strip()
              for i in page.eval_on_selector_all("input[name$='.runtime']", "es => es.map(e => e.id)")]
    assert len(labels) >= 3 and set(labels) == {"Wall time"}, labels
    # the running web app's card (1 core): "1 core", never "1 cores" or "? cores"
    page.goto(hub["base"] + "/hub/home")
    card = page.locator("#hpc-card-web .hpc-resources")
    expect(card).to_contain_text("1 core")
    text = page.locator("body").inner_text()
    assert not re.search(r"\b1 cores\b", text) and "? cores" not in text, text
    # a job that dies: the failure page's log tail wraps and the whole log is a link
    page.goto(hub["base"] + f"/hub/spawn/{USER}/f")
    fill_form(page, "broken")
    page.click("form button[type=submit]")
    page.wait_for_selector("#hpc-failed:visible, .spawn-error-msg", timeout=60_000)
    box = page.locator("#hpc-failed:visible, .spawn-error-msg").first
    expect(box).to_contain_text("exit code 7")
    tail = box.locator("pre.hpc-log-tail")
    expect(tail).to_contain_text(LONG_WORD[:50])
    sizes = tail.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert sizes[0] <= sizes[1] + 1, f"log tail cut off on the right: scrollWidth {sizes[0]} > {sizes[1]}"
    link = box.locator("a.hpc-log-link")
    expect(link).to_have_count(1)
    link.click()
    expect(page.locator("#hpc-log-text")).to_contain_text("module load python/3.99: no such module")


def _queue_filler(h):
    """A 2-core job of the user's own on jhpc-small (at most 2 cores per node), running: the
    module's next start in that partition waits in the queue behind it until it is cancelled."""
    filler = h.get("filler")
    if filler and slurmtools.job_state(filler) == "RUNNING":
        return filler
    filler = h["filler"] = start_filler(USER, PARTITION, h["fillers"])
    return filler


def _start_queued(h, server):
    """Start ``server`` from the form in jhpc-small behind the filler; the spawn page says it waits."""
    from playwright.sync_api import expect

    filler = _queue_filler(h)
    page = h["page"]
    page.goto(h["base"] + f"/hub/spawn/{USER}/{server}")
    if "/hub/login" in page.url:  # these tests run alone too (-k)
        page.fill("#username_input", USER)
        page.fill("#password_input", h["password"])
        page.click("#login_submit")
    fill_form(page, "custom", partition=PARTITION, nprocs="1", memory="512M", runtime="00:10:00")
    page.click("form button[type=submit]")
    expect(page.locator("#progress-message")).to_contain_text("waiting in the queue", timeout=30_000)
    job = wait_for(lambda: [j for j, s in slurmtools.live_jobs((USER,)).items() if j != filler and s == "PENDING"
                            and j not in h.setdefault("seen_jobs", set())], 30, "the queued job")
    assert len(job) == 1, job
    h["seen_jobs"].add(job[0])
    return job[0]


# every text and width the spawn page's bar and message take, and the event log (a flash is caught)
_RECORD_JS = """() => {
  window._seen = [];
  const note = () => window._seen.push([document.querySelector('#progress-bar').getAttribute('aria-valuenow'),
                                       document.querySelector('#progress-message').innerText]);
  const obs = new MutationObserver(note);
  for (const sel of ['#progress-bar', '#progress-message', '#progress-log']) {
    obs.observe(document.querySelector(sel), {attributes: true, childList: true, subtree: true, characterData: true});
  }
}"""


def test_cancel_never_says_ready(hub):
    """Item 3: Cancel on the spawn page of a queued start: no "Server ready", ever."""
    from playwright.sync_api import expect

    page = hub["page"]
    job = _start_queued(hub, "q3")
    page.evaluate(_RECORD_JS)
    page.click("#hpc-cancel")
    expect(page.locator("#hpc-cancelled")).to_be_visible(timeout=30_000)
    wait_for(lambda: slurmtools.job_state(job) not in ("PENDING", "RUNNING"), 30, "the job's cancel")
    time.sleep(4)  # late events, and the event stream's reconnect
    seen = page.evaluate("window._seen")
    log = page.locator("#progress-log").inner_text()
    body = page.locator("body").inner_text()
    ready = [s for s in seen if "ready" in (s[1] or "").lower()]
    assert not ready, f"the cancelled start said ready: {ready}"
    assert "Server ready" not in log, log
    assert "Server ready" not in body, body
    assert page.url.endswith(f"/hub/spawn-pending/{USER}/q3") or "/spawn" in page.url, page.url
    expect(page.locator("#hpc-start-again-cancelled")).to_be_visible()


def test_job_cancelled_from_outside_says_so(hub):
    """Item 5 (a, b): an admin's scancel of a queued start is not "Start cancelled"; the home
    page's note says the server never started, with Start again."""
    from playwright.sync_api import expect

    page = hub["page"]
    job = _start_queued(hub, "x5")
    subprocess.run(["scancel", job], check=True, timeout=30)  # the admin, as root, from outside the hub
    failed = page.locator("#hpc-failed")
    expect(failed).to_be_visible(timeout=30_000)
    expect(page.locator("#hpc-cancelled")).to_be_hidden()
    text = failed.inner_text()
    assert "administrator" in text and "batch system" in text, text
    assert job in text, text
    expect(page.locator("#hpc-start-again")).to_be_visible()
    # the usage log says the same: a failure, not the user's cancel
    rows = [r for r in hub["tmp"].joinpath("usage.jsonl").read_text().splitlines() if f'"{job}"' in r]
    assert any('"fail"' in r and '"cancelled by the user"' not in r for r in rows), rows
    # the home page: this server never started: no "work not saved is lost", a Start again button
    page.goto(hub["base"] + "/hub/home")
    note = page.locator("#hpc-ended-x5")
    expect(note).to_be_visible(timeout=10_000)
    words = note.inner_text()
    assert "did not start" in words and "Work not saved" not in words and "stopped" not in words, words
    again = note.locator("a.hpc-start-again")
    expect(again).to_have_attribute("href", re.compile(rf"/hub/spawn/{USER}/x5$"))


def test_spawn_page_tells_one_story_and_stop_updates_the_card(hub):
    """Items 4 and 5 (c): queued card while queued with a live "Waiting for"; "running on" in the
    message and the card together; Stop on the home page updates the card without a reload."""
    from playwright.sync_api import expect

    page = hub["page"]
    _start_queued(hub, "q4")
    card = page.locator("#hpc-pending-card .hpc-card")
    expect(card).to_have_attribute("data-state", "queued", timeout=10_000)
    wait = card.locator(".hpc-wait")
    first = wait.inner_text()
    time.sleep(3.5)
    later = wait.inner_text()
    assert first != later, f"'Waiting for' frozen at {first!r}"
    # the filler ends: the job runs; the moment the message says so, the card says so too
    slurmtools.cancel([hub.pop("filler")])
    story = page.wait_for_function(
        """() => {
          const m = document.querySelector('#progress-message');
          if (!m || !/is running on/.test(m.innerText)) return null;
          const c = document.querySelector('#hpc-pending-card .hpc-card');
          return {message: m.innerText, state: c ? c.dataset.state : null, card: c ? c.innerText : ''};
        }""", timeout=60_000).json_value()
    assert story["state"] in ("starting", "running"), story
    assert "PENDING" not in story["card"] and "Queue position" not in story["card"], story
    node = re.search(r"is running on (\S+?);", story["message"]).group(1)
    assert node in story["card"], story
    page.wait_for_url(re.compile(rf"/user/{USER}/q4/"), timeout=120_000)
    # the home page: Stop turns the card to stopped, no reload
    page.goto(hub["base"] + "/hub/home")
    card = page.locator("#hpc-card-q4")
    expect(card).to_have_attribute("data-state", "running")
    expect(card.locator(".hpc-time-left")).to_be_visible()
    page.evaluate("window._not_reloaded = true")
    page.click(f"tr.home-server-row[data-server-name='q4'] .stop-server")
    expect(card).to_have_attribute("data-state", "stopped", timeout=20_000)
    expect(card.locator(".hpc-time-left")).to_have_count(0)
    assert "running" not in card.locator(".hpc-state").inner_text()
    assert page.evaluate("window._not_reloaded === true"), "the page reloaded"


def test_hub_log_is_quiet_and_sigterm_is_quick(hub):
    # a cancel: a start that waits in the queue behind a filler, then stopped
    r = subprocess.run(["sudo", "-u", USER, "sbatch", "--parsable", "-p", PARTITION, "-c", "2", "-t", "10",
                        "-J", "jhpc-filler", "-o", "/dev/null", "--wrap", "sleep 600"],
                       capture_output=True, text=True, timeout=30, cwd="/tmp")
    assert r.returncode == 0, r.stderr
    filler = r.stdout.strip().split(";")[0]
    hub["fillers"].append(filler)
    wait_for(lambda: slurmtools.job_state(filler) == "RUNNING", 30, "the filler to run")
    r = hub_api(hub, "POST", f"/users/{USER}/servers/q",
             json={"profile": "custom", "partition": PARTITION, "nprocs": "1", "runtime": "00:10:00"})
    assert r.status_code == 202, r.text
    wait_for(lambda: any(j != filler and s == "PENDING" for j, s in slurmtools.live_jobs((USER,)).items()), 30,
             "the queued job")
    time.sleep(2)
    problems = []
    r = hub_api(hub, "DELETE", f"/users/{USER}/servers/q")
    if r.status_code not in (202, 204):
        problems.append(f"cancel answered {r.status_code}: {r.text[:200]}")
    wait_for(lambda: (hub_api(hub, "GET", f"/users/{USER}").json()["servers"].get("q") or {}).get("pending") is None,
             60, "the cancel")
    time.sleep(3)  # late log lines of the failed start and the cancel
    text = hub["log"].read_text(errors="replace")
    if "Traceback (most recent call last)" in text:
        at = text.find("Traceback (most recent call last)")
        problems.append("a traceback in the hub log:\n" + text[max(0, at - 1500):at + 3000])
    for bad in ("Task exception was never retrieved", "api_request to proxy failed: 404", "unhandled user_options",
                "Failed to spawn single-user server with form"):
        if bad in text:
            at = text.find(bad)
            problems.append(f"{bad!r} in the hub log:\n" + text[max(0, at - 300):at + 1500])
    # the refused forms are still logged, one line each, naming the field
    if not re.search(r"refused spawn form: option .nprocs. is more than partition", text):
        problems.append("no one-line 'refused spawn form' naming nprocs in the hub log")

    # SIGTERM with the web app's server running: the hub ends in < 5 s, the job keeps running
    model = hub_api(hub, "GET", f"/users/{USER}").json()["servers"]["web"]
    assert model["ready"], model
    web_jobs = [j for j, s in slurmtools.live_jobs((USER,)).items() if s == "RUNNING" and j != filler]
    assert web_jobs, slurmtools.live_jobs((USER,))
    # ...and a start waiting in the queue behind the filler, its spawn page streaming progress
    page = hub["page"]
    page.goto(hub["base"] + f"/hub/spawn/{USER}/p")
    fill_form(page, "custom", partition=PARTITION, nprocs="1", memory="512M", runtime="00:10:00")
    page.click("form button[type=submit]")
    from playwright.sync_api import expect

    expect(page.locator("#progress-message")).to_contain_text("waiting in the queue", timeout=30_000)
    proc = hub["proc"]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t0
    print(f"hub exit after SIGTERM: {took:.1f} s")
    if proc.poll() is None or took >= 5:
        problems.append(f"hub took {took:.1f} s to exit after SIGTERM (exited: {proc.poll() is not None})")
    time.sleep(1)
    live = slurmtools.live_jobs((USER,))
    if not all(live.get(j) == "RUNNING" for j in web_jobs):
        problems.append(f"the running server's job did not survive the hub's exit: {web_jobs} {live}")
    # a hub started with servers running (a restart) ends as quickly
    proc = hub["restart"]()
    requests.get(hub["base"] + f"/user/{USER}/web/webapp/", timeout=30)  # routes and polls are live again
    time.sleep(5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t0
    print(f"restarted hub exit after SIGTERM: {took:.1f} s")
    if proc.poll() is None or took >= 5:
        problems.append(f"the restarted hub took {took:.1f} s to exit after SIGTERM")
    live = slurmtools.live_jobs((USER,))
    if not all(live.get(j) == "RUNNING" for j in web_jobs):
        problems.append(f"the running server's job did not survive the second exit: {web_jobs} {live}")
    assert not problems, "\n\n".join(problems)
