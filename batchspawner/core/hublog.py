"""Keep the hub's log for what an admin must act on: no traceback for a user's mistake (issue 26).

JupyterHub logs some events that are expected in a batch gateway at ERROR level, with a full
traceback, from code this package cannot change:

- ``Failed to spawn single-user server with form`` (``SpawnHandler.post``) for every refused form:
  a user typed a value a field's rule or the partition's limit does not allow
  (:class:`batchspawner.core.options.OptionError`, HTTP 400), or the job ended before its server
  started (an exception carrying ``jupyterhub_message``, shown on the page). The user sees the
  message; the admin needs one line saying what was refused, not a traceback. Any other
  exception keeps its traceback.
- ``Task exception was never retrieved ... JobDidNotStart`` (asyncio) for a start that failed
  after JupyterHub's spawn handler stopped waiting (see :class:`QuietReportedFailures`).
- ``Error starting NAME's server: Invalid option 'FIELD': RULE`` (``User.spawn``, ERROR, no traceback)
  for options a user got wrong through the REST API (HTTP 400 naming the field): becomes the WARNING
  ``refused server options of NAME: ...``; a start that failed for any other reason stays an ERROR.
- ``api_request to proxy failed: 404 ...`` (``ConfigurableHTTPProxy.api_request``) when a start
  that never reached the proxy is cancelled: the hub's stop removes a route that was never added.
  The proxy's ``delete_route`` already logs "Route ... already deleted" for this (a warning), and
  the error is raised to the caller anyway, so the ERROR line says nothing new.

:func:`install` adds one :class:`logging.Filter` to the hub's logger and one to ``asyncio``'s
(idempotent): the first record becomes a one-line WARNING (``refused spawn form: <what was
refused>``), the other two are dropped. Nothing else is changed.
"""

from __future__ import annotations

import logging
import re

FORM_FAILED = "Failed to spawn single-user server with form"
# jupyterhub/user.py logs each HTTPError out of a start as ERROR "Error starting NAME's server: ..."
# (already formatted); an OptionError's message (core/options.py) is "Invalid option 'FIELD': RULE"
_REST_REFUSED = re.compile(r"Error starting (.+?)'s server: (Invalid option '[^']*': .*)", re.S)
PROXY_FAILED_404 = "api_request to proxy failed: 404"


def _user_facing(exc) -> str:
    """What was refused (OptionError: the field's key and rule, for the admin), or the message an
    exception carries for the user (JobDidNotStart...), else ''."""
    if isinstance(getattr(exc, "field", None), str) and isinstance(getattr(exc, "rule", None), str):
        return f"option {exc.field!r} {exc.rule}"
    message = getattr(exc, "jupyterhub_message", None)
    if message:
        return str(message)
    log_message = getattr(exc, "log_message", None)
    status = getattr(exc, "status_code", 500)
    if log_message and isinstance(status, int) and 400 <= status < 500:
        return str(log_message)
    return ""


TASK_NEVER_RETRIEVED = "Task exception was never retrieved"


class QuietReportedFailures(logging.Filter):
    """On the ``asyncio`` logger: drop "Task exception was never retrieved" for a start failure
    that carries a user-facing message (e.g. JobDidNotStart). JupyterHub's spawn handler waits one
    second for a start and then leaves its task; when the job dies later, nothing retrieves the
    task's exception, although the spawner, the hub ("Error starting ... server") and the spawn
    page have all reported it already. Every other never-retrieved exception is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith(TASK_NEVER_RETRIEVED) and record.exc_info and record.exc_info[1] is not None:
            return not getattr(record.exc_info[1], "jupyterhub_message", None)
        return True


class QuietUserMistakes(logging.Filter):
    """See the module docstring."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith(PROXY_FAILED_404):
            return False
        refused = _REST_REFUSED.fullmatch(msg) if record.levelno >= logging.ERROR and not record.args else None
        if refused:  # options a user got wrong through the REST API (the 400 tells her): not an ERROR
            record.msg = "refused server options of %s: %s"
            record.args = (refused.group(1), refused.group(2).splitlines()[0][:500])
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
            return True
        if msg == FORM_FAILED and record.exc_info and record.exc_info[1] is not None:
            what = _user_facing(record.exc_info[1])
            if what:
                first = what.strip().splitlines()[0] if what.strip() else what
                record.msg = "refused spawn form: %s"
                record.args = (first[:500],)
                record.exc_info = None
                record.exc_text = None
                record.levelno = logging.WARNING
                record.levelname = "WARNING"
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to ``logger`` (default: JupyterHub's, named "JupyterHub"), once."""
    for target in {logger or logging.getLogger("JupyterHub"), logging.getLogger("JupyterHub")}:
        if not any(isinstance(f, QuietUserMistakes) for f in target.filters):
            target.addFilter(QuietUserMistakes())
    aio = logging.getLogger("asyncio")
    if not any(isinstance(f, QuietReportedFailures) for f in aio.filters):
        aio.addFilter(QuietReportedFailures())


_warned: set = set()


def warn_once(log, key, msg, *args, level=logging.WARNING):
    """Log ``msg`` once per process for ``key`` (startup notes about a configuration, never per poll)."""
    if key in _warned:
        return
    _warned.add(key)
    (log or logging.getLogger("batchspawner")).log(level, msg, *args)
