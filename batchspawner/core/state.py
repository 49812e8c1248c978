"""What the hub saves of a batch server (``get_state``/``load_state``/``clear_state``) and saving it now.

:class:`SavedState` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. The job id is saved the
moment it is known (:func:`save_spawner_state`): a hub restart from then on never loses the job.
"""

from __future__ import annotations


from traitlets import Any, HasTraits

from batchspawner.core.address import _REPORTED


class SavedState(HasTraits):
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    # ---------------------------------------------------------------- state
    def load_state(self, state):
        super().load_state(state)
        self.job_id = state.get("job_id", "")
        self.job_status = state.get("job_status", "")
        if self.tunnel is not None:
            self.tunnel.load_state(state.get("tunnel") or {})
        self._endpoint = None
        if self.job_id:
            _REPORTED.add(self)  # issue 21 (8): its address counts as taken
        self.log_file = state.get("log_file", "") if self.job_id else ""
        # issue 24: a start the hub was still waiting for when it stopped is adopted by poll()
        self._restored_starting = bool(state.get("starting")) if self.job_id else False
        digest = state.get("token_sha256") if self.job_id else ""
        self._token_sha256 = digest if isinstance(digest, str) else ""
        self.submitted_at = float(state.get("submitted_at") or 0) if self.job_id else 0.0
        ended = state.get("last_ended")
        self.last_ended = dict(ended) if isinstance(ended, dict) and ended.get("job_id") else None
        if "uncancelled_jobs" in state:
            self.uncancelled_jobs = [
                dict(e) for e in state["uncancelled_jobs"] or [] if isinstance(e, dict) and e.get("job_id")
            ]

    def get_state(self):
        """What the hub must know after a restart to keep or end this server: the job and how to
        reach and recognise it, never display facts (the session card's facts are read live from
        the pollers: ``GET /hub/hpc/cards?format=json``)."""
        state = super().get_state()
        if self.job_id:
            state["job_id"] = self.job_id
            state["job_status"] = self.job_status
            if self.tunnel is not None and self.tunnel.get_state():
                state["tunnel"] = self.tunnel.get_state()
            state["log_file"] = self.log_file
            state["submitted_at"] = self.submitted_at
            if getattr(self, "_starting", False):
                state["starting"] = True  # issue 24: adopted after a hub restart
            digest = self.token_digest()
            if digest:
                state["token_sha256"] = digest  # to know the job's own report after a restart
        if self.uncancelled_jobs:
            state["uncancelled_jobs"] = [dict(e) for e in self.uncancelled_jobs]
        if self.last_ended:
            state["last_ended"] = dict(self.last_ended)
        return state

    def clear_state(self):
        # uncancelled_jobs stays: the hub clears the state after every stop (even a failed
        # one) and before every start, and must not forget a job that may still run. For the
        # same reason a job whose cancel was not recorded moves there (the next start
        # cancels it): clear_state() cannot await a cancel itself.
        if self.job_id and not self.leftovers.may_forget(self.job_id):
            self.leftovers.keep()
        super().clear_state()
        self._forget_job()
        self._untrack_session(self.job_id)
        self.job_id = ""
        self.job_status = ""
        self.log_file = ""
        self.submitted_at = 0.0
        self._starting = False
        self._restored_starting = False
        self._token_sha256 = ""

    state_saver = Any(
        None,
        help="""Callable that persists state right after submission (set by wrappers, which
        save their own state around the child's); by default this spawner's own row is saved.""",
    )

    def _save_state_now(self):
        """Persist the job id at once, so a hub restart during start cannot lose it."""
        if self.state_saver is not None:
            self.state_saver()
        else:
            save_spawner_state(self)


def save_spawner_state(spawner) -> bool:
    """Write ``spawner.get_state()`` to its database row now (outside the hub's own saves).

    True when saved. A failure never fails the spawn (the hub saves the state again when the
    spawn ends), but it is logged as an error naming the job and what it risks, and the
    session is rolled back so the hub's own next commit is not refused too.
    """
    name = getattr(spawner, "_log_name", spawner)
    orm = getattr(spawner, "orm_spawner", None)
    if orm is None:
        return False  # not a hub's spawner (a test, or a wrapper's temporary child)
    session = None
    try:
        from sqlalchemy import inspect

        session = inspect(orm).session
        if session is None:
            spawner.log.warning(
                "%s: the server's database row is detached; job %s is saved only with the hub's next "
                "state save", name, getattr(spawner, "job_id", ""),
            )  # fmt: skip
            return False
        orm.state = spawner.get_state()
        # synchronous, on the event loop, as JupyterHub itself commits its database
        # (User.spawn/stop call db.commit() inline); the session is not thread-safe
        session.commit()
        return True
    except Exception as e:  # never fail a spawn over this
        if session is not None:
            try:
                session.rollback()
            except Exception:  # noqa: S110 - the original error is the one to report
                pass
        spawner.log.error(
            "%s: could not save the server's state (job %s) to the hub database: %s: %s. The spawn goes "
            "on and the hub saves the state again when it ends; if the hub restarts before that, it may "
            "not know job %s: check the database, and cancel the job by hand if it is left running.",
            name, getattr(spawner, "job_id", ""), type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "",
            getattr(spawner, "job_id", ""),
        )  # fmt: skip
        return False
