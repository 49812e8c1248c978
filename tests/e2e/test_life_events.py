"""A batch job's life events on the real Slurm 22.05 (issue 24).

An administrator (or a node failure) puts a running server's job back in the queue: the hub must
stop routing to it at once, say so in words, and route again to the rerun of the same job (same
job id, same server token, maybe another port). The rerun's log is appended to the first run's.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests

import slurmtools

pytestmark = pytest.mark.e2e

CONFIG = """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.status_interval = 0.5
c.Spawner.poll_interval = 1
"""


def scontrol(*args):
    r = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    return r


def job_of(hub, name="alice"):
    """The server's job id from its saved state (ProfilesSpawner keeps its child's state inside its own)."""
    def find(state):
        if isinstance(state, dict):
            if state.get("job_id"):
                return state["job_id"]
            for value in state.values():
                found = find(value)
                if found:
                    return found
        return ""
    return find(hub.server_model(name)["state"])


def route_of(hub, name="alice"):
    """The proxy's route for the user's default server, or None (asked of the proxy itself)."""
    r = requests.get(f"http://127.0.0.1:{hub.proxy_api_port}/api/routes",
                     headers={"Authorization": f"token {hub.proxy_token}"}, timeout=10)
    r.raise_for_status()
    for spec, route in r.json().items():
        if spec.rstrip("/").endswith(f"/user/{name}"):
            return route.get("target")
    return None


def progress_messages(hub, name="alice", timeout=5):
    """The spawn progress events the user's page shows (read until ``timeout``)."""
    msgs = []
    try:
        with hub.api("GET", f"/users/{name}/server/progress", stream=True, timeout=timeout) as r:
            if r.status_code != 200:
                return [f"HTTP {r.status_code} {r.text}"]
            t0 = time.monotonic()
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    msgs.append(json.loads(line[5:]).get("message", ""))
                if time.monotonic() - t0 > timeout or any("back in the queue" in m for m in msgs):
                    break
    except requests.RequestException:
        pass
    return msgs


def wait_for(pred, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def test_requeue_unroutes_at_once_and_follows_the_rerun(slurm, hubs):
    hub = hubs(CONFIG + "c.ConfigurableHTTPProxy.auth_token = 'proxy-test-token-24'\n")
    hub.proxy_token = "proxy-test-token-24"
    hub.start()
    r, _ = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("alice")["ready"], hub.log_tail()
    job = job_of(hub)
    first_route = route_of(hub)
    assert first_route and hub.user_request("alice", "api").status_code == 200

    # the administrator requeues the running job
    t0 = time.monotonic()
    assert scontrol("requeue", job).returncode == 0
    gone = wait_for(lambda: route_of(hub) is None, 10)
    unrouted_after = time.monotonic() - t0
    assert gone, f"route still {route_of(hub)} {unrouted_after:.1f} s after the requeue\n{hub.log_tail()}"
    print(f"requeue -> route gone {unrouted_after:.2f} s")
    model = hub.server_model("alice")
    assert model is not None, "the hub dropped the server: it must follow the requeued job"
    assert model["pending"] == "spawn" and not model["ready"], model
    # the user's page goes to the hub (no route), whose spawn progress says what happened, in words
    page = requests.get(hub.url + "/user/alice/lab", headers={"Authorization": f"token {hub.token}"},
                        allow_redirects=False, timeout=10)
    assert page.status_code in (302, 303) and page.headers.get("Location", "").startswith("/hub/user/alice"), (
        page.status_code, page.headers)
    msgs = progress_messages(hub)
    text = " ".join(msgs)
    assert "back in the queue" in text and "unsaved work" in text and job in text, msgs
    assert "requeue" in hub.log_text().lower()

    # the rerun of the same job reports with the same credential, the hub routes to it again
    assert scontrol("update", f"jobid={job}", "StartTime=now").returncode == 0
    ready = wait_for(lambda: (hub.server_model("alice") or {}).get("ready"), 45, 0.5)
    assert ready, hub.log_tail()
    print(f"requeue -> ready again {time.monotonic() - t0:.2f} s")
    assert job_of(hub) == job
    assert "starting" not in json.dumps(hub.server_model("alice")["state"])  # a restart now finds it running
    assert route_of(hub)
    assert hub.user_request("alice", "api").status_code == 200
    assert "This server is not starting" not in hub.log_text()
    # both runs' output in one log: appended, not overwritten
    path = scontrol("show", "job", job).stdout.split("StdOut=", 1)[1].split()[0]
    with open(path, errors="replace") as f:
        log = f.read()
    assert "DUE TO JOB REQUEUE" in log, log[-2000:]
    assert hub.stop_server("alice")
    wait_for(lambda: job not in slurmtools.live_jobs(), 30)
    assert job not in slurmtools.live_jobs()


RESTART_CONFIG = CONFIG + """
c.SlurmSpawner.req_options = '--begin=now+600'
c.SlurmSpawner.http_timeout = 3
c.SlurmSpawner.start_timeout = 900
c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}
"""


def test_a_hub_restart_loses_no_pending_spawn(slurm, hubs):
    """The job still waits in the queue when the hub restarts: after the restart the spawn goes on
    (pending page, not cancelled after http_timeout), and once the job runs it is routed."""
    hub = hubs(RESTART_CONFIG).start()
    hub.ensure_user("bob")
    r = hub.api("POST", "/users/bob/server", json={})
    assert r.status_code == 202, r.text
    job = wait_for(lambda: ((hub.server_model("bob") or {}).get("state") or {}).get("job_id"), 20)
    assert job and slurmtools.job_state(job) == "PENDING"
    hub.restart()
    time.sleep(5)  # longer than http_timeout: the hub used to give up on the spawn here and cancel the job
    model = hub.server_model("bob")
    assert model is not None and model["pending"] == "spawn", (model, hub.log_tail())
    assert slurmtools.job_state(job) == "PENDING"
    assert "no batch job" not in hub.log_text().lower()
    msgs = progress_messages(hub, "bob", timeout=3)
    assert any("restarted" in m and job in m for m in msgs), msgs
    t0 = time.monotonic()
    assert scontrol("update", f"jobid={job}", "StartTime=now").returncode == 0
    ready = wait_for(lambda: (hub.server_model("bob") or {}).get("ready"), 45, 0.5)
    assert ready, hub.log_tail()
    print(f"release -> ready after the restart {time.monotonic() - t0:.2f} s")
    assert hub.server_model("bob")["state"]["job_id"] == job
    assert "starting" not in json.dumps(hub.server_model("bob")["state"])
    assert hub.user_request("bob", "api").status_code == 200
    assert "This token does not belong" not in hub.log_text()
    assert hub.stop_server("bob")


def test_the_hub_hears_an_end_at_once(slurm, hubs):
    """scancel of a ready server's job: the wrapper passes SIGTERM on to the server and tells the hub,
    which looks now: the route goes within ~2 s, not at the next poll (30 s by default, as here)."""
    hub = hubs("""
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.ConfigurableHTTPProxy.auth_token = 'proxy-test-token-24'
""")
    hub.proxy_token = "proxy-test-token-24"
    hub.start()
    r, _ = hub.spawn("alice")
    assert r.status_code in (201, 202) and hub.server_model("alice")["ready"], hub.log_tail()
    job = job_of(hub)
    assert route_of(hub)
    t0 = time.monotonic()
    slurmtools.cancel([job])
    gone = wait_for(lambda: route_of(hub) is None and hub.server_model("alice") is None, 6, 0.1)
    seconds = time.monotonic() - t0
    assert gone, f"route {route_of(hub)} and server still there {seconds:.1f} s after scancel\n{hub.log_tail()}"
    print(f"scancel -> route gone {seconds:.2f} s")
    assert seconds < 3, seconds
    assert "job end reported" in hub.log_text()


def test_a_suspended_job_keeps_its_route_and_the_card_says_suspended(slurm, hubs):
    hub = hubs(CONFIG + """
import batchspawner.hub.web
c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
c.ConfigurableHTTPProxy.auth_token = 'proxy-test-token-24'
""")
    hub.proxy_token = "proxy-test-token-24"
    hub.start()
    r, _ = hub.spawn("alice")
    assert r.status_code in (201, 202) and hub.server_model("alice")["ready"], hub.log_tail()
    job = job_of(hub)
    route = route_of(hub)
    browser = hub.login_session("alice")
    assert 'data-state="running"' in browser.get(hub.url + "/hub/home", timeout=30).text
    assert scontrol("suspend", job).returncode == 0
    try:
        home = wait_for(lambda: (lambda t: t if 'data-state="suspended"' in t else "")(
            browser.get(hub.url + "/hub/home", timeout=30).text), 8, 0.5)
        assert home, f"card never said suspended\n{hub.log_tail()}"
        assert "paused time does not count" in home
        time.sleep(2)  # several polls while suspended: still the same server, same route
        assert route_of(hub) == route and hub.server_model("alice")["ready"]
    finally:
        assert scontrol("resume", job).returncode == 0
    t0 = time.monotonic()
    assert wait_for(lambda: hub.user_request("alice", "api").status_code == 200, 5, 0.1)
    print(f"resume -> answers {time.monotonic() - t0:.2f} s")
    assert wait_for(lambda: 'data-state="running"' in browser.get(hub.url + "/hub/home", timeout=30).text, 8, 0.5)
    assert route_of(hub) == route
    assert hub.stop_server("alice")


PROFILES_CONFIG = """
c.JupyterHub.spawner_class = 'profiles'
c.Spawner.poll_interval = 1
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.status_interval = 0.5
c.SlurmSpawner.req_runtime = '00:30:00'
c.ProfilesSpawner.profiles = [
    {'key': 'slurm', 'display': 'Slurm', 'class': 'batchspawner.SlurmSpawner', 'config': {}},
]
c.ConfigurableHTTPProxy.auth_token = 'proxy-test-token-24'
"""


def test_a_held_requeue_under_profiles_is_unrouted_and_cancel_ends_it(slurm, hubs):
    """ProfilesSpawner (as the example config): requeuehold of a ready server unroutes it, the spawn
    progress says it is held, and Cancel (the spawn page's DELETE) stops it and cancels the job."""
    hub = hubs(PROFILES_CONFIG)
    hub.proxy_token = "proxy-test-token-24"
    hub.start()
    r, _ = hub.spawn("alice", {"profile": "slurm"})
    assert r.status_code in (201, 202) and hub.server_model("alice")["ready"], hub.log_tail()
    job = job_of(hub)
    assert route_of(hub)
    t0 = time.monotonic()
    assert scontrol("requeuehold", job).returncode == 0
    assert wait_for(lambda: route_of(hub) is None, 10), hub.log_tail()
    print(f"requeuehold -> route gone {time.monotonic() - t0:.2f} s")
    model = hub.server_model("alice")
    assert model and model["pending"] == "spawn", model
    msgs = progress_messages(hub)
    assert any("back in the queue" in m and "held" in m for m in msgs), msgs
    time.sleep(2)  # held: still followed, still not routed, not dropped
    assert route_of(hub) is None and (hub.server_model("alice") or {}).get("pending") == "spawn"
    r = hub.api("DELETE", "/users/alice/server")
    assert r.status_code in (202, 204), r.text
    assert hub.wait_stopped("alice", timeout=30), hub.log_tail()
    assert wait_for(lambda: job not in slurmtools.live_jobs() and
                    slurmtools.job_state(job) in ("", "CANCELLED"), 30), slurmtools.job_state(job)
    # (JupyterHub 6.1 itself logs "async generator raised StopAsyncIteration" for a progress stream
    # still open when a pending spawn is cancelled; the stop itself must not fail)
    assert "Uncaught exception DELETE" not in hub.log_text(), hub.log_tail(120)
    assert hub.log_text().count("left RUNNING and is back in the queue") == 1  # not followed again after Cancel


def test_a_site_without_requeue_gets_no_requeue_jobs(slurm, hubs):
    """follow_requeue = False: the job is submitted with --no-requeue (Slurm then refuses a requeue
    and ends the job on a node failure instead, NODE_FAIL); the server keeps running meanwhile."""
    hub = hubs(CONFIG + "c.SlurmSpawner.follow_requeue = False\n").start()
    r, _ = hub.spawn("alice")
    assert r.status_code in (201, 202) and hub.server_model("alice")["ready"], hub.log_tail()
    job = job_of(hub)
    assert "Requeue=0" in scontrol("show", "job", job).stdout
    refused = scontrol("requeue", job)
    assert refused.returncode != 0, refused.stdout
    time.sleep(2)
    assert hub.server_model("alice")["ready"] and hub.user_request("alice", "api").status_code == 200
    assert hub.stop_server("alice")


# ---------------------------------------------------------------- rows of the issue that held on main: kept held


def test_two_hubs_on_one_slurm_never_touch_each_others_jobs(slurm, hubs):
    """Two hubs, the same user, one Slurm: a stop, a restart and a spawn on hub A leave hub B's job
    and server alone (each hub knows its jobs by id only; nothing is cancelled by user or name)."""
    a = hubs(CONFIG).start()
    b = hubs(CONFIG).start()
    r, _ = a.spawn("bob")
    assert r.status_code in (201, 202) and a.server_model("bob")["ready"], a.log_tail()
    r, _ = b.spawn("bob")
    assert r.status_code in (201, 202) and b.server_model("bob")["ready"], b.log_tail()
    job_a, job_b = job_of(a, "bob"), job_of(b, "bob")
    assert job_a and job_b and job_a != job_b
    try:
        a.restart()
        a.stop_server("bob")
        assert slurmtools.job_state(job_a) in ("", "CANCELLED", "COMPLETING", "COMPLETED"), slurmtools.job_state(job_a)
        r, _ = a.spawn("bob")  # a new start on A (leftover checks run first) ...
        assert r.status_code in (201, 202), a.log_tail()
        a.stop()  # ... and A goes away with its server running
        time.sleep(3)  # at least one poll of B's
        assert slurmtools.job_state(job_b) == "RUNNING", slurmtools.job_state(job_b)
        model = b.server_model("bob")
        assert model and model["ready"], b.log_tail()
        # hub A never named B's job (a bare number could be part of a timestamp: match it as a job id)
        assert not re.search(rf"\b(?:job|jobs|scancel|-j) {job_b}\b", a.log_text()), a.log_tail()
    finally:
        slurmtools.cancel([job_a, job_b, job_of(b, "bob") or job_b])


def test_wall_time_reached_ends_the_server_and_the_page_says_so(slurm, hubs):
    """A job that reaches its wall time (Slurm TIMEOUT) ends its server within seconds of Slurm's
    verdict, and the user's next page says so in words (not a bare 503)."""
    hub = hubs(CONFIG.replace("'00:30:00'", "'00:01:00'") + """
import batchspawner.hub.web
c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
""").start()
    r, _ = hub.spawn("carol")
    assert r.status_code in (201, 202) and hub.server_model("carol")["ready"], hub.log_tail()
    job = job_of(hub, "carol")
    try:
        # Slurm checks time limits about every 30 s and then sends SIGTERM (KillWait before SIGKILL)
        ended = wait_for(lambda: slurmtools.job_state(job) in ("TIMEOUT", ""), 200, 1)
        assert ended, f"job {job} still {slurmtools.job_state(job)!r} after its 1 min wall time"
        t0 = time.monotonic()
        gone = wait_for(lambda: hub.server_model("carol") is None, 20, 0.2)
        assert gone, hub.log_tail()
        print(f"Slurm TIMEOUT seen -> server gone {time.monotonic() - t0:.1f} s later")
        user = hub.api("GET", "/users/carol", params={"include_stopped_servers": "1"}).json()
        assert (user["servers"][""]["state"].get("last_ended") or {}).get("state") == "TIMEOUT", user["servers"]
        page = hub.login_session("carol").get(hub.url + "/user/carol/lab", timeout=30)
        assert "reached its wall time" in page.text, page.text[-2000:]
        assert "longer wall time" in page.text and "Traceback" not in page.text
    finally:
        slurmtools.cancel([job])
