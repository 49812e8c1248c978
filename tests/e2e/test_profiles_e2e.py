"""ProfilesSpawner on a real hub: Slurm and LocalProcessSpawner children, restart, form visibility, 400s."""

import re
import sys
import time
from pathlib import Path

import requests

import slurmtools

VENV_BIN = Path(sys.executable).parent

CONFIG = f"""
c.JupyterHub.spawner_class = 'profiles'
c.JupyterHub.allow_named_servers = True
c.SlurmSpawner.startup_poll_interval = 0.25
c.Authenticator.admin_users = set()
c.ProfilesSpawner.profiles = [
    {{'key': 'slurm', 'display': 'Slurm', 'class': 'batchspawner.SlurmSpawner',
      'config': {{'req_partition': 'debug'}},
      'fields': {{'runtime': {{'type': 'walltime', 'max': '02:00:00', 'default': '00:30:00'}},
                 'memory': {{'type': 'memory', 'min': '128M', 'max': '1G', 'default': '256M'}}}}}},
    ('Local', 'local', 'jupyterhub.spawner.LocalProcessSpawner',
     {{'cmd': ['{VENV_BIN}/jupyterhub-singleuser'], 'http_timeout': 45}}),
    {{'key': 'a-only', 'display': 'Group A only', 'class': 'batchspawner.SlurmSpawner', 'groups': ['A']}},
    {{'key': 'b-only', 'display': 'Group B only', 'class': 'batchspawner.SlurmSpawner', 'groups': ['B']}},
]
"""


def _state(hub, name, server=""):
    return hub.api("GET", f"/users/{name}").json()["servers"][server]["state"]


def _timelimit(job_id):
    import subprocess

    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%l %m"], capture_output=True, text=True, timeout=20)
    return out.stdout.split()


def test_slurm_and_local_children_restart_and_refusals(slurm, hubs):
    hub = hubs(CONFIG).start()
    # hostile REST options: 400 naming the field, nothing submitted
    hub.ensure_user("alice")
    before = set(slurmtools.live_jobs())
    r = hub.api("POST", "/users/alice/server", json={"profile": "slurm", "memory": "256M\n#SBATCH --uid=0"})
    assert r.status_code == 400 and "memory" in r.text and "newlines" in r.text, r.text
    r = hub.api("POST", "/users/alice/server", json={"profile": "slurm", "cmd": "id"})
    assert r.status_code == 400 and "cmd" in r.text, r.text
    r = hub.api("POST", "/users/alice/server", json={"profile": "b-only"})
    assert r.status_code == 400 and "profile" in r.text, r.text
    for falsy in ("", None, False, 0):  # present but not a profile: refused, never the default profile
        r = hub.api("POST", "/users/alice/server", json={"profile": falsy})
        assert r.status_code == 400 and "profile" in r.text, (falsy, r.text)
    assert hub.wait_stopped("alice", timeout=20)
    assert set(slurmtools.live_jobs()) - before == set()

    # a real Slurm child with validated fields
    r, seconds = hub.spawn("alice", {"profile": "slurm", "runtime": "00:20:00", "memory": "512M"})
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("alice")["ready"], hub.log_tail()
    state = _state(hub, "alice")
    assert state["profile"] == "slurm" and state["child_class"] == "batchspawner.schedulers.slurm.SlurmSpawner"
    job_id = state["child_state"]["job_id"]
    assert slurmtools.job_state(job_id) == "RUNNING"
    assert _timelimit(job_id) == ["20:00", "512M"]
    assert hub.user_request("alice", "api").status_code == 200
    print(f"profiles slurm submit->ready {seconds:.2f} s (job {job_id})")

    # a LocalProcessSpawner child on a named server, run as bob (not root)
    r, local_seconds = hub.spawn("bob", {"profile": "local"}, server="lab")
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("bob", "lab")["ready"], hub.log_tail()
    assert _state(hub, "bob", "lab")["child_class"] == "jupyterhub.spawner.LocalProcessSpawner"
    assert hub.user_request("bob", "api", server="lab").status_code == 200
    print(f"profiles local named server ready {local_seconds:.2f} s")

    # hub restart: the same children are rebuilt from state and their servers found
    t0 = time.monotonic()
    hub.restart()
    assert hub.server_model("alice")["ready"]
    assert _state(hub, "alice")["child_state"]["job_id"] == job_id
    assert hub.user_request("alice", "api").status_code == 200
    assert hub.user_request("bob", "api", server="lab").status_code == 200
    print(f"hub restart with 2 servers kept: {time.monotonic() - t0:.2f} s")

    assert hub.stop_server("bob", "lab")
    assert hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job_id in slurmtools.live_jobs():
        time.sleep(0.5)
    assert job_id not in slurmtools.live_jobs()


def _login(hub, name):
    s = requests.Session()
    s.get(hub.url + "/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf")
    r = s.post(hub.url + "/hub/login", data={"username": name, "password": "pw", "_xsrf": xsrf}, timeout=30,
               allow_redirects=False)
    assert r.status_code == 302, r.text
    return s, xsrf


def test_form_shows_group_profiles_only_and_refuses_invisible(slurm, hubs):
    hub = hubs(CONFIG).start()
    hub.ensure_user("alice")
    r = hub.api("POST", "/groups/A", json={"users": ["alice"]})
    assert r.status_code in (201, 409), r.text
    session, xsrf = _login(hub, "alice")
    page = session.get(hub.url + "/hub/spawn", timeout=30)
    assert page.status_code == 200
    shown = re.findall(r'name="profile"[^>]*value="([^"]+)"', page.text)
    assert shown == ["slurm", "local", "a-only"], page.text[:2000]
    assert "form-check-input" in page.text and "slurm.memory" in page.text
    before = set(slurmtools.live_jobs())
    xsrf = re.search(r'_xsrf=([^"&]+)', page.text).group(1)  # the hub's own form action carries it
    r = session.post(hub.url + "/hub/spawn", data={"profile": "b-only", "_xsrf": xsrf}, timeout=30,
                     allow_redirects=False)
    assert r.status_code == 400 and "not a profile available to you" in r.text
    r = session.post(hub.url + "/hub/spawn", data={"profile": "slurm", "slurm.runtime": "5:00:00;id", "_xsrf": xsrf},
                     timeout=30, allow_redirects=False)
    assert r.status_code == 400 and "runtime" in r.text
    assert hub.server_model("alice") is None
    assert set(slurmtools.live_jobs()) - before == set()
