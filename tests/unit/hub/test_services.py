"""A hub started with SIGINT ignored gives its services the default SIGINT (batchspawner/hub/services.py).

Real processes: a Python started with SIGINT ignored (as a background shell job starts it), then
a child it starts, as JupyterHub starts a managed service; the child's SIGINT disposition is read
from /proc and the child is sent SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

CHILD = "import time; print('up', flush=True); time.sleep(30)"

PARENT = r"""
import signal, subprocess, sys
{setup}
child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
ignored = int([l for l in open(f"/proc/{{child.pid}}/status") if l.startswith("SigIgn:")][0].split()[1], 16)
child.send_signal(signal.SIGINT)
try:
    child.wait(2)
    print("ended", ignored & 2)
except subprocess.TimeoutExpired:
    child.kill()
    print("ignored SIGINT", ignored & 2)
"""


def _run(setup):
    out = subprocess.run([sys.executable, "-c", PARENT.format(setup=setup, child=CHILD)],
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_without_it_a_service_of_a_hub_started_with_sigint_ignored_ignores_sigint():
    assert _run("") == "ignored SIGINT 2"


def test_the_hub_gives_its_services_the_default_sigint_and_they_end_on_it():
    t0 = time.monotonic()
    setup = ("from batchspawner.hub.services import services_take_sigint\n"
             "assert services_take_sigint(in_hub=True)\n"
             "assert not services_take_sigint(in_hub=True)  # once is enough")
    assert _run(setup) == "ended 0"
    assert time.monotonic() - t0 < 10


def test_nothing_changes_outside_a_hub_or_when_sigint_is_not_ignored():
    from batchspawner.hub.services import services_take_sigint

    before = signal.getsignal(signal.SIGINT)
    assert not services_take_sigint(in_hub=False)
    assert not services_take_sigint(in_hub=True)  # pytest's own SIGINT handler is not SIG_IGN
    assert not services_take_sigint()  # no JupyterHub application in this process
    assert signal.getsignal(signal.SIGINT) is before
