"""FAKE Torque / PBS Pro / Moab / LSF / HTCondor command-line tools, for tests only.

The real daemons cannot be installed on the test machines, so these stand in:
see core.py. :func:`install` puts one flavour's tools into a fresh directory. Besides submit,
query and cancel, each fake answers its scheduler's history command (Torque/PBS ``tracejob``,
Moab ``checkjob --xml``, LSF ``bhist -l``, HTCondor ``condor_history``) for jobs it ended or
cancelled, printing the documented format (formats.py): fakes, not real schedulers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install(directory, flavour: str, pending_seconds=0.5, keep_seconds=30) -> Path:
    """Install a fake cluster of ``flavour`` into ``directory``; returns its bin directory."""
    env = dict(os.environ, FAKESCHED_PENDING_SECONDS=str(pending_seconds), FAKESCHED_KEEP_SECONDS=str(keep_seconds))
    subprocess.run(
        ["bash", str(HERE / "install.sh"), str(directory), flavour], check=True, capture_output=True, env=env
    )
    return Path(directory) / "bin"


def jobs(directory) -> dict:
    """{job number: record} of a fake cluster."""
    found = {}
    for path in (Path(directory) / "state" / "jobs").glob("*.json"):
        try:
            found[int(path.stem)] = json.loads(path.read_text())
        except ValueError:
            pass
    return found


def start_call_log(directory) -> Path:
    """Make the fake tools log every command (one JSON line each) from now on; returns the log."""
    path = Path(directory) / "state" / "calls.log"
    path.write_text("")
    path.chmod(0o666)
    return path


def calls(directory) -> list:
    """[{"user": ..., "argv": [command, args...]}] logged since start_call_log."""
    path = Path(directory) / "state" / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_leftovers(directory) -> None:
    """End the process groups of jobs this fake cluster started that still run (by recorded PID)."""
    for job in jobs(directory).values():
        if job.get("pid") and job.get("end_time") is None and pid_alive(job["pid"]):
            try:
                os.killpg(job["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
