"""Issue 21, item 8: a job reports another user's port (real Slurm, real users alice and bob).

alice's job, with her own real server token, reports a port bob listens on: first the port of
bob's own server of this hub, then a port of a plain listener of bob's (not a server of the
hub). On main both were accepted (HTTP 201) and alice got a route to bob's port. The hub must
refuse both: an address another server of this hub uses, and (server_proof = 'required') a
server that cannot prove it holds alice's server token. The hub's log says why; alice's spawn
fails with a clear message; bob's listener gets nothing from the hub.
"""

import json
import pwd
import re
import subprocess
import time
from pathlib import Path

import slurmtools

HERE = Path(__file__).parent


def _listening_ports(uid):
    """LISTEN ports of ``uid`` on IPv4 loopback or any address (what anyone reads in /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[7]) == uid and f[1].split(":")[0] in ("0100007F", "00000000"):
            ports.add(int(f[1].split(":")[1], 16))
    return ports


def _wait_gone_or_failed(hub, name, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.server_model(name)
        if model is None:
            return None
        if model.get("ready"):
            return model
        time.sleep(0.25)
    return hub.server_model(name)


def test_a_report_of_another_users_port_is_refused(slurm, hubs, shared_dir):
    config = slurmtools.probe_wrapper_config(shared_dir, HERE / "foreign_port_wrapper.py",
                                             "c.SlurmSpawner.server_proof = 'required'\n")
    hub = hubs(config).start()
    bob_uid = pwd.getpwnam("bob").pw_uid
    before = _listening_ports(bob_uid)
    r, _ = hub.spawn("bob", timeout=180)
    assert r.status_code in (201, 202), r.text
    assert (hub.server_model("bob") or {}).get("ready"), hub.log_tail(80)
    bob_port = int(re.search(r"bob: Server is listening on 127\.0\.0\.1:(\d+)", hub.log_text()).group(1))
    assert bob_port in _listening_ports(bob_uid) - before  # what alice reads in /proc/net/tcp

    # 1. the port of bob's server of this hub
    (shared_dir / "target").write_text(str(bob_port))
    hub.ensure_user("alice")
    r = hub.api("POST", "/users/alice/server", json={})
    # a spawn that fails within JupyterHub's slow_spawn_timeout answers 500 with the spawner's message
    assert r.status_code in (201, 202) or "another server of this hub already uses" in r.text, r.text
    model = _wait_gone_or_failed(hub, "alice")
    log = hub.log_text()
    assert not (model or {}).get("ready"), "alice got a route to bob's server"
    assert "which is already the address of bob's server" in log, hub.log_tail(60)
    assert "another server of this hub already uses" in log
    assert hub.user_request("bob", "api").status_code == 200  # bob's server is untouched

    # 2. a plain listener of bob's, no server of the hub: it cannot prove alice's token
    listener = subprocess.Popen(
        ["sudo", "-u", "bob", "/usr/bin/python3", "-c",
         "import http.server as h,sys; s=h.HTTPServer(('127.0.0.1',0),h.SimpleHTTPRequestHandler);"
         "open(sys.argv[1],'w').write(str(s.server_port)); s.serve_forever()", str(shared_dir / "bobport")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/tmp",
    )
    try:
        deadline = time.monotonic() + 20
        while not (shared_dir / "bobport").exists() or not (shared_dir / "bobport").read_text():
            assert listener.poll() is None and time.monotonic() < deadline, listener.stderr.read()
            time.sleep(0.05)
        (shared_dir / "target").write_text((shared_dir / "bobport").read_text())
        r = hub.api("POST", "/users/alice/server", json={})
        assert r.status_code in (201, 202) or "could not prove that the server answering" in r.text, r.text
        model = _wait_gone_or_failed(hub, "alice")
        log = hub.log_text()
        assert not (model or {}).get("ready"), "alice got a route to bob's listener"
        assert "could not prove it is this job's server" in log, hub.log_tail(60)
        reports = [json.loads(p.read_text()) for p in shared_dir.glob("report-*.json")]
        assert len(reports) == 2 and {r["code"] for r in reports} <= {201, 403}, reports
    finally:
        listener.terminate()
        listener.wait(10)
    assert re.search(r"bob: job \d+'s server proved its token", hub.log_text())  # the real wrapper's server proves
    assert hub.stop_server("bob")
    jobs = set(re.findall(r"Job (\d+) submitted", hub.log_text()))
    assert len(jobs) == 3, jobs
