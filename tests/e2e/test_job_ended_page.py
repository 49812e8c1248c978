"""A job that ends under a running server: the user's next page says so (issue 14), not a bare 503.

One hub runs jupyterhub_config.example.py as shipped (templates, ProfilesSpawner form), loaded from a
wrapper config that only shortens the hub's and the pollers' intervals. The user ``erin`` is this
test's own (scripts/test creates her). As erin, with requests: log in, start the "small" profile,
reach JupyterLab; then ``scancel`` her job (this test's own job id). Within a few status rounds,
``/user/erin/lab`` leads to a page that names the job, says it was cancelled and when, and has a
Start again button, which starts a new server.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from gatewaytools import ExampleHub, require_gateway, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
USER = "erin"

WRAPPER_CONFIG = """
c = get_config()  # noqa
load_subconfig({example!r})
# test additions only: quicker polling (the hub's poll of running servers, the shared status round)
c.Spawner.poll_interval = 2
c.SlurmSpawner.status_interval = 1
c.SlurmSpawner.startup_poll_interval = 0.5
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    require_gateway(USER)
    tmp = tmp_path_factory.mktemp("ended")
    gw = ExampleHub(tmp, WRAPPER_CONFIG.format(example=str(REPO / "jupyterhub_config.example.py")), USER, "debug")
    try:
        gw.wait_up()
        yield {"base": gw.base, "password": gw.password, "tmp": tmp}
    finally:
        gw.stop()
        gw.cleanup("job-ended.log")


def _xsrf(session, base):
    return session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf") or ""


def _start_small(s, base):
    """POST the spawn form (profile "small", 10 minutes) and wait for JupyterLab; the job id."""
    form = s.get(base + f"/hub/spawn/{USER}", timeout=30)
    assert 'id="profile-radio-small"' in form.text, form.text[-2000:]
    r = s.post(base + f"/hub/spawn/{USER}", timeout=60, allow_redirects=True,
               data={"_xsrf": _xsrf(s, base), "profile": "small", "small.partition": "debug",
                     "small.runtime": "00:10:00"})
    assert r.status_code < 500, r.text[-2000:]

    def lab():
        r = s.get(base + f"/user/{USER}/lab", timeout=30)
        return r.status_code == 200 and "JupyterLab" in r.text

    wait_for(lab, 120, "JupyterLab", interval=1)
    jobs = slurmtools.live_jobs((USER,))
    assert len(jobs) == 1, jobs
    return next(iter(jobs))


def test_scancel_under_running_lab_explains_and_restarts(hub):
    base = hub["base"]
    s = requests.Session()
    s.get(base + "/hub/login", timeout=30)
    r = s.post(base + "/hub/login", timeout=30,
               data={"username": USER, "password": hub["password"], "_xsrf": _xsrf(s, base)})
    assert r.status_code == 200, r.status_code
    t0 = time.monotonic()
    job_id = _start_small(s, base)
    timings = {"login -> JupyterLab": time.monotonic() - t0}

    # --- the job ends under the running server: a real scancel of this test's own job
    t1 = time.monotonic()
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    seen, last = [], {}

    def explained():
        r = s.get(base + f"/user/{USER}/lab", timeout=30)
        seen.append((r.status_code, r.url))
        last["text"] = r.text
        if r.status_code == 503:  # the proxy still routes to the dead server: the hub's 503 page
            assert "Service Unavailable" not in r.text and "batch job may have ended" in r.text, r.text[-1500:]
        return [r] if f"job {job_id}" in r.text and "cancelled" in r.text.lower() else None  # a 424 is falsy

    try:
        (page,) = wait_for(explained, 30, f"a page explaining that job {job_id} was cancelled", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last page:\n{re.sub(r'<script.*?</script>', '', last.get('text', ''), flags=re.S)[-3000:]}")
    timings["scancel -> explaining page"] = time.monotonic() - t1
    print("pages seen after scancel (status, url):", seen)
    assert page.status_code == 424, page.status_code  # the hub's "not running" status, with our page
    text = re.sub(r"\s+", " ", page.text)
    assert re.search(rf"job {job_id} was cancelled .*at \d\d:\d\d UTC; your server stopped", text), text[-2000:]
    assert "your server stopped" in text.lower(), text[-2000:]
    assert "squeue" not in text and "scancel" not in text and "Traceback" not in text
    m = re.search(r'<a[^>]*id="start"[^>]*href="([^"]+)"', page.text) or re.search(
        r'href="([^"]+)"[^>]*id="start"', page.text)
    assert m, page.text[-2000:]
    start_url = m.group(1).replace("&amp;", "&")
    assert f"/hub/spawn/{USER}" in start_url, start_url
    assert not slurmtools.live_jobs((USER,)), "the cancelled job must be gone"
    home = re.sub(r"\s+", " ", s.get(base + "/hub/home", timeout=30).text)  # the same note on the home page
    assert f'data-job-id="{job_id}" data-state="CANCELLED"' in home and f"Your batch job {job_id} was cancelled" in home

    # --- Start again works: the link leads to the form, and a new job serves JupyterLab
    t2 = time.monotonic()
    r = s.get(base + start_url if start_url.startswith("/") else start_url, timeout=30)
    assert 'id="profile-radio-small"' in r.text, r.text[-2000:]
    new_job = _start_small(s, base)
    assert new_job != job_id
    timings["Start again -> JupyterLab"] = time.monotonic() - t2
    # the home page no longer shows the old ending once a new job runs
    home = s.get(base + "/hub/home", timeout=30).text
    assert f"Your batch job {job_id}" not in home
    r = s.delete(base + f"/hub/api/users/{USER}/server", timeout=60,
                 headers={"X-XSRFToken": _xsrf(s, base), "Referer": base + "/hub/home"})
    assert r.status_code in (202, 204), (r.status_code, r.text)
    wait_for(lambda: new_job not in slurmtools.live_jobs((USER,)), 30, "the new job gone after stop")
    for k, v in timings.items():
        print(f"{k}: {v:.1f} s")
