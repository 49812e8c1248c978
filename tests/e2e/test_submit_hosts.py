"""Submit hosts over real OpenSSH: two real sshd on loopback high ports, a real hub, the real Slurm.

Each sshd logs the commands it runs (tests/sshdtools.py), so the tests can tell which host
submitted, queried and cancelled. ``exec_prefix`` is set to ``/bin/false``: with submit_hosts
set nothing may go through it.
"""

import asyncio
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

import slurmtools
import sshdtools
from batchspawner.commands.runner import CommandError
from batchspawner.commands.ssh import SshRunner
from batchspawner.commands.submit_hosts import HostHealth
from conftest import require

CONFIG = """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.exec_prefix = '/bin/false'
c.SlurmSpawner.submit_hosts = {hosts!r}
c.SlurmSpawner.ssh_identity_file = {key!r}
c.SlurmSpawner.ssh_options = {options!r}
c.SlurmSpawner.ssh_control_dir = {control!r}
c.SlurmSpawner.ssh_connect_timeout = 3
c.SlurmSpawner.ssh_failover_cooldown = {cooldown}
c.SlurmSpawner.token_via_file = {token_via_file}
"""


@pytest.fixture
def ssh_pair():
    ok, why = sshdtools.available()
    require(ok, why)
    key = sshdtools.ClientKey()
    first = sshdtools.Sshd(key).start()
    second = sshdtools.Sshd(key, accept_env="LANG LC_* JHPC_*").start()
    control = Path(tempfile.mkdtemp(prefix="jhpc-cm-"))  # short: socket paths are limited
    try:
        yield key, first, second, control
    finally:
        shutil.rmtree(control, ignore_errors=True)
        first.cleanup()
        second.cleanup()
        key.cleanup()


def hub_config(key, first, second, control, cooldown=60, token_via_file=False):
    return CONFIG.format(
        hosts=[f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"],
        key=str(key.key),
        options=key.ssh_options(),
        control=str(control),
        cooldown=cooldown,
        token_via_file=token_via_file,
    )


def job_id_of(hub, name):
    return hub.api("GET", f"/users/{name}").json()["servers"][""]["state"]["job_id"]


def wait_gone(job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and slurmtools.job_state(job_id) not in ("", "CANCELLED", "COMPLETED"):
        time.sleep(0.5)
    return slurmtools.job_state(job_id) in ("", "CANCELLED", "COMPLETED")


def spawn_and_check(hub):
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    assert slurmtools.job_state(job_id) == "RUNNING"
    # the server reached the hub with the token and JUPYTERHUB_* that travelled over ssh
    assert hub.user_request("alice", "api").status_code == 200
    return job_id, seconds


def kinds(commands):
    """Which scheduler commands a host ran (the env-reading sh wrapper is stripped by the search)."""
    return {k for k in ("sbatch", "squeue", "scancel", "write-token") for c in commands if k in c.split(" ")}


def test_first_host_down_then_back(slurm, hubs, ssh_pair):
    key, first, second, control = ssh_pair
    first.stop()  # the first submit host is down
    hub = hubs(hub_config(key, first, second, control, cooldown=3)).start()
    job_id, seconds = spawn_and_check(hub)
    print(f"spawn through the second host with the first down: {seconds:.2f} s (job {job_id})")
    assert first.commands() == []
    assert kinds(second.commands()) >= {"sbatch", "squeue"}
    assert all("JUPYTERHUB_API_TOKEN=" not in c for c in second.commands())  # values ride on stdin
    assert f"submit host 127.0.0.1:{first.port} unreachable" in hub.log_text()
    assert hub.stop_server("alice")
    assert "scancel" in kinds(second.commands())
    assert wait_gone(job_id)

    # the first host comes back; after the cool-down the hub takes it back into use
    first.start()
    time.sleep(3.5)
    before = len(second.commands())
    job_id, seconds = spawn_and_check(hub)
    print(f"spawn after the first host came back: {seconds:.2f} s (job {job_id})")
    assert kinds(first.commands()) >= {"sbatch", "squeue"}
    assert len(second.commands()) == before
    assert hub.stop_server("alice")
    assert "scancel" in kinds(first.commands())
    assert wait_gone(job_id)


def test_both_up_uses_first_with_token_file(slurm, hubs, ssh_pair):
    key, first, second, control = ssh_pair
    hub = hubs(hub_config(key, first, second, control, token_via_file=True)).start()
    job_id, seconds = spawn_and_check(hub)
    print(f"spawn with both hosts up (token_via_file): {seconds:.2f} s (job {job_id})")
    assert kinds(first.commands()) >= {"write-token", "sbatch", "squeue"}
    assert second.commands() == []
    assert "unreachable" not in hub.log_text()
    assert hub.stop_server("alice")
    assert "scancel" in kinds(first.commands())
    assert wait_gone(job_id)


def test_runner_env_methods_on_real_sshd(ssh_pair):
    """Both ways of sending variables, and a failure classification, against real OpenSSH."""
    key, first, second, control = ssh_pair
    first.stop()
    common = dict(user="alice", identity_file=str(key.key), options=key.ssh_options(), control_dir=str(control))
    hosts = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
    secret = "tok-e2e-" + str(time.time_ns())
    probe = ["sh", "-c", 'printf "%s|" "$JHPC_PROBE"; cat']

    async def go():
        out = {}
        for method in ("stdin", "sendenv"):
            runner = SshRunner(hosts=hosts, env_method=method, health=HostHealth(), **common)
            t0 = time.monotonic()
            result = await runner.run(probe, env={"JHPC_PROBE": secret, "PATH": "/hub"}, stdin="body\n")
            out[method] = (result.stdout, time.monotonic() - t0)
            t0 = time.monotonic()
            await runner.run(["true"])
            out[method + "-reused"] = time.monotonic() - t0
            with pytest.raises(CommandError) as info:  # the command's own failure
                await runner.run(["sh", "-c", "exit 7"])
            assert info.value.returncode == 7
        return out

    out = asyncio.run(go())
    print({k: v if isinstance(v, float) else v[1] for k, v in out.items()})
    assert out["stdin"][0] == f"{secret}|body\n"
    assert out["sendenv"][0] == f"{secret}|body\n"  # second host has AcceptEnv JHPC_*
    assert all(secret not in c for c in second.commands())
    assert first.commands() == []


def test_silent_host_times_out_and_fails_over(ssh_pair):
    """A first host that accepts TCP but never speaks ssh: ConnectTimeout, then the second host."""
    key, first, second, control = ssh_pair
    first.stop()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        runner = SshRunner(
            hosts=[f"127.0.0.1:{port}", f"127.0.0.1:{second.port}"], user="alice", identity_file=str(key.key),
            options=key.ssh_options(), control_dir=str(control), connect_timeout=1, health=HostHealth(),
        )  # fmt: skip
        t0 = time.monotonic()
        result = asyncio.run(runner.run(["echo", "via-second"]))
        seconds = time.monotonic() - t0
    finally:
        silent.close()
    print(f"failover past a silent host: {seconds:.2f} s")
    assert result.stdout == "via-second\n"
    assert 0.9 < seconds < 5
    assert runner.health.order(runner.hosts)[0].port == second.port
