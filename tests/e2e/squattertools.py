"""bob's squatter (tests/e2e/squatter.py) around a test, and the JSON-lines files it writes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).parent


def jsonl(path: Path) -> list:
    """The records of a JSON-lines file; [] when it does not exist (nothing was written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def squatting(shared_dir: Path, victim, seconds: str):
    """Run squatter.py as bob against ``victim`` (a pwd entry) for at most ``seconds``; yields its
    output folder once it is armed (asserts it arms within 20 s). On leaving: asks it to stop, waits
    10 s, then kills it."""
    script = shared_dir / "squatter.py"
    script.write_text((HERE / "squatter.py").read_text())
    script.chmod(0o755)
    out = shared_dir / "squat"
    squatter = subprocess.Popen(
        ["sudo", "-u", "bob", "/usr/bin/python3", str(script), str(victim.pw_uid), victim.pw_dir, str(out), seconds],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (out / "armed").exists():
            assert squatter.poll() is None, squatter.stderr.read().decode()
            assert time.monotonic() < deadline, "the squatter did not start"
            time.sleep(0.1)
        yield out
    finally:
        out.mkdir(exist_ok=True)
        (out / "stop").touch()
        try:
            squatter.wait(10)
        except subprocess.TimeoutExpired:
            squatter.kill()
            squatter.wait()
