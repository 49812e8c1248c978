"""Issue 21, items 5, 6 and 9 on a real hub with the real Slurm.

5. A hub user named root, slurm or munge never runs a command: REST spawn and the spawn page
   get HTTP 403 naming the reason, and Slurm has no job of theirs.
6. A job whose log becomes a symlink to a 50 MB sparse file (NUL bytes, no newline) fails the
   spawn with a small error: the REST body, the hub log's lines and the hub's memory stay bounded.
9. A 20 MB user_options body (POST/PUT/PATCH of a named server, the spawn form) gets 413 at once;
   the database and its WAL do not grow, no named server row is left, and four in parallel do
   not stall the hub's event loop.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

import slurmtools
from hubharness import ARTIFACTS, Hub

BIG = 20 * 1024 * 1024

# the job: replaces its own log with a symlink to a 50 MB sparse file, then fails
HOSTILE_JOB = r'''
log="$HOME/jhpc21-tail-$SLURM_JOB_ID.log"
big="$HOME/jhpc21-sparse-$SLURM_JOB_ID"
rm -f "$big"; truncate -s 50M "$big"
ln -sf "$big" "$log"
exit 3
'''


def _rss_peak_kb(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _rss_kb(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _jobs_of(users) -> set:
    r = subprocess.run(["squeue", "-h", "-t", "all", "-u", ",".join(users), "-o", "%i"],
                       capture_output=True, text=True, timeout=20)
    return set(r.stdout.split())


@pytest.fixture(scope="module")
def hub(slurm, jupyterhub_version, tmp_path_factory):
    hub = Hub(tmp_path_factory.mktemp("issue21-hub"), f"""
from batchspawner.hub.hubdb import sqlite_wal
sqlite_wal()
c.JupyterHub.spawner_class = 'slurm'
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 5
c.SlurmSpawner.req_runtime = '00:10:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.log_path = '{{homedir}}/jhpc21-tail-{{job_id}}.log'
c.SlurmSpawner.batchspawner_singleuser_cmd = ''
c.SlurmSpawner.cmd = ['/bin/sh', '-c', {HOSTILE_JOB!r}, 'job']
c.JupyterHub.tornado_settings = {{'slow_spawn_timeout': 90}}
""")
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        if hub.log_path.exists():
            dest = ARTIFACTS / "issue21-hub-bounds"
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "hub.log").write_bytes(hub.log_path.read_bytes()[-2_000_000:])
            ours = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
            slurmtools.cancel([j for j in ours if j in slurmtools.live_jobs()])
        subprocess.run(["sh", "-c", "rm -f /home/alice/jhpc21-sparse-* /home/alice/jhpc21-tail-*.log"], timeout=20)


# ---------------------------------------------------------------- item 5
@pytest.mark.parametrize("name", ["root", "slurm", "munge"])
def test_system_account_spawn_is_403_and_submits_nothing(hub, name):
    before = _jobs_of(["root", "slurm", "munge"])
    hub.ensure_user(name)
    t0 = time.monotonic()
    r = hub.api("POST", f"/users/{name}/server", json={})
    seconds = time.monotonic() - t0
    assert r.status_code == 403, (r.status_code, r.text[:500])
    message = r.json()["message"]
    assert "This account cannot start servers" in message and repr(name) in message, message
    assert "personal account" in message
    # the spawn page (a browser login as that name: the test hub takes any name)
    page = hub.login_session(name).get(f"{hub.url}/hub/spawn/{name}", timeout=60)
    assert page.status_code == 403, (page.status_code, page.text[:500])
    assert "This account cannot start servers" in page.text
    time.sleep(1)
    assert _jobs_of(["root", "slurm", "munge"]) == before
    log = hub.log_text()
    assert f"{name}: refused before any command ran" in log
    assert not re.search(rf"sudo -E -u {name}\b", log)
    print(f"{name}: 403 in {seconds:.2f} s, no job")


# ---------------------------------------------------------------- item 6
def test_hostile_log_symlink_keeps_error_log_and_memory_small(hub):
    pid = hub.proc.pid
    hub.ensure_user("alice")
    rss0, peak0 = _rss_kb(pid), _rss_peak_kb(pid)
    log_size0 = hub.log_path.stat().st_size
    t0 = time.monotonic()
    r = hub.api("POST", "/users/alice/server", json={}, timeout=120)
    seconds = time.monotonic() - t0
    if r.status_code in (201, 202):  # slower than slow_spawn_timeout: wait for the failure
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (hub.server_model("alice") or {}).get("pending"):
            time.sleep(0.5)
    body = r.content
    peak1, rss1 = _rss_peak_kb(pid), _rss_kb(pid)
    with open(hub.log_path, "rb") as f:
        f.seek(log_size0)
        new_log = f.read()
    longest = max((len(x) for x in new_log.splitlines()), default=0)
    print(f"failed spawn: HTTP {r.status_code} in {seconds:.2f} s, body {len(body)} bytes, hub log +{len(new_log)} "
          f"bytes (longest line {longest}), hub RSS {rss0 // 1024} -> {rss1 // 1024} MB, peak {peak0 // 1024} -> "
          f"{peak1 // 1024} MB")
    assert r.status_code == 500, (r.status_code, body[:500])
    message = r.json()["message"]
    assert "ended before your server started" in message and "Last lines of the job's log" in message, message[:500]
    assert len(body) < 32 * 1024
    assert longest < 32 * 1024 and len(new_log) < 2 * 1024 * 1024
    assert peak1 - peak0 < 64 * 1024, f"hub peak RSS grew by {(peak1 - peak0) // 1024} MB"
    jobs = re.findall(r"Job (\d+) submitted", new_log.decode(errors="replace"))
    assert jobs and Path(f"/home/alice/jhpc21-tail-{jobs[-1]}.log").is_symlink()  # the hostile log was there


# ---------------------------------------------------------------- item 9
def _db_bytes(hub) -> int:
    return sum(p.stat().st_size for p in hub.workdir.glob("hub.sqlite*"))


def _named_servers(hub, user="alice") -> set:
    r = hub.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"})
    return set(r.json().get("servers", {}))


def test_oversized_options_refused_before_the_database(hub):
    hub.ensure_user("alice")
    value = "A" * BIG
    db0 = _db_bytes(hub)
    cases = [
        ("POST", "/users/alice/servers/big1", {"user_options": {"profile": value}}),
        ("PUT", "/users/alice/servers/big2", {"user_options": {"profile": value}}),
        ("POST", "/users/alice/server", {"profile": value}),
    ]
    results = []
    for method, path, body in cases:
        t0 = time.monotonic()
        r = hub.api(method, path, json=body, timeout=60)
        seconds = time.monotonic() - t0
        print(f"{method} {path} with a {BIG // 2**20} MB option: HTTP {r.status_code} in {seconds:.2f} s")
        results.append((method, path, r.status_code, r.text[:300], seconds))
    # PATCH of an existing named server's options (JupyterHub stores and logs them whole)
    r = hub.api("PUT", "/users/alice/servers/small", json={"user_options": {}})
    assert r.status_code == 201, r.text
    r = hub.api("PATCH", "/users/alice/servers/small", json={"user_options": {"profile": value}}, timeout=60)
    print(f"PATCH with a {BIG // 2**20} MB option: HTTP {r.status_code}")
    results.append(("PATCH", "small", r.status_code, r.text[:300], 0))
    # the spawn form (a browser)
    s = hub.login_session("alice")
    xsrf = s.cookies.get("_xsrf", "")
    t0 = time.monotonic()
    page = s.post(f"{hub.url}/hub/spawn/alice/big3", data={"profile": value, "_xsrf": xsrf}, timeout=60)
    print(f"spawn form with a {BIG // 2**20} MB field: HTTP {page.status_code} in {time.monotonic() - t0:.2f} s")
    grown = _db_bytes(hub) - db0
    names = _named_servers(hub)
    hub.api("DELETE", "/users/alice/servers/small", json={"remove": True})
    log_bytes = len(hub.log_text().encode())
    print(f"database + WAL grew by {grown} bytes; named servers left: {sorted(names)}; hub log {log_bytes} bytes")
    assert grown < 2 * 1024 * 1024, f"database grew by {grown} bytes"
    assert not names & {"big1", "big2", "big3"}, names
    assert log_bytes < 5 * 1024 * 1024  # no 20 MB value in the hub's log
    for method, path, status, text, seconds in results:
        assert status in (400, 413) and "user_options" in text, (method, path, status, text)
        assert seconds < 10, (method, path, seconds)
    assert page.status_code in (400, 413) and "user_options" in page.text


def test_four_oversized_bodies_in_parallel_do_not_stall_the_hub(hub):
    hub.ensure_user("alice")
    value = "B" * BIG
    db0 = _db_bytes(hub)
    latencies, done = [], threading.Event()

    def ping():
        while not done.is_set():
            t0 = time.monotonic()
            requests.get(f"http://127.0.0.1:{hub.hub_port}/hub/api/", timeout=30)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)

    statuses = []

    def big(i):
        r = hub.api("POST", f"/users/alice/servers/par{i}", json={"user_options": {"profile": value}}, timeout=120)
        statuses.append(r.status_code)

    pinger = threading.Thread(target=ping)
    pinger.start()
    time.sleep(0.3)
    senders = [threading.Thread(target=big, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    seconds = time.monotonic() - t0
    time.sleep(0.3)
    done.set()
    pinger.join()
    worst = max(latencies)
    print(f"4 x {BIG // 2**20} MB in parallel: {statuses} in {seconds:.2f} s; hub API latency worst {worst:.3f} s "
          f"over {len(latencies)} pings; database grew {_db_bytes(hub) - db0} bytes")
    assert all(s in (400, 413) for s in statuses), statuses
    assert worst < 1.0, f"the hub's loop stalled {worst:.2f} s"
    assert _db_bytes(hub) - db0 < 2 * 1024 * 1024
    assert not _named_servers(hub) & {f"par{i}" for i in range(4)}
