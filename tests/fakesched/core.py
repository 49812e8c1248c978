"""FAKE batch scheduler core, for tests only.

Torque, PBS Pro, Moab, LSF and HTCondor daemons cannot be installed on the
test machines (no Debian or PyPI packages), so these fake command-line tools
stand in for them. They are *not* schedulers: a tiny job table on disk (one
directory per fake cluster), and each submitted job really runs, as the user
who submitted it (the hub calls the tools through ``sudo -u alice``), as a
background process. The tools print status in the real tools' formats
(see formats.py), so the spawners' real parsers read them.

Stdlib only: the tools run under /usr/bin/python3 as any user.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

STATE_DIR = Path(os.environ.get("FAKESCHED_DIR", "/tmp/fakesched")) / "state"
PENDING_SECONDS = float(os.environ.get("FAKESCHED_PENDING_SECONDS", "0.5"))
KEEP_SECONDS = float(os.environ.get("FAKESCHED_KEEP_SECONDS", "30"))  # finished jobs stay listed this long
HOST = os.environ.get("FAKESCHED_HOST", "localhost")

# queued -> running -> done | exited | cancelled   (exited: non-zero exit)


def jobs_dir() -> Path:
    d = STATE_DIR / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def next_id() -> int:
    counter = STATE_DIR / "next_id"
    with open(counter, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        value = int(f.read().strip() or "100")
        f.seek(0)
        f.truncate()
        f.write(str(value + 1))
    return value


def record_path(num) -> Path:
    return jobs_dir() / f"{int(num)}.json"


def load(num):
    try:
        return json.loads(record_path(num).read_text())
    except (FileNotFoundError, ValueError):
        return None


def log_call(argv) -> None:
    """Append one JSON line per command to state/calls.log when the test created that file."""
    path = STATE_DIR / "calls.log"
    if path.exists():
        with open(path, "a") as f:
            f.write(json.dumps({"user": pwd.getpwuid(os.getuid()).pw_name, "argv": list(argv)}) + "\n")


def all_jobs() -> list:
    """Every job record, in id order (for queries that list the whole queue)."""
    nums = sorted(int(p.stem) for p in jobs_dir().glob("*.json") if p.stem.isdigit())
    return [job for job in (load(n) for n in nums) if job is not None]


@contextmanager
def update(num):
    """Lock one job record, yield it as a dict, write it back."""
    path = record_path(num)
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        job = json.loads(f.read())
        yield job
        f.seek(0)
        f.truncate()
        f.write(json.dumps(job))


def visible(job) -> bool:
    """Whether the scheduler still lists a job (finished ones for KEEP_SECONDS)."""
    if job is None:
        return False
    end = job.get("end_time")
    return end is None or time.time() - end < KEEP_SECONDS


def submit(script: str, *, name: str, log: str, cwd: str, argv: list, env: dict, ncpus: int = 1, extra=None) -> dict:
    """Store the job, start its runner in the background, return the record."""
    num = next_id()
    user = pwd.getpwuid(os.getuid()).pw_name
    script_path = jobs_dir() / f"{num}.script"
    fd = os.open(script_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(script)
    job = {
        "id": num,
        "owner": user,
        "name": name,
        "state": "queued",
        "host": HOST,
        "ncpus": ncpus,
        "log": log.replace("{id}", str(num)),
        "cwd": cwd,
        "argv": [a.replace("{script}", str(script_path)) for a in argv],
        "submit_time": time.time(),
        "start_time": None,
        "end_time": None,
        "exit": None,
        "pid": None,
        "extra": extra or {},
    }
    fd = os.open(record_path(num), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(job))
    # the job's environment travels in the runner's environment, never on disk (it holds a token)
    subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.py"), "_run", str(num)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    return job


def run_job(num: str) -> None:
    """The background runner: wait in the queue, run the job, record how it ended."""
    time.sleep(PENDING_SECONDS)
    with update(num) as job:
        if job["state"] != "queued":
            return
        env = dict(os.environ)
        env.update({k: v.replace("{id}", str(num)) for k, v in job["extra"].get("env", {}).items()})
        cwd = job["cwd"] if os.path.isdir(job["cwd"] or "") else pwd.getpwuid(os.getuid()).pw_dir
        try:
            out = open(job["log"] or os.devnull, "ab", buffering=0)
            proc = subprocess.Popen(
                job["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                start_new_session=True,
            )
        except OSError as e:  # like a real scheduler: the job fails, the error goes to the record
            job.update(state="exited", exit=1, start_time=time.time(), end_time=time.time(), error=str(e))
            return
        job.update(state="running", pid=proc.pid, start_time=time.time())
    code = _wait(num, proc)
    with update(num) as job:
        job["exit"] = code if code >= 0 else 128 - code
        job["end_time"] = time.time()
        if job["state"] != "cancelled":
            job["state"] = "done" if code == 0 else "exited"
    try:
        os.unlink(jobs_dir() / f"{num}.script")
    except OSError:
        pass


def _wait(num, proc, grace=5.0):
    """Wait for the job; after a cancel, SIGKILL its process group if SIGTERM was not enough."""
    while True:
        try:
            return proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            job = load(num) or {}
            if job.get("state") == "cancelled" and time.time() - job.get("cancel_time", time.time()) > grace:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def cancel(num) -> str:
    """Cancel a job: '' on success, else the reason (unknown job, not yours)."""
    job = load(num)
    if not visible(job):
        return "unknown"
    if job["owner"] != pwd.getpwuid(os.getuid()).pw_name and os.getuid() != 0:
        return "permission"
    with update(num) as job:
        if job["state"] in ("done", "exited", "cancelled"):
            return "finished"
        was = job["state"]
        job["state"] = "cancelled"
        job["cancel_time"] = time.time()
        if was == "queued":
            job["end_time"] = time.time()
        pid = job["pid"]
    if pid:  # like the real tools, return at once; the runner escalates to SIGKILL (see _wait)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return ""


def keep_env(names: str, env=None) -> dict:
    """Environment for a job that lists the variables it keeps (#PBS -v, getenv = a,b)."""
    env = dict(os.environ if env is None else env)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    base = {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "FAKESCHED_DIR", "FAKESCHED_HOST",
            "FAKESCHED_PENDING_SECONDS", "FAKESCHED_KEEP_SECONDS"}
    return {k: v for k, v in env.items() if k in wanted | base}
