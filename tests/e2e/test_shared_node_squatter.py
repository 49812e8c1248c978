"""Port squatting on a shared node (issue 11, item 1), with two real users on the real Slurm.

bob runs tests/e2e/squatter.py on the node where alice's job runs. Here "alice" is the user
``sqvictim`` (created by scripts/test): the squatter attacks every listening socket of its
victim's uid, and other test runs on a shared Slurm use the real alice. It takes alice's port the
moment it can learn it (from her job's output file, from /proc/net/tcp{,6} as ``ss`` would) on
every address it can bind, and records every request it receives. alice's spawn must become
ready on her own server (or fail clearly), the hub must never route her to bob's listener, and
nothing of hers (no request, no token) may reach bob.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pwd

from squattertools import jsonl, squatting


def test_squatter_never_receives_alices_requests(slurm, hubs, shared_dir):
    victim = "sqvictim"  # alice's role, a user no other test spawns for
    alice = pwd.getpwnam(victim)
    os.chmod(alice.pw_dir, 0o755)  # as alice's home on many clusters (and here): others may look in
    with squatting(shared_dir, alice, "240") as out:
        hub = hubs("c.JupyterHub.spawner_class = 'slurm'\n").start()
        hub.ensure_user(victim)
        r, secs = hub.spawn(victim, timeout=120)
        assert r.status_code in (201, 202), r.text
        model = hub.server_model(victim)
        log = hub.log_text()
        port = None
        if model and model.get("ready"):
            # alice's requests through the proxy reach her own jupyter_server, with her token
            token = hub.api("POST", f"/users/{victim}/tokens", json={"note": "squat"}).json()["token"]
            for _ in range(5):
                got = subprocess.run(
                    ["curl", "-s", "-H", f"Authorization: token {token}", hub.url + f"/user/{victim}/api"],
                    capture_output=True, text=True, timeout=30,
                ).stdout
                assert "squatter" not in got and json.loads(got)["version"] != "9.9.9", got
                assert "squatter" not in hub.user_request(victim, "api").text
            port = int(re.search(r"Server is listening on 127\.0\.0\.1:(\d+)", log).group(1))
            # the attack really ran: bob learned her port and holds it on the addresses he could
            # (bob's scanner sees her listener within its scan interval; on a loaded machine that
            # took over 1 s: wait for it, bounded, instead of sampling once)
            deadline = time.monotonic() + 20
            while True:
                bound = jsonl(out / "bound.jsonl")
                if any(b["port"] == port for b in bound) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert any(b["port"] == port for b in bound), (port, bound)
            assert not any(b["port"] == port and b["address"] in ("0.0.0.0", "127.0.0.1") for b in bound), bound
        else:
            # failing is allowed, but clearly: bob took the port jupyter_server printed before it
            # bound it (while job logs are readable by others), the server could not bind and the
            # spawn failed with the job's own words, never routed to bob
            assert "before the server started" in log and "before it listened on a port" in log, hub.log_tail()
        hub.stop_server(victim)
        received = jsonl(out / "requests.jsonl")
        assert received == [], f"bob's listener received {len(received)} request(s): {received[:3]}"
        # the job's output names no port: the wrapper prints none and redacts the server's own
        # lines (Jupyter Server prints its URL before it binds)
        job_id = re.search(r"Job (\d+) submitted", log).group(1)
        job_log = Path(alice.pw_dir) / f"jupyterhub_slurmspawner_{job_id}.log"
        if port and job_log.exists():
            text = job_log.read_text()
            assert "batchspawner-singleuser: [" in text and ":<port>/" in text, text[-2000:]
            assert str(port) not in text, text[-2000:]
