"""The real CommandRunner on real local processes (no scheduler involved)."""

import time

import pytest

from batchspawner.runner import CommandError, CommandRunner, CommandTimeout, split_command


@pytest.mark.parametrize(
    "template, subvars, expected",
    [
        ("scancel {job_id}", {"job_id": "42"}, ["scancel", "42"]),
        ("squeue -h -j {job_id} -o '%T %B'", {"job_id": "7"}, ["squeue", "-h", "-j", "7", "-o", "%T %B"]),
        ("sudo -E -u {username}", {"username": "alice; rm -rf /"}, ["sudo", "-E", "-u", "alice; rm -rf /"]),
        ("scancel {cluster_opt} {job_id}", {"cluster_opt": "", "job_id": "5"}, ["scancel", "5"]),
        (["echo", "{x}"], {"x": "$(id)"}, ["echo", "$(id)"]),
        ("qstat -x {job_id_args}", {"job_id_args": ["1.s", "2.s"]}, ["qstat", "-x", "1.s", "2.s"]),
        ("qstat -x x{job_id_args}", {"job_id_args": ["1"]}, ["qstat", "-x", "x['1']"]),
        ("qstat {job_id_args}", {"job_id_args": ["1 ; id"]}, ["qstat", "1 ; id"]),
    ],
    ids=[
        "simple",
        "quoted-format",
        "value-stays-one-word",
        "empty-word-dropped",
        "list-template",
        "list-expands-to-arguments",
        "list-only-when-whole-token",
        "list-item-stays-one-word",
    ],
)
def test_split_command(template, subvars, expected):
    assert split_command(template, **subvars) == expected


async def test_runs_argv_with_stdin_and_env():
    runner = CommandRunner()
    result = await runner.run(["sh", "-c", 'cat; echo "$X"'], stdin="from-stdin\n", env={"X": "from-env", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    assert result.stdout == "from-stdin\nfrom-env\n"


async def test_shell_metacharacters_are_not_interpreted(tmp_path):
    marker = tmp_path / "pwned"
    runner = CommandRunner()
    result = await runner.run(["echo", f"; touch {marker}"])
    assert result.stdout.strip() == f"; touch {marker}"
    assert not marker.exists()


async def test_failure_carries_argv_rc_stdout_stderr():
    runner = CommandRunner()
    with pytest.raises(CommandError) as info:
        await runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    e = info.value
    assert e.argv == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert (e.returncode, e.stdout, e.stderr) == (3, "out\n", "err\n")
    assert "exited with 3" in str(e) and "err" in str(e)


async def test_check_false_returns_result():
    result = await CommandRunner().run(["sh", "-c", "exit 1"], check=False)
    assert result.returncode == 1


async def test_timeout_kills_the_process_group():
    runner = CommandRunner(timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        await runner.run(["sh", "-c", "sleep 30 & sleep 30"])
    assert time.monotonic() - t0 < 5
    assert "timed out after 0.5 s" in str(info.value)


async def test_missing_command_is_a_command_error():
    with pytest.raises(CommandError) as info:
        await CommandRunner().run(["/nonexistent/sbatch"])
    assert "could not start" in str(info.value)


def test_prefix_and_remote_quoting():
    local = CommandRunner(prefix=["sudo", "-E", "-u", "alice"])
    assert local.build_argv(["squeue", "-o", "%T %B"]) == ["sudo", "-E", "-u", "alice", "squeue", "-o", "%T %B"]
    remote = CommandRunner(prefix=["ssh", "alice@login1"], remote_shell=True)
    assert remote.build_argv(["squeue", "-o", "%T %B", "x;y"]) == ["ssh", "alice@login1", "squeue -o '%T %B' 'x;y'"]


# ------------------------------------------------------------------ priority below the hub
# A storm of spawns starts a hundred sudo/sbatch processes, each in its own session: with the
# kernel's autogroups each session would get the CPU share of the whole hub (measured in the
# bench: the hub's event loop waited seconds for a CPU). Commands run below the hub instead.
READ_PRIORITY = "sleep 0.3; cut -d' ' -f19 /proc/$$/stat; cat /proc/$$/autogroup 2>/dev/null || echo none"


async def test_commands_run_below_the_hubs_priority():
    import os

    base = os.getpriority(os.PRIO_PROCESS, 0)
    result = await CommandRunner(nice=7).run(["sh", "-c", READ_PRIORITY])
    nice, autogroup = result.stdout.split("\n", 1)
    assert int(nice) == min(19, base + 7)
    if autogroup.strip() != "none" and _autogroups_on():
        # the command's own session (its autogroup) is lowered too
        assert autogroup.split()[-1] == str(min(19, base + 7)), autogroup


async def test_nice_zero_leaves_commands_at_the_hubs_priority():
    import os

    result = await CommandRunner().run(["sh", "-c", READ_PRIORITY])
    assert int(result.stdout.split()[0]) == os.getpriority(os.PRIO_PROCESS, 0)


def test_lower_priority_of_a_process_that_is_gone_is_refused_quietly():
    import subprocess

    from batchspawner.runner import lower_priority

    p = subprocess.Popen(["true"])
    p.wait()
    assert lower_priority(p.pid, 5) is None


def _autogroups_on():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
