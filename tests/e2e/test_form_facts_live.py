"""Issue 26, "forms that know the cluster", in a real browser (Playwright + Debian's Chromium) on real
Slurm: the spawn form's fields follow the chosen partition live (wrapspawner/formfacts.py).

One hub for the module: jupyterhub_config.example.py as shipped on partitions ``debug`` (no limits)
and ``jhpc-small`` (2 cores per node, 4 h), with a strict ``script-src 'self'`` Content-Security-Policy,
so any inline script would be blocked: the live checks work with the one same-origin script only.

1. the very first form after the hub started has the partitions' maxima; changing the partition
   changes the cores input's ``max`` and the visible hint ("max 2 cores on jhpc-small");
2. an over-limit value is marked at once (is-invalid, the label named) and the browser submits
   nothing; the server refuses the same value (400 naming the field) when the browser is bypassed;
3. a value within the chosen partition's limits starts a server that becomes ready.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from hubharness import ARTIFACTS

from gatewaytools import CHROMIUM, CHROMIUM_ARGS, WRAPPER_CONFIG, ExampleHub, fill_form, require_gateway, wait_for

REPO = Path(__file__).resolve().parents[2]
SHOT = REPO / "docs" / "screenshots" / "form-live-limit.png"  # docs/users.md shows it
USER = "erin"
PARTITION = "jhpc-small"
CSP = "script-src 'self'; frame-ancestors 'none'"
STRICT_CSP = f"""
c.JupyterHub.tornado_settings.update({{"headers": {{"Content-Security-Policy": {CSP!r}}}}})
"""

# a profile with the cluster's own choices; on this host sacctmgr has no slurmdbd to ask and sinfo
# reports no GRES: both answers are real (real associations and GPUs, from slurmdbd and GRES on test
# cluster current, are in tests/e2e/test_cluster_accounting.py)
CLUSTER_CHOICES = """
c.ProfilesSpawner.profiles = list(c.ProfilesSpawner.profiles) + [{
    "key": "acct", "display": "Account, QOS and GPUs (test)", "class": "batchspawner.SlurmSpawner",
    "config": {"req_memory": "512M", "req_runtime": "00:10:00"},
    "fields": {"partition": {"type": "choice", "choices": ["debug", "jhpc-small"], "default": "debug"},
               "ngpus": {"type": "int", "min": 0, "max": 4, "default": 0},
               "gpu_type": {"type": "gpu_type"}, "account": {"type": "account"}, "qos": {"type": "qos"}},
}]
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER, PARTITION, browser=True)
    tmp = tmp_path_factory.mktemp("formfacts")
    gw = ExampleHub(tmp, WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py")) + STRICT_CSP
                    + CLUSTER_CHOICES, USER,
                    f"debug {PARTITION}", service_token=True)
    gw.wait_up()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    h = {"base": gw.base, "token": gw.token, "password": gw.password, "page": page, "log": gw.log_path,
         "violations": violations}
    try:
        yield h
    finally:
        try:
            _api(h, "DELETE", f"/users/{USER}/servers/ff")
        except requests.RequestException:
            pass
        browser.close()
        pw.stop()
        gw.stop()
        gw.cleanup("form-facts-live.log")


def _api(h, method, path, **kw):
    return requests.request(method, h["base"] + "/hub/api" + path, timeout=60,
                            headers={"Authorization": f"token {h['token']}"}, **kw)


def _submitted(h) -> int:
    return len(re.findall(r"Job \d+ submitted", h["log"].read_text(errors="replace")))


def test_fields_follow_the_chosen_partition(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    t0 = time.monotonic()
    page.goto(hub["base"] + "/hub/login")
    page.fill("#username_input", USER)
    page.fill("#password_input", hub["password"])
    page.click("#login_submit")
    page.wait_for_selector("#profile-radio-custom")  # the first form this hub renders
    hub["first_form_s"] = time.monotonic() - t0
    # it already knows the partitions' maxima (no inline script on the page's form either)
    small = page.locator("[name='custom.partition'] option[value='jhpc-small']")
    expect(small).to_have_attribute("data-max-cores", "2", timeout=1)
    expect(small).to_have_attribute("data-max-time", "14400", timeout=1)
    assert page.locator(".wrapspawner-profiles script:not([src])").count() == 0
    assert page.locator(".hpc-facts-unknown").count() == 0
    fill_form(page, "custom", partition="debug")
    nprocs, hint = page.locator("[name='custom.nprocs']"), page.locator("[id='custom.nprocs-hint']")
    expect(nprocs).to_have_attribute("max", "8")  # the field's own maximum: debug has none
    expect(hint).to_have_text("")
    fill_form(page, "custom", partition=PARTITION)
    expect(nprocs).to_have_attribute("max", "2")
    expect(hint).to_have_text("max 2 cores on jhpc-small")
    expect(page.locator("[id='custom.runtime-hint']")).to_have_text("max 4 h on jhpc-small")
    fill_form(page, "custom", partition="debug")
    expect(nprocs).to_have_attribute("max", "8")
    expect(hint).to_have_text("")


def test_an_over_limit_value_is_flagged_at_once_and_nothing_is_submitted(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    page.goto(hub["base"] + "/hub/spawn")
    before = _submitted(hub)
    fill_form(page, "custom", partition=PARTITION, nprocs="3", memory="1G", runtime="00:30:00")
    nprocs = page.locator("[name='custom.nprocs']")
    expect(nprocs).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(nprocs).to_have_attribute("aria-invalid", "true")
    live = page.locator("[id='custom.nprocs-live']")
    expect(live).to_be_visible()
    expect(live).to_have_text("CPU cores: at most 2 cores on jhpc-small")
    # so is a wall time above the partition's (the field itself would allow 08:00:00)
    fill_form(page, "custom", runtime="05:00:00")
    expect(page.locator("[id='custom.runtime-live']")).to_have_text("Wall time: at most 4 h on jhpc-small")
    page.locator("#profile-custom").screenshot(path=str(SHOT))
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copy(SHOT, ARTIFACTS / "screenshots" / SHOT.name)
    page.click("form button[type=submit]")
    time.sleep(1.5)
    assert re.search(r"/hub/spawn/?$", page.url), page.url  # still the form: the browser sent nothing
    assert page.evaluate("document.getElementById('spawn_form').checkValidity()") is False
    assert _submitted(hub) == before
    assert "refused spawn form" not in hub["log"].read_text(errors="replace")
    # another partition's limit: the same values are fine there, the marks go at once
    fill_form(page, "custom", partition="debug")
    expect(nprocs).not_to_have_class(re.compile(r"\bis-invalid\b"))
    expect(live).to_be_hidden()
    assert page.evaluate("document.getElementById('spawn_form').checkValidity()") is True
    # back to jhpc-small, and the browser's check bypassed: the server refuses the same value
    fill_form(page, "custom", partition=PARTITION, runtime="00:30:00")
    page.evaluate("document.getElementById('spawn_form').noValidate = true")
    page.click("form button[type=submit]")
    error = page.locator(".spawn-error-msg, .alert-danger").first
    expect(error).to_contain_text("CPU cores")
    expect(error).to_contain_text("more than partition jhpc-small allows")
    # the refused form: the server's message alone under the field (no second, live one) until
    # the user changes the value; a value that fits then clears the mark at once
    expect(page.locator("#profile-custom .invalid-feedback:visible")).to_have_count(1)
    page.fill("[name='custom.nprocs']", "2")
    expect(page.locator("[name='custom.nprocs']")).not_to_have_class(re.compile(r"\bis-invalid\b"))
    expect(page.locator("#profile-custom .invalid-feedback:visible")).to_have_count(0)
    r = _api(hub, "POST", f"/users/{USER}/servers/ff",
             json={"profile": "custom", "partition": PARTITION, "nprocs": "3"})
    assert r.status_code == 400 and "nprocs" in r.text, (r.status_code, r.text[:300])
    assert _submitted(hub) == before
    # the strict CSP blocks the hub pages' own inline scripts (JupyterHub's), never the form's script:
    # everything above worked with it alone
    assert hub["violations"] and not [v for v in hub["violations"] if "formfacts" in v], hub["violations"]


def test_accounts_qos_and_gpu_types_come_from_the_real_cluster(hub):
    from playwright.sync_api import expect

    page = hub["page"]
    page.goto(hub["base"] + "/hub/spawn")
    fill_form(page, "acct", partition=PARTITION)
    values = "e => Array.from(e.options).map(o => o.value)"
    # no slurmdbd here (sacctmgr: "not running a supported accounting_storage plugin"): the default only
    assert page.eval_on_selector("[name='acct.account']", values) == [""]
    assert page.eval_on_selector("[name='acct.qos']", values) == [""]
    assert page.eval_on_selector("[name='acct.gpu_type']", values) == [""]  # sinfo %G: (null)
    expect(page.locator("[id='acct.ngpus-hint']")).to_have_text("max 0 GPUs on jhpc-small")
    page.fill("[name='acct.ngpus']", "1")
    expect(page.locator("[id='acct.ngpus-live']")).to_have_text("GPUs: at most 0 GPUs on jhpc-small")
    page.fill("[name='acct.ngpus']", "0")
    before = _submitted(hub)
    for options, field in (({"account": "proj042"}, "account"), ({"qos": "normal"}, "qos"),
                           ({"gpu_type": "a100", "ngpus": "1"}, "gpu_type"), ({"ngpus": "1"}, "ngpus")):
        r = _api(hub, "POST", f"/users/{USER}/servers/ff",
                 json={"profile": "acct", "partition": PARTITION, **options})
        assert r.status_code == 400 and field in r.text, (options, r.status_code, r.text[:300])
    assert _submitted(hub) == before


def test_a_within_limit_spawn_reaches_ready(hub):
    page = hub["page"]
    page.goto(hub["base"] + f"/hub/spawn/{USER}/ff")
    fill_form(page, "custom", partition=PARTITION, nprocs="2", memory="1G", runtime="00:30:00")
    assert page.evaluate("document.getElementById('spawn_form').checkValidity()") is True
    t0 = time.monotonic()
    page.click("form button[type=submit]")

    def ready():
        r = _api(hub, "GET", f"/users/{USER}")
        server = r.json().get("servers", {}).get("ff") or {}
        return server.get("ready")

    wait_for(ready, 150, "the within-limit server to become ready")
    print(f"first form after hub start: {hub.get('first_form_s', 0):.2f} s (login included); "
          f"submit -> ready: {time.monotonic() - t0:.1f} s")
    r = _api(hub, "DELETE", f"/users/{USER}/servers/ff")
    assert r.status_code in (202, 204), r.text
