"""ProfilesSpawner forwards the rest of the Spawner API to a real Slurm child on a real hub:
progress (the child's job events in the hub's progress stream), get_env (the token reaches the
job: it reports its port), rename and delete_forever of a *stopped* named server (the hub calls
them after clear_state, so the wrapper builds a child for them).

The child class is a SlurmSpawner subclass defined in the hub's config that notes each
rename/delete_forever call in a file; everything else is the shipped code.
"""

import json
import time

import requests

import slurmtools

CONFIG = """
from batchspawner import SlurmSpawner

class NotingSlurm(SlurmSpawner):
    async def rename(self, old_name, new_name):
        with open({marks!r}, "a") as f:
            f.write(f"rename {{self.user.name}} {{old_name}} {{new_name}}\\n")

    async def delete_forever(self):
        with open({marks!r}, "a") as f:
            f.write(f"delete_forever {{self.user.name}} {{self.name}}\\n")

c.JupyterHub.spawner_class = 'profiles'
c.JupyterHub.allow_named_servers = True
c.JupyterHub.tornado_settings = {{'slow_spawn_timeout': 0}}  # the POST answers at once: the stream sees the spawn
c.SlurmSpawner.startup_poll_interval = 0.25
c.ProfilesSpawner.profiles = [
    {{'key': 'noting', 'display': 'Slurm (noting)', 'class': NotingSlurm, 'config': {{'req_partition': 'debug'}}}},
]
"""


def _progress_events(hub, user, server, timeout=120):
    """The hub's progress event stream (SSE) for one spawn, until it says ready or fails."""
    events = []
    url = f"{hub.api_url}/users/{user}/servers/{server}/progress"
    with requests.get(url, headers={"Authorization": f"token {hub.token}"}, stream=True, timeout=timeout) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[len("data:"):])
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    break
    return events


def test_progress_env_rename_delete_forever_reach_the_child(slurm, hubs, shared_dir):
    marks = shared_dir / "marks.txt"
    marks.write_text("")
    hub = hubs(CONFIG.format(marks=str(marks))).start()
    hub.ensure_user("alice")
    r = hub.api("POST", "/users/alice/servers/one", json={"profile": "noting"})
    assert r.status_code in (201, 202), r.text
    events = _progress_events(hub, "alice", "one")
    assert events and events[-1].get("ready"), (events, hub.log_tail())
    model = hub.server_model("alice", "one")
    job_id = model["state"]["child_state"]["job_id"]
    # the child's own events (its job id) came through the wrapper's progress()
    assert any(job_id in (e.get("message") or "") for e in events), events
    assert hub.user_request("alice", "api", server="one").status_code == 200  # get_env: token in the job

    assert hub.stop_server("alice", "one")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job_id in slurmtools.live_jobs():
        time.sleep(0.5)
    assert job_id not in slurmtools.live_jobs()

    r = hub.api("PATCH", "/users/alice/servers/one", json={"name": "two"})
    assert r.status_code == 200, r.text
    assert "rename alice one two" in marks.read_text()
    r = hub.api("DELETE", "/users/alice/servers/two", json={"remove": True})
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "delete_forever" not in marks.read_text():
        time.sleep(0.25)
    assert "delete_forever alice two" in marks.read_text(), marks.read_text()
    assert "two" not in hub.api("GET", "/users/alice").json()["servers"]
    print(f"wrapped Slurm child: {len(events)} progress events, rename and delete_forever forwarded")
