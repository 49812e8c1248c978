"""Shared pieces for the scale and resilience e2e tests (real Slurm, real hub)."""

import time

# A tiny web server standing in for the single-user server where only the scheduler side
# is measured: started by the real batchspawner-singleuser wrapper, which fills in {port}.
TINY_SERVER_CMD = "['/usr/bin/python3', '-m', 'http.server', '{port}', '--bind', '0.0.0.0']"

# Counts scheduler queries: logs its arguments, then runs the real squeue (or misbehaves
# while a flag file exists: MODE=hang|garbage|munge).
COUNTING_SQUEUE = """#!/bin/sh
echo "$*" >> {log}
if [ -e {flag} ]; then
  case "$(cat {flag})" in
    hang) sleep 60 ;;
    garbage) echo '<html><body>502 Bad Gateway</body></html>'; exit 0 ;;
    munge) echo 'squeue: error: Munge decode failed: Expired credential' >&2
           echo 'slurm_load_jobs error: Protocol authentication error' >&2; exit 1 ;;
  esac
fi
exec squeue "$@"
"""


def write_shims(shared_dir):
    log = shared_dir / "squeue-calls.log"
    flag = shared_dir / "squeue-mode"
    shim = shared_dir / "count-squeue"
    shim.write_text(COUNTING_SQUEUE.format(log=log, flag=flag))
    shim.chmod(0o755)
    log.touch()
    log.chmod(0o666)
    return shim, log, flag


def scale_config(shim, tiny=True, status_interval=2):
    cmd = f"c.Spawner.cmd = {TINY_SERVER_CMD}" if tiny else ""
    return f"""
c.JupyterHub.spawner_class = 'slurm'
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.Spawner.poll_interval = 1
c.SlurmSpawner.batch_status_cmd = "{shim} -h -t all -j {{job_ids}} -o '%i %T %B %r'"
c.SlurmSpawner.batch_query_cmd = "{shim} per-job -h -t all -j {{job_id}} -o '%T %B %r'"
c.SlurmSpawner.status_interval = {status_interval}
c.SlurmSpawner.command_timeout = 10
c.SlurmSpawner.req_job_name = 'jhpc-scale'
{cmd}
"""


def spawn_many(hub, servers, timeout=300):
    """POST every (user, server) at once, then wait until all are ready; returns seconds."""
    t0 = time.monotonic()
    for user, _ in servers:
        hub.ensure_user(user)
    for user, name in servers:
        r = hub.api("POST", f"/users/{user}/servers/{name}", json={})
        assert r.status_code in (201, 202), r.text
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if all_ready(hub, servers):
            return time.monotonic() - t0
        time.sleep(1)
    return None


def all_ready(hub, servers):
    models = {}
    for user in {u for u, _ in servers}:
        models[user] = hub.api("GET", f"/users/{user}").json().get("servers", {})
    return all(models[u].get(n, {}).get("ready") for u, n in servers)


def ready_count(hub, servers):
    models = {}
    for user in {u for u, _ in servers}:
        models[user] = hub.api("GET", f"/users/{user}").json().get("servers", {})
    return sum(1 for u, n in servers if models[u].get(n, {}).get("ready"))


def job_ids(hub, servers):
    ids = []
    for user in {u for u, _ in servers}:
        for name, model in hub.api("GET", f"/users/{user}").json().get("servers", {}).items():
            if (user, name) in servers:
                ids.append(model["state"]["job_id"])
    return ids


def stop_many(hub, servers):
    for user, name in servers:
        hub.api("DELETE", f"/users/{user}/servers/{name}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(hub.server_model(u, n) for u, n in servers):
        time.sleep(1)
