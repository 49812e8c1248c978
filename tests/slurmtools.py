"""Direct looks at the real Slurm for e2e tests (what the scheduler itself says)."""

import shutil
import subprocess
import sys


def available() -> tuple[bool, str]:
    if not shutil.which("sinfo"):
        return False, "sinfo not installed (run scripts/setup-slurm.sh)"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    if r.returncode != 0 or not r.stdout.strip():
        return False, f"slurmctld not answering: {r.stderr.strip()}"
    return True, r.stdout.strip()


def job_state(job_id: str) -> str:
    """State word from squeue -t all ('' once the job is purged)."""
    r = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=20
    )
    return r.stdout.strip()


def live_jobs(users=("alice", "bob")) -> dict[str, str]:
    """{job_id: state} of jobs of the given users that are pending or running."""
    r = subprocess.run(
        ["squeue", "-h", "-u", ",".join(users), "-o", "%i %T"], capture_output=True, text=True, timeout=20
    )
    jobs = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            jobs[parts[0]] = parts[1]
    return jobs


def cancel(job_ids):
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


def probe_wrapper_config(shared_dir, wrapper, extra: str = "") -> str:
    """Hub config for a SlurmSpawner whose job runs the test script ``wrapper`` (copied into
    ``shared_dir``, which the job's user can read) instead of the single-user server; the job gets
    PROBE_DIR=shared_dir and reports its start quickly. ``extra``: more config lines."""
    copy = shared_dir / wrapper.name
    shutil.copy(wrapper, copy)
    copy.chmod(0o755)
    return f"""
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.batchspawner_singleuser_cmd = '{sys.executable} {copy}'
c.SlurmSpawner.environment = {{'PROBE_DIR': '{shared_dir}'}}
c.SlurmSpawner.req_keepvars_extra = 'PROBE_DIR'
c.SlurmSpawner.startup_poll_interval = 0.25
""" + extra
