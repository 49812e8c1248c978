"""Fail closed on the real hub and the real Slurm (issue 11, items 2, 5 and 6).

- A job Slurm reports RUNNING with no host (``%B`` printed as ``n/a`` by the real squeue)
  is never reached at the hub's own loopback: a listener there, at the very port the job
  reports, sees no connection, and the spawn fails clearly after ``host_wait_timeout``.
- A refused option does not stick: after ``/hub/spawn/alice?x=1`` (400) and a value Slurm
  itself refuses (``memory=1.5``: 400 with sbatch's reason, cleaned), the next plain Start
  runs a real job and the server is ready.
- A port report nested 100,000 deep is the sender's mistake: 400, not 500.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from hubharness import ARTIFACTS, Hub

# The job side of the "no host" test: reports a port the hub must never connect to, then waits.
# (It stands in for batchspawner-singleuser; what is tested is the hub's side.)
REPORTER = r'''
import json, os, sys, time, urllib.request
port = int(sys.argv[1])
url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner"
req = urllib.request.Request(url, data=json.dumps({"port": port}).encode(), method="POST",
    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"], "Content-Type": "application/json"})
print("report answered", urllib.request.urlopen(req, timeout=30).status, flush=True)
time.sleep(600)
'''


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts (and records) every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.first_bytes = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1)
            try:
                self.first_bytes.append(conn.recv(200))
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _copy_log(hub, name):
    dest = ARTIFACTS / "hub-logs"
    dest.mkdir(parents=True, exist_ok=True)
    if hub.log_path.exists():
        shutil.copy(hub.log_path, dest / f"{name}.log")


def _cancel_our_jobs(hub):
    if hub.log_path.exists():
        ours = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
        live = slurmtools.live_jobs()
        slurmtools.cancel([j for j in ours if j in live])


def _wait_gone(hub, name, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.server_model(name)
        if model is None:
            return True
        time.sleep(0.25)
    return False


def test_running_job_without_host_never_reaches_loopback(slurm, jupyterhub_version, tmp_path):
    jobdir = Path(tempfile.mkdtemp(prefix="jhpc-nohost-"))
    jobdir.chmod(0o755)
    reporter = jobdir / "reporter.py"
    reporter.write_text(REPORTER)
    reporter.chmod(0o644)
    listener = CountingListener()
    # the real squeue, asked to print the literal "n/a" where the host goes: Slurm's answer for a
    # job it has not placed, here for a job that runs
    hub = Hub(tmp_path / "nohost", f"""
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:10:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.batch_query_cmd = "squeue -h -t all -j {{job_id}} -o '%T n/a %r'"
c.SlurmSpawner.batch_status_cmd = "squeue -h -t all -j {{job_ids}} -o '%i %T n/a %r'"
c.SlurmSpawner.batchspawner_singleuser_cmd = '/usr/bin/python3 {reporter} {listener.port}'
c.SlurmSpawner.host_wait_timeout = 8
""")
    try:
        hub.start()
        hub.ensure_user("alice")
        t0 = time.monotonic()
        r = hub.api("POST", "/users/alice/server", json={})
        # 500 when the spawn fails within the hub's slow_spawn_timeout (10 s), else 202; 201 when it
        # fails right at that boundary (the hub then finds the spawn no longer pending)
        assert r.status_code in (201, 202, 500), r.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and listener.connections == 0 and hub.server_model("alice") is not None:
            time.sleep(0.25)
        seconds = time.monotonic() - t0
        assert listener.connections == 0, f"the hub connected to its own loopback: {listener.first_bytes}"
        assert hub.server_model("alice") is None, hub.log_tail()
        log = hub.log_text()
        # the job ran and reported its port; the hub refused to guess where it runs
        assert "reported port %d" % listener.port in log, hub.log_tail()
        assert "named no usable host" in log
        assert "never said on which host" in log
        # never routed to loopback: no connection at the reported port, no proxy route for alice
        time.sleep(1)
        assert listener.connections == 0, listener.first_bytes
        assert f"127.0.0.1:{listener.port}" not in log
        routed = requests.get(hub.url + "/user/alice/api", headers={"Authorization": f"token {hub.token}"},
                              allow_redirects=False, timeout=30)
        assert listener.connections == 0 and routed.status_code != 200
        # the job was cancelled when the spawn failed
        job_ids = re.findall(r"Job (\d+) submitted", log)
        assert job_ids
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and job_ids[-1] in slurmtools.live_jobs():
            time.sleep(0.5)
        assert job_ids[-1] not in slurmtools.live_jobs()
        print(f"no-host spawn failed cleanly after {seconds:.1f} s; loopback listener saw {listener.connections}")
    finally:
        listener.close()
        hub.stop()
        _copy_log(hub, "fail-closed-nohost")
        _cancel_our_jobs(hub)
        shutil.rmtree(jobdir, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_hub(slurm, jupyterhub_version, tmp_path_factory):
    hub = Hub(tmp_path_factory.mktemp("failclosed-hub"), """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
""")
    try:
        hub.start()
        yield hub
    finally:
        try:
            hub.stop_server("alice")
        except Exception:
            pass
        hub.stop()
        _copy_log(hub, "fail-closed-options")
        _cancel_our_jobs(hub)


def _spawn_page(hub, query):
    """GET /hub/spawn/alice?... in alice's browser session, as a bookmarked link would."""
    return hub.login_session("alice").get(f"{hub.url}/hub/spawn/alice?{query}", allow_redirects=False, timeout=60)


def test_refused_option_never_sticks(slurm_hub):
    """/hub/spawn/alice?x=1 is refused (400, nothing submitted); the next plain Start works."""
    hub = slurm_hub
    hub.ensure_user("alice")
    page = _spawn_page(hub, "x=1")
    assert page.status_code == 400, (page.status_code, page.text[:300])
    assert "x" in page.text and hub.server_model("alice") is None
    assert "submitted to the batch system" not in hub.log_text()  # no job

    # the next plain Start (REST with {}, as the home page's Start): a real job, ready
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    assert model["user_options"] == {}
    assert hub.user_request("alice", "api").status_code == 200
    print(f"plain Start after a refused option: ready in {seconds:.2f} s (job {model['state']['job_id']})")
    assert hub.stop_server("alice")


def test_scheduler_refusal_is_400_with_its_reason_and_does_not_stick(slurm_hub):
    """memory=1.5 passes the option checks, sbatch refuses it: 400 with sbatch's reason, cleaned."""
    hub = slurm_hub
    hub.ensure_user("alice")
    r = hub.api("POST", "/users/alice/server", json={"memory": "1.5"})
    assert r.status_code == 400, (r.status_code, r.text)
    message = r.json()["message"]
    assert "Invalid --mem specification" in message and "memory=1.5" in message
    assert "sbatch: error" not in message and "/" not in message.replace("memory=1.5", "")
    assert hub.server_model("alice") is None
    assert "Unhandled error starting" not in hub.log_text()

    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    print(f"plain Start after a refused value: ready in {seconds:.2f} s")


def _server_token(hub, user="alice"):
    """The running server's API token, read from its process (root may): the job's own credential."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        if env.get(b"JUPYTERHUB_API_URL", b"").decode().startswith(f"http://127.0.0.1:{hub.hub_port}/") and env.get(
            b"JUPYTERHUB_USER"
        ) == user.encode() and b"JUPYTERHUB_API_TOKEN" in env:
            return env[b"JUPYTERHUB_API_TOKEN"].decode()
    return None


def test_deeply_nested_port_report_is_400(slurm_hub):
    hub = slurm_hub
    if not (hub.server_model("alice") or {}).get("ready"):
        r, _ = hub.spawn("alice", options={"runtime": "00:30:00"})  # explicit: replaces any saved options
        assert (hub.server_model("alice") or {}).get("ready"), hub.log_tail()
    token = _server_token(hub)
    assert token, "the running server's token was not found"
    deep = "[" * 100_000 + "]" * 100_000
    for body in (deep, '{"port": ' + deep + "}"):
        r = requests.post(f"{hub.api_url}/batchspawner", data=body, timeout=30,
                          headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "RecursionError" not in hub.log_text()
    # the server is untouched
    assert hub.user_request("alice", "api").status_code == 200
