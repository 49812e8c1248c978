"""LeftoverJobsMixin: cancel retries, and jobs that may outlive their server.

Holds the cancel side of :class:`~batchspawner.spawner.BatchSpawnerBase`:

- the cancel timing traits (``cancel_wait_timeout``, ``cancel_retry_timeout``,
  ``cancel_retry_interval``) and ``_cancel_with_retries``, the retrying part
  of ``stop()`` (which stays in spawner.py with the rest of the Spawner API);
- ``uncancelled_jobs``: the state entries of jobs whose cancel failed or was
  not seen to take effect, kept through ``clear_state()`` so the hub cannot
  forget a job that may still run, and the helpers that add to it
  (``_job_entry``, ``_keep_uncancelled``) and name the command an admin can
  run (``_manual_cancel_cmd``);
- ``_cancel_leftover_jobs`` / ``_settle_leftover``, which ``start()`` runs
  before submitting to cancel (or drop, once ended) those leftovers.

It is a separate module because this bookkeeping is one concern (never lose
track of a job that may hold an allocation) next to the normal flow. The mixin
is not usable alone: it relies on what BatchSpawnerBase provides (``job_id``,
``get_state``/``load_state``, ``query_job_status``, ``cancel_batch_job``,
``job_status_now``, ``command_vars``, ``_log_name``, ``log``, and the
``_last_status``/``_unknown_since``/``_grace_reported`` set in ``__init__``).
It derives from ``HasTraits`` like :class:`~batchspawner.ssh.SubmitHostsMixin`,
so its traits are configured under the spawner classes.
"""

from __future__ import annotations

import asyncio
import shlex
import time

from traitlets import Float, HasTraits, List

from .runner import CommandError, split_command
from .states import JobState


class LeftoverJobsMixin(HasTraits):
    """Cancel retries and the ``uncancelled_jobs`` bookkeeping (see the module docstring)."""

    # ---------------------------------------------------------------- traits
    cancel_wait_timeout = Float(
        60.0, help="Seconds stop() waits for the scheduler to report the cancelled job gone."
    ).tag(config=True)

    cancel_retry_timeout = Float(
        60.0,
        help="""Seconds stop() keeps retrying a cancel command that fails (e.g. the controller is down).

        Retries start cancel_retry_interval apart and back off (doubling, up to 30 s). A job
        that still cannot be cancelled is never forgotten: the hub goes on to stop the server
        (proxy route and API token removed), the job is kept in this server's state
        (``uncancelled_jobs``, which clear_state() keeps) and cancelled before the user's next
        start, and an error is logged with the job id and the command an admin can run.""",
    ).tag(config=True)

    cancel_retry_interval = Float(
        2.0, help="Seconds before the first retry of a failed cancel in stop(); doubles after each try (max 30 s)."
    ).tag(config=True)

    uncancelled_jobs = List(
        help="""Jobs (their get_state() entries) whose cancel failed or was not seen to take effect.

        Saved in the state and kept by clear_state(), so the hub cannot forget a job that may
        still run: start() cancels them (or drops those the scheduler shows ended) before it
        submits a new job."""
    )

    # ---------------------------------------------------------------- bookkeeping
    def _job_entry(self):
        """This job's own state (job id and what the scheduler module keeps with it)."""
        return {k: v for k, v in self.get_state().items() if k != "uncancelled_jobs"}

    def _keep_uncancelled(self):
        entry = self._job_entry()
        if entry.get("job_id") and all(e.get("job_id") != entry["job_id"] for e in self.uncancelled_jobs):
            self.uncancelled_jobs = self.uncancelled_jobs + [entry]

    def _manual_cancel_cmd(self):
        return shlex.join(split_command(self.batch_cancel_cmd, **self.command_vars(self.job_id)))

    # ---------------------------------------------------------------- cancelling
    async def _cancel_leftover_jobs(self):
        """Before submitting: cancel the job of an interrupted spawn and every job an earlier
        stop() could not cancel. One that still cannot be cancelled stays in uncancelled_jobs
        (the new spawn goes ahead)."""
        if self.job_id:
            self.log.warning("%s: job %s is left from an interrupted spawn", self._log_name, self.job_id)
            self._keep_uncancelled()
        remaining = []
        try:
            for entry in self.uncancelled_jobs:
                self.load_state(entry)  # that job's id (and cluster...) for the scheduler commands
                if await self._settle_leftover():
                    remaining.append(entry)
        finally:
            self.load_state({})  # back to no job
            self._last_status = None
            self._unknown_since = None
            self._grace_reported = False
        self.uncancelled_jobs = remaining

    async def _settle_leftover(self):
        """Query, then cancel, one leftover job (self.job_id). True if it may still run."""
        status = await self.query_job_status()
        if status.state is JobState.FINISHED:
            self.log.info("%s: leftover job %s has ended (%s)", self._log_name, self.job_id, status.describe())
            return False
        try:
            await self.cancel_batch_job()
        except CommandError as e:
            self.log.error(
                "%s: still cannot cancel leftover job %s (%s; last state %s). It is kept in the server's "
                "state and tried again at the next start. Admin: cancel it by hand: %s",
                self._log_name,
                self.job_id,
                e.brief,
                status.describe(),
                self._manual_cancel_cmd(),
            )
            return True
        self.log.warning("%s: cancelled leftover job %s (was %s)", self._log_name, self.job_id, status.describe())
        return False

    async def _cancel_with_retries(self, retry=True):
        """Cancel the job, retrying with backoff for cancel_retry_timeout.

        Returns None once the scheduler accepted the cancel or shows the job ended (a cancel
        of a job that just ended fails too), else the last error.
        """
        deadline = time.monotonic() + (self.cancel_retry_timeout if retry else 0)
        delay = max(self.cancel_retry_interval, 0.01)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.cancel_batch_job()
            except CommandError as e:
                error = e.brief
            else:
                if attempt > 1:
                    self.log.info("%s: cancel of job %s accepted on attempt %d", self._log_name, self.job_id, attempt)
                return None
            status = await self.query_job_status()
            if status.state is JobState.FINISHED:
                self.log.info(
                    "%s: cancel of job %s failed (%s), but the job has ended (%s)",
                    self._log_name,
                    self.job_id,
                    error,
                    status.describe(),
                )
                return None
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0:
                return f"{error} (after {attempt} attempts; last state {status.describe()})"
            self.log.warning(
                "%s: cancel of job %s failed (attempt %d: %s; job %s); retrying in %.1f s",
                self._log_name,
                self.job_id,
                attempt,
                error,
                status.describe(),
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)
