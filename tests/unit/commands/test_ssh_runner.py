"""SshRunner with real local processes and a FAKE ssh client.

``fake_ssh`` below is *not* OpenSSH: it is a small sh script given as ``ssh_command``
that reads the options the runner passes (``-p PORT``, ``--``, destination, remote
command), records them, and then either behaves like an unreachable host (the exact
message and exit 255 real ssh gives), like a dropped connection, or runs the remote
command locally with ``/bin/sh -c`` (as a remote login shell would). The real OpenSSH
path is covered in tests/e2e/test_submit_hosts.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time

import pytest
from traitlets import TraitError

from batchspawner import SlurmSpawner
from batchspawner.commands.runner import CommandError, CommandTimeout
from batchspawner.commands.ssh import SshRunner, private_control_dir
from batchspawner.commands.submit_hosts import HostHealth, SubmitHost, classify_ssh_failure
from helpers import make_spawner

FAKE_SSH = r"""#!/bin/sh
# FAKE ssh for unit tests (not OpenSSH): see the module docstring.
dir=$(dirname "$0")
printf '%s\n' "$*" >> "$dir/argv.log"
port=22
while [ $# -gt 0 ]; do
  case "$1" in
    -p) port=$2; shift 2;;
    -o|-i|-F) shift 2;;
    --) shift; break;;
    *) shift;;
  esac
done
printf '%s %s\n' "$port" "$1" >> "$dir/calls.log"
mode=$(cat "$dir/mode-$port" 2>/dev/null || echo ok)
case "$mode" in
  down) echo "ssh: connect to host 127.0.0.1 port $port: Connection refused" >&2; exit 255;;
  lost) echo "Connection to 127.0.0.1 closed by remote host." >&2; exit 255;;
  auth) echo "alice@127.0.0.1: Permission denied (publickey)." >&2; exit 255;;
  toomany) echo "Received disconnect from 127.0.0.1 port $port:2: Too many authentication failures" >&2
           echo "Disconnected from 127.0.0.1 port $port" >&2; exit 255;;
  hang) sleep 5; exit 0;;
esac
exec /bin/sh -c "$2"
"""


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake(tmp_path):
    control_dir = tempfile.mkdtemp(prefix="jhpc-t-")  # short: socket paths are limited
    path = tmp_path / "fake-ssh"
    path.write_text(FAKE_SSH)
    path.chmod(0o755)

    class Fake:
        dir = tmp_path
        ssh = str(path)
        clock = Clock()

        def mode(self, port, mode):
            (tmp_path / f"mode-{port}").write_text(mode)

        def calls(self):
            log = tmp_path / "calls.log"
            return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []

        def argv_log(self):
            log = tmp_path / "argv.log"
            return log.read_text() if log.exists() else ""

        def runner(self, ports=(2201, 2202), **kw):
            kw.setdefault("health", HostHealth(clock=self.clock))
            kw.setdefault("control_dir", control_dir)
            return SshRunner(
                hosts=[f"127.0.0.1:{p}" for p in ports], user="alice", ssh_command=[self.ssh], timeout=10, **kw
            )

    yield Fake()
    shutil.rmtree(control_dir, ignore_errors=True)


async def test_argv_is_quoted_for_the_remote_shell(fake, tmp_path):
    marker = tmp_path / "pwned"
    words = ["a b", "it's", f"$(touch {marker})", ";echo hi", "%T %B", "*"]
    result = await fake.runner().run(["printf", "%s|"] + words)
    assert result.stdout == "|".join(words) + "|"
    assert not marker.exists()


async def test_ssh_options_and_destination(fake):
    runner = fake.runner(options=["StrictHostKeyChecking=yes"], identity_file="/keys/alice", connect_timeout=2.5)
    argv = runner.argv_for(SubmitHost.parse("127.0.0.1:2201"), ["squeue", "-o", "%T %B"])
    assert argv[:3] == [fake.ssh, "-o", "StrictHostKeyChecking=yes"]  # site options first: they win
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "BatchMode=yes" in opts and "ConnectTimeout=3" in opts and "ControlMaster=auto" in opts
    assert "ControlPersist=60" in opts
    control = [o for o in opts if o.startswith("ControlPath=")][0].split("=", 1)[1]
    assert stat.S_IMODE(os.stat(os.path.dirname(control)).st_mode) == 0o700
    assert argv[argv.index("-i") + 1] == "/keys/alice"
    assert argv[-4:] == ["2201", "--", "alice@127.0.0.1", "squeue -o '%T %B'"]
    no_reuse = fake.runner(control_persist=0).build_argv(["true"])
    assert "ControlMaster=no" in no_reuse and "ControlPath=none" in no_reuse


async def test_connection_failure_moves_to_next_host_and_remembers(fake):
    fake.mode(2201, "down")
    runner = fake.runner()
    result = await runner.run(["echo", "ok"])
    assert result.stdout == "ok\n"
    assert fake.calls() == [2201, 2202]
    await runner.run(["echo", "again"])
    assert fake.calls() == [2201, 2202, 2202]  # the bad host is skipped during its cool-down
    assert runner.build_argv(["x"])[-3] == "--" and "2202" in runner.build_argv(["x"])


async def test_bad_host_is_retried_after_cooldown(fake):
    fake.mode(2201, "down")
    runner = fake.runner(cooldown=60)
    await runner.run(["true"])
    fake.mode(2201, "ok")
    fake.clock.now += 30
    await runner.run(["true"])
    assert fake.calls() == [2201, 2202, 2202]
    fake.clock.now += 31  # cool-down over: the first host is tried again and taken back
    await runner.run(["true"])
    await runner.run(["true"])
    assert fake.calls() == [2201, 2202, 2202, 2201, 2201]


async def test_still_down_after_cooldown_costs_one_attempt(fake):
    fake.mode(2201, "down")
    runner = fake.runner(cooldown=60)
    await runner.run(["true"])
    fake.clock.now += 61
    await runner.run(["true"])
    await runner.run(["true"])
    assert fake.calls() == [2201, 2202, 2201, 2202, 2202]


async def test_command_failure_does_not_fail_over(fake):
    runner = fake.runner()
    with pytest.raises(CommandError) as info:
        await runner.run(["sh", "-c", "echo sbatch: error: invalid partition >&2; exit 1"])
    assert info.value.returncode == 1
    assert "invalid partition" in info.value.stderr
    assert fake.calls() == [2201]
    result = await runner.run(["sh", "-c", "exit 255"], check=False)  # the command's own 255: no ssh message
    assert result.returncode == 255
    assert fake.calls() == [2201, 2201]


async def test_lost_connection_is_not_retried_elsewhere(fake):
    fake.mode(2201, "lost")
    runner = fake.runner()
    with pytest.raises(CommandError) as info:
        await runner.run(["sbatch"], stdin="#!/bin/sh\n")
    assert "may have run" in str(info.value)
    assert fake.calls() == [2201]


async def test_timeout_is_not_retried_elsewhere(fake):
    fake.mode(2201, "hang")
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout):
        await fake.runner().run(["sbatch"], timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert fake.calls() == [2201]


async def test_all_hosts_down_names_them_and_raises_even_without_check(fake):
    fake.mode(2201, "down")
    fake.mode(2202, "down")
    runner = fake.runner()
    for _ in range(2):  # hosts in cool-down are still tried when nothing else is left
        with pytest.raises(CommandError) as info:
            await runner.run(["squeue"], check=False)
        assert info.value.returncode == 255
        assert "no submit host reachable" in str(info.value)
        assert "127.0.0.1:2201" in str(info.value) and "127.0.0.1:2202" in str(info.value)
    assert fake.calls() == [2201, 2202, 2201, 2202]


async def test_env_travels_on_stdin_not_in_argv(fake):
    token = "tok-5b2f-secret"
    env = {"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_USER": "alice", "ODD": "a b 'c' $HOME `x`", "PATH": "/hubonly"}
    script = "#!/bin/bash\n#SBATCH --job-name=x\necho body\n"
    result = await fake.runner().run(
        ["sh", "-c", 'echo "$JUPYTERHUB_API_TOKEN|$JUPYTERHUB_USER|$ODD|$PATH"; cat'], env=env, stdin=script
    )
    first, rest = result.stdout.split("\n", 1)
    values = first.split("|")
    assert values[:3] == [token, "alice", env["ODD"]]
    assert values[3] != "/hubonly"  # PATH is the remote login's own
    assert rest == script  # the submit command reads exactly the script
    assert token not in fake.argv_log()


async def test_env_line_break_refused_before_running(fake):
    with pytest.raises(CommandError, match="line break"):
        await fake.runner().run(["true"], env={"JUPYTERHUB_X": "a\nb"})
    assert fake.calls() == []


async def test_sendenv_names_only_and_own_connection(fake):
    token = "tok-sendenv-secret"
    runner = fake.runner(env_method="sendenv")
    result = await runner.run(["sh", "-c", 'echo "$JUPYTERHUB_API_TOKEN"'], env={"JUPYTERHUB_API_TOKEN": token})
    assert result.stdout.strip() == token  # the fake inherits the ssh process's environment
    log = fake.argv_log()
    assert "SendEnv=JUPYTERHUB_API_TOKEN" in log and "ControlMaster=no" in log
    assert token not in log


def test_host_parsing_and_classification():
    assert SubmitHost.parse("login1") == SubmitHost("login1", None, None)
    assert SubmitHost.parse("bob@login1:2222") == SubmitHost("login1", 2222, "bob")
    assert SubmitHost.parse("[::1]:22").address == "[::1]:22"
    for bad in ("-oProxyCommand=x", "a b", "host:99999", "", "a;b"):
        with pytest.raises(ValueError):
            SubmitHost.parse(bad)
    assert classify_ssh_failure(255, "ssh: Could not resolve hostname login9: Name or service not known") == "connect"
    assert classify_ssh_failure(255, "alice@h: Permission denied (publickey).") == "auth"  # the user's, not the host's
    assert classify_ssh_failure(255, "client_loop: send disconnect: Broken pipe") == "lost"
    assert classify_ssh_failure(255, "") == ""
    assert classify_ssh_failure(1, "Connection refused") == ""


def test_control_dir_must_be_private_and_short():
    base = tempfile.mkdtemp(prefix="jhpc-t-")  # socket paths are short: not under pytest's tmp_path
    try:
        open_dir = os.path.join(base, "open")
        os.mkdir(open_dir)
        os.chmod(open_dir, 0o755)
        with pytest.raises(PermissionError):
            private_control_dir(open_dir)
        new = os.path.join(base, "new")
        assert private_control_dir(new) == new
        assert stat.S_IMODE(os.stat(new).st_mode) == 0o700
        with pytest.raises(ValueError, match="too long"):
            private_control_dir("/tmp/" + "x" * 60)
    finally:
        shutil.rmtree(base)


def test_spawner_uses_ssh_runner_when_submit_hosts_set():
    spawner = make_spawner(
        SlurmSpawner,
        submit_hosts=["login1", "login2:2222"],
        ssh_identity_file="/etc/jupyterhub/keys/{username}",
        ssh_options=["UserKnownHostsFile=/etc/jupyterhub/known_hosts"],
    )
    runner = spawner.runner
    assert isinstance(runner, SshRunner) and spawner.query_runner is runner
    assert runner.user == "alice" and runner.identity_file == "/etc/jupyterhub/keys/alice"
    assert [str(h) for h in runner.hosts] == ["login1", "login2:2222"]
    assert runner.timeout == spawner.command_timeout
    assert not isinstance(make_spawner(SlurmSpawner).runner, SshRunner)


def test_bad_config_names_the_trait():
    with pytest.raises(TraitError, match=r"SlurmSpawner\.submit_hosts"):
        make_spawner(SlurmSpawner, submit_hosts=["login1", "-oProxyCommand=evil"])
    with pytest.raises(TraitError, match=r"SlurmSpawner\.ssh_options"):
        make_spawner(SlurmSpawner, ssh_options=["-oProxyCommand=evil"])
    with pytest.raises(TraitError, match=r"SlurmSpawner\.ssh_control_dir"):
        make_spawner(SlurmSpawner, ssh_control_dir="/tmp/" + "x" * 60)


@pytest.mark.parametrize("mode", ["auth", "toomany"])
async def test_one_users_auth_failure_does_not_bench_the_host_for_everyone(fake, mode):
    """Issue 11 item 7: an ssh authentication failure is the user's (their key), not the host's.
    It must not put the host in the process-wide cool-down, so other users keep using it."""
    health = HostHealth(clock=fake.clock)
    fake.mode(2201, mode)
    fake.mode(2202, mode)
    alice = fake.runner(health=health)
    with pytest.raises(CommandError) as info:
        await alice.run(["squeue"], check=False)
    message = str(info.value)
    assert "authenticat" in message.lower() and "alice" in message
    assert "no submit host reachable" not in message
    assert health.bad_until == {}  # nobody else's host order changed
    fake.mode(2201, "ok")
    fake.mode(2202, "ok")
    bob = SshRunner(hosts=["127.0.0.1:2201", "127.0.0.1:2202"], user="bob", ssh_command=[fake.ssh], timeout=10,
                    health=health, control_dir=alice.control_dir)  # fmt: skip
    before = len(fake.calls())
    await bob.run(["true"])
    assert fake.calls()[before:] == [2201]  # bob's first host is still the first host


def test_classify_auth_failures_apart_from_connect_failures():
    assert classify_ssh_failure(255, "alice@login1: Permission denied (publickey,password).") == "auth"
    assert classify_ssh_failure(255, "Received disconnect from 10.0.0.1 port 22:2: Too many authentication failures") == "auth"
    assert classify_ssh_failure(255, "ssh: connect to host login1 port 22: Connection refused") == "connect"
    assert classify_ssh_failure(255, "Host key verification failed.") == "connect"
