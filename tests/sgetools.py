"""Direct looks at the real Son of Grid Engine for e2e tests (what the scheduler itself says)."""

import shutil
import subprocess


def available() -> tuple[bool, str]:
    if not shutil.which("qstat") or not shutil.which("qconf"):
        return False, "Grid Engine client not installed (run scripts/setup-gridengine.sh)"
    r = subprocess.run(["qstat", "-f"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return False, f"sge_qmaster not answering: {r.stderr.strip()[:200]}"
    if "all.q@" not in r.stdout:
        return False, "queue all.q has no instance (run scripts/setup-gridengine.sh)"
    return True, r.stdout


def job_state(job_id: str) -> str:
    """State letters from `qstat -u '*'` ('' once the job has left the queue)."""
    r = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, timeout=30)
    for line in r.stdout.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0] == str(job_id):
            return fields[4]
    return ""


def delete(job_ids):
    """qdel the given jobs if they are still queued (only jobs a test submitted)."""
    live = [j for j in job_ids if job_state(j)]
    if live:
        subprocess.run(["qdel", *live], capture_output=True, timeout=30)
