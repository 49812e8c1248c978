"""The hub's database on PostgreSQL (Debian 12's server, scripts/cluster/postgres.sh), with the
servers on cluster ``current`` (Slurm 26.05, through the login node): two servers spawn, survive a
hub restart read back from PostgreSQL, and stop leaving no job."""

from __future__ import annotations

import secrets
import shutil
import subprocess

import clustertools
import pytest
from hubharness import Hub
from test_cluster_current import CONFIG, NODE_CMD, job_of, route_target, spawn_ready, wait_job_gone

from e2e.conftest import require


@pytest.fixture(scope="module")
def db_url():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        require(False, "psycopg2 missing in the hub's venv (scripts/setup-clusters.sh installs it)")
    out = subprocess.run(["bash", str(clustertools.SCRIPTS / "postgres.sh"), "start"], capture_output=True,
                         text=True, timeout=180)  # fmt: skip
    require(out.returncode == 0, f"PostgreSQL did not start: {out.stderr.strip()[-500:]}")
    return out.stdout.strip().splitlines()[-1]


def test_postgres_hub_spawn_restart_stop(db_url, tmp_path, jupyterhub_version):
    ok, why = clustertools.available()
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    current = clustertools.start("current")
    token = secrets.token_hex(16)
    config = CONFIG.format(hub_ip=current.hub_ip, prefix=current.ssh_prefix(str(tmp_path / "known_hosts")),
                           node_cmd=NODE_CMD, resolver={n: current.addr[n] for n in current.nodes})  # fmt: skip
    config += f"c.JupyterHub.db_url = {db_url!r}\n"
    hub = Hub(tmp_path / "hub", config, env={"CONFIGPROXY_AUTH_TOKEN": token})
    hub.proxy_token = token
    hub.start()
    try:
        assert "sqlite" not in (tmp_path / "hub" / "jupyterhub_config.py").read_text().split("db_url")[-1]
        assert not (tmp_path / "hub" / "hub.sqlite").exists()
        spawn_ready(hub, "alice", "one")
        spawn_ready(hub, "alice", "two")
        jobs = {s: job_of(hub, "alice", s) for s in ("one", "two")}
        hub.restart()
        for server, job_id in jobs.items():
            model = hub.server_model("alice", server)
            assert model and model["ready"], hub.log_tail()
            assert job_of(hub, "alice", server) == job_id
            assert route_target(hub, "alice", server)
            assert hub.user_request("alice", "api", server=server).status_code == 200
        for server, job_id in jobs.items():
            assert hub.stop_server("alice", server)
            assert wait_job_gone(current, job_id)
        # the state really lived in PostgreSQL
        import sqlalchemy as sa

        with sa.create_engine(db_url).connect() as conn:
            names = {r[0] for r in conn.execute(sa.text("select name from users"))}
        assert "alice" in names
    finally:
        clustertools.finish_hub(hub, "cluster-postgres", [current], user="alice")


def test_postgres_hub_storm_of_20_and_restart(db_url, slurm, hubs, shared_dir):
    """20 spawns at once on the host's Slurm with the hub's state in PostgreSQL (the jobs run a
    tiny web server through the real wrapper), a hub restart keeps all 20, stop leaves no job."""
    import slurmtools
    from scale_helpers import all_ready, job_ids, scale_config, spawn_many, stop_many, write_shims

    shim, _, _ = write_shims(shared_dir)
    hub = hubs(scale_config(shim) + f"c.JupyterHub.db_url = {db_url!r}\n").start()
    servers = [(user, f"pg{i}") for i in range(10) for user in ("alice", "bob")]
    seconds = spawn_many(hub, servers)
    assert seconds is not None, hub.log_tail()
    ids = sorted(job_ids(hub, servers))
    assert len(ids) == 20
    hub.restart()
    assert all_ready(hub, servers), hub.log_tail()
    assert sorted(job_ids(hub, servers)) == ids
    print(f"postgres storm: 20 ready in {seconds:.1f} s, kept across a restart")
    stop_many(hub, servers)
    live = slurmtools.live_jobs()
    assert not [j for j in ids if j in live]
