"""A session whose server was stopped keeps a finished card (issue 26): who stopped it, and its record.

A job that ended on its own (wall time, an outside cancel, a failed start) leaves ``last_ended``
(:func:`batchspawner.hub.sessions.ended_record`). A stop leaves one too, through the core's
``_session_stopped`` hook (:class:`batchspawner.hub.cards.SessionCards`): the same record with
``stopped_by`` and the same path through the hub's ``clear_state`` (the batch spawner keeps
``last_ended``; a wrapper takes its child's), so the home page shows "stopped by you" with the time,
the log, Relaunch and Dismiss.

Who asked, cheaply: JupyterHub stops a server in a task whose coroutine is the ``stop`` closure of
``BaseHandler.stop_single_user``, which holds the handler; the handler knows its requester
(``_jupyterhub_user``: the server's owner, another user = an administrator, or a hub service such
as the idle culler). :func:`who_stopped` walks up the current stack (a few frames, once per stop)
to that closure. The hub's own stops (shutdown with ``cleanup_servers``, a start's cleanup) have no
such frame: "" (and then no card is kept: see ``SessionCards._session_stopped``). Nothing here is trusted for anything but
these words.
"""

from __future__ import annotations

import re
import sys
import time

_MAX_FRAMES = 60
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}")
BY = ("you", "admin", "service", "")


def who_stopped(owner: str, frame=None) -> tuple[str, str]:
    """(``"you"`` | ``"admin"`` | ``"service"`` | ``""``, service name or "") of the stop under way."""
    frame = sys._getframe(1) if frame is None else frame
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        code = frame.f_code
        if code.co_name == "stop" and "stop_single_user" in getattr(code, "co_qualname", ""):
            handler = frame.f_locals.get("self")
            return _requester(getattr(handler, "_jupyterhub_user", None), owner)
        frame = frame.f_back
    return "", ""


def _requester(requester, owner: str) -> tuple[str, str]:
    kind = getattr(requester, "kind", None)
    name = getattr(requester, "name", None)
    if not isinstance(name, str) or not name:
        return "", ""
    if kind == "user":
        return ("you", "") if name == owner else ("admin", "")
    if kind == "service":
        return "service", name if _SERVICE.fullmatch(name) else ""
    return "", ""


def stopped_record(job_id: str, by: str, service: str = "", at: float | None = None) -> dict:
    """What a batch spawner keeps in ``last_ended`` when its server is stopped (its job cancelled)."""
    by = by if by in BY else ""
    return {
        "job_id": str(job_id),
        "state": "",
        "exit_code": None,
        "at": float(time.time() if at is None else at),
        "served": True,
        "stopped_by": by,
        "service": service if by == "service" and _SERVICE.fullmatch(service or "") else "",
    }


def is_stopped(record) -> bool:
    return isinstance(record, dict) and "stopped_by" in record


def stopped_words(record: dict) -> str:
    """``was stopped by you`` / ``by an administrator`` / ``by the hub (its idle-culler service)`` /
    ``was stopped``: never the user's fault unless she asked."""
    by = record.get("stopped_by")
    if by == "you":
        return "was stopped by you"
    if by == "admin":
        return "was stopped by an administrator"
    if by == "service":
        service = record.get("service") or ""
        if _SERVICE.fullmatch(service):
            return f"was stopped by the hub (its {service} service)"
        return "was stopped by the hub (one of its services)"
    return "was stopped"
