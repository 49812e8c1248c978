"""Issue 6 on the real Slurm: shared status query, faults, restarts (real hub, real jobs).

Where only the scheduler side is measured, the job runs a tiny web server (python -m
http.server) instead of jupyterhub-singleuser, started by the real wrapper; the
30-spawn storm uses real jupyterhub-singleuser servers.
"""

import time

import requests

import slurmtools
from scale_helpers import all_ready, job_ids, ready_count, scale_config, spawn_many, stop_many, write_shims


def calls(log):
    return [line.split() for line in log.read_text().splitlines() if line.strip()]


def test_20_servers_one_shared_query_per_round(slurm, hubs, shared_dir):
    shim, log, _ = write_shims(shared_dir)
    hub = hubs(scale_config(shim, status_interval=2)).start()
    servers = [("alice", f"s{i}") for i in range(20)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    ids = sorted(job_ids(hub, servers))
    assert len(ids) == 20
    log.write_text("")
    time.sleep(8.5)  # the hub polls every server every second: 160 polls in this window
    seen = calls(log)
    assert not [c for c in seen if c[0] == "per-job"], "no per-job queries while the shared poller runs"
    assert 3 <= len(seen) <= 6, seen
    for argv in seen:
        listed = argv[argv.index("-j") + 1].split(",")
        assert sorted(listed) == ids  # each round asks about all 20 jobs in one command
    assert all_ready(hub, servers)
    stop_many(hub, servers)
    live = slurmtools.live_jobs()
    assert not [j for j in ids if j in live]


def _api_latencies(hub, seconds):
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        r = requests.get(hub.api_url + "/users/alice", headers={"Authorization": f"token {hub.token}"}, timeout=10)
        assert r.status_code == 200
        latencies.append(time.monotonic() - t0)
        time.sleep(0.1)
    return latencies


def test_hanging_query_does_not_block_the_hub_api(slurm, hubs, shared_dir):
    shim, log, flag = write_shims(shared_dir)
    hub = hubs(scale_config(shim, status_interval=1)).start()
    servers = [("alice", f"h{i}") for i in range(3)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    flag.write_text("hang")
    time.sleep(2)
    latencies = _api_latencies(hub, 12)
    assert max(latencies) < 1.0, max(latencies)
    assert "timed out after 10 s" in hub.log_text()
    assert all_ready(hub, servers)
    flag.unlink()
    stop_many(hub, servers)


def test_unparseable_and_failing_queries_for_2_minutes_drop_nothing(slurm, hubs, shared_dir):
    shim, log, flag = write_shims(shared_dir)
    hub = hubs(scale_config(shim, status_interval=1) + "\nc.SlurmSpawner.status_max_interval = 4\n").start()
    servers = [("alice", f"g{i}") for i in range(5)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    ids = job_ids(hub, servers)
    end = time.monotonic() + 120
    mode = "garbage"
    while time.monotonic() < end:
        flag.write_text(mode)  # alternate an unseen error and garbage output
        time.sleep(10)
        assert ready_count(hub, servers) == 5
        mode = "munge" if mode == "garbage" else "garbage"
    text = hub.log_text()
    assert "unexpected squeue line" in text and "Munge decode failed" in text
    live = slurmtools.live_jobs()
    assert all(live.get(j) == "RUNNING" for j in ids), live
    flag.unlink()
    time.sleep(6)
    assert ready_count(hub, servers) == 5
    for user, name in servers:
        assert hub.user_request(user, "", server=name).status_code in (200, 404)  # reaches the tiny server
    stop_many(hub, servers)
    live = slurmtools.live_jobs()
    assert not [j for j in ids if j in live], "no job orphaned"


def test_hub_restarted_3_times_keeps_10_servers(slurm, hubs, shared_dir):
    shim, _, _ = write_shims(shared_dir)
    hub = hubs(scale_config(shim)).start()
    servers = [("alice", f"r{i}") for i in range(10)]
    assert spawn_many(hub, servers) is not None, hub.log_tail()
    ids = sorted(job_ids(hub, servers))
    for round_ in range(3):
        t0 = time.monotonic()
        hub.restart()
        api_after = time.monotonic() - t0
        time.sleep(3)  # a few poll rounds of the restarted hub
        assert ready_count(hub, servers) == 10, f"restart {round_ + 1}: {hub.log_tail()}"
        assert sorted(job_ids(hub, servers)) == ids
        print(f"restart {round_ + 1}: API back after {api_after:.1f} s, 10/10 kept")
    for user, name in servers:
        assert hub.user_request(user, "", server=name).status_code in (200, 404)
    stop_many(hub, servers)


def test_30_concurrent_spawns_with_example_defaults(slurm, hubs, shared_dir):
    """Real jupyterhub-singleuser x 30 on a 2-core machine, with the example config's timeouts."""
    shim, _, _ = write_shims(shared_dir)
    config = scale_config(shim, tiny=False, status_interval=10) + """
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 120
c.Spawner.poll_interval = 30
"""
    hub = hubs(config).start()
    servers = [(user, f"storm{i}") for i in range(15) for user in ("alice", "bob")]
    seconds = spawn_many(hub, servers, timeout=600)
    ready = ready_count(hub, servers)
    print(f"30 concurrent spawns: {ready}/30 ready in {seconds} s")
    assert ready == 30, hub.log_tail()
    stop_many(hub, servers)
