"""The real CommandRunner on real local processes (no scheduler involved)."""

import asyncio
import time

import pytest

from batchspawner.commands.runner import CommandError, CommandRunner, CommandTimeout, split_command


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


# ------------------------------------------------------------------ CallableRunner (a 1.3 run_command)
async def test_callable_runner_needs_only_a_function_and_quotes_each_word():
    from batchspawner.commands.runner import CallableRunner, CommandError

    seen = []

    async def run_command(cmd, input=None, env=None):
        seen.append((cmd, input, env))
        if "scancel" in cmd:
            raise RuntimeError("scancel: error: Kill job error on job id 7: Invalid job id specified")
        if "boom" in cmd:
            raise ValueError("not a RuntimeError")
        return "Submitted batch job 7\n"

    runner = CallableRunner(run_command, ["sudo", "-u", "alice"], timeout=5)
    result = await runner.run(["sbatch", "--comment=a b;c"], stdin="#!/bin/sh\n", env={"X": "1"})
    assert result.stdout == "Submitted batch job 7\n" and result.returncode == 0
    assert seen[0] == ("sudo -u alice sbatch '--comment=a b;c'", "#!/bin/sh\n", {"X": "1"})
    failed = await runner.run(["scancel", "7"], check=False)
    assert failed.returncode == 1 and "Invalid job id" in failed.stderr  # 1.3: RuntimeError(stderr)
    with pytest.raises(CommandError):
        await runner.run(["boom"])  # any exception of the site's function is a failed command


async def test_callable_runner_times_out():
    from batchspawner.commands.runner import CallableRunner, CommandTimeout

    async def never(cmd, input=None, env=None):
        await asyncio.sleep(30)

    with pytest.raises(CommandTimeout):
        await CallableRunner(never, timeout=0.05).run(["squeue"])
