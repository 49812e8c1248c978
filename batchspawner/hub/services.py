"""The hub's managed services stop when asked, also when the hub was started with SIGINT ignored.

JupyterHub starts its managed services (the example config's ``jupyterhub-idle-culler``) before it
installs its own SIGTERM/SIGINT handlers, so they inherit the hub's signal dispositions; a hub
started from a background shell job (``jupyterhub &`` in a script, some process managers) has
SIGINT ignored, and so had every service. On shutdown JupyterHub stops a service with SIGINT and
waits ``interrupt_timeout`` (10 s) before SIGTERM: with the culler ignoring SIGINT, a hub asked to
stop took 10-30 s instead of under one (the issue 26 rehearsal: 29 s and 30 s).

:func:`services_take_sigint`, run when this package is imported in the hub's process (config load,
before services start), puts SIGINT back to Python's default when it is ignored, so that programs
the hub starts get the system's default and end on SIGINT. JupyterHub replaces the hub's own
SIGINT handler in the same start-up anyway (``init_signal``), so the hub itself behaves as before.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from batchspawner.polling.base import running_hub_app

log = logging.getLogger("JupyterHub")


def in_hub_process() -> bool:
    """Whether this is a JupyterHub process: its application exists, or the program is ``jupyterhub``
    (JupyterHub imports the spawner classes' entry points before it creates its application)."""
    if "jupyterhub.app" not in sys.modules:
        return False
    if running_hub_app() is not None:
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return program == "jupyterhub" or getattr(spec, "name", "") in ("jupyterhub", "jupyterhub.__main__")


def services_take_sigint(in_hub=None) -> bool:
    """In a hub's main thread with SIGINT ignored: SIGINT back to Python's default handler (True)."""
    if in_hub is None:
        in_hub = in_hub_process()
    if not in_hub or threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            return False
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return False
    log.info("SIGINT was ignored in the hub's process (started from a background shell?): set back to "
             "the default, so managed services such as the idle culler stop at once on shutdown")
    return True
