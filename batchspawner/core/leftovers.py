"""Leftover jobs: the cancel traits, and :class:`Leftovers`, the object that cancels before forgetting.

``LeftoverTraits`` declares the configuration (``cancel_wait_timeout``,
``cancel_retry_timeout``, ``cancel_retry_interval``) and ``uncancelled_jobs``: the
state entries of jobs whose cancel failed or was not seen to take effect, kept
through ``clear_state()`` so the hub cannot forget a job that may still run. Its
traits are configured under the spawner classes, like every mixin's here.

:class:`Leftovers` is owned by each spawner (``spawner.leftovers``) and holds the
one rule of this module: **a job id leaves the state only after its cancel was sent
and its result recorded.** ``cancel_before_forget(job_id)`` is what every
forgetting path calls (poll() seeing the end, stop(), leftovers settled at the next
start); ``clear_state()`` forgets only a job in ``cancelled`` and moves any other
to ``uncancelled_jobs``. It uses the spawner's public surface only
(``cancel_batch_job``, ``query_job_status``, ``get_state``/``load_state``,
``command_vars``, ``batch_cancel_cmd``, ``state_gone_re``, ``log``).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time

from traitlets import Float, HasTraits, List

from batchspawner.commands.runner import CommandError, split_command
from batchspawner.core import metrics
from batchspawner.core.states import JobState


class LeftoverTraits(HasTraits):
    """The cancel configuration and ``uncancelled_jobs`` (see the module docstring)."""

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


# kept for code that imported the old name
LeftoverJobsMixin = LeftoverTraits

# a cancel refused because the job is already over: nothing is left to cancel
ALREADY_OVER = re.compile(r"(?i)already (?:finished|completed|completing|terminated)|job has finished|has already ended")


class Leftovers:
    """Cancels before any job id is forgotten (``spawner.leftovers``); see the module docstring."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.cancelled: set[str] = set()  # job ids whose cancel was sent and accepted (may be forgotten)

    # ---------------------------------------------------------------- bookkeeping
    def entry(self):
        """The current job's own state (job id and what the scheduler module keeps with it)."""
        return {k: v for k, v in self.spawner.get_state().items() if k != "uncancelled_jobs"}

    def keep(self, entry=None):
        """Keep a job (default: the current one) in ``uncancelled_jobs`` (once)."""
        sp = self.spawner
        entry = self.entry() if entry is None else entry
        if entry.get("job_id") and all(e.get("job_id") != entry["job_id"] for e in sp.uncancelled_jobs):
            sp.uncancelled_jobs = sp.uncancelled_jobs + [entry]

    def may_forget(self, job_id) -> bool:
        return bool(job_id) and job_id in self.cancelled

    def manual_cancel_cmd(self, job_id):
        sp = self.spawner
        return shlex.join(split_command(sp.batch_cancel_cmd, **sp.command_vars(job_id)))

    def _says_over(self, error: CommandError) -> bool:
        text = f"{error.stdout}\n{error.stderr}"
        gone = self.spawner.state_gone_re
        return bool((gone and re.search(gone, text, re.M)) or ALREADY_OVER.search(text))

    # ---------------------------------------------------------------- cancelling
    async def cancel_before_forget(self, job_id, why) -> bool:
        """Send the (idempotent) cancel for a job about to be forgotten; record the result.

        True when the scheduler accepted it (or answered that the job is already over):
        the job may then leave the state. Otherwise the job is kept in
        ``uncancelled_jobs`` and cancelled again before the user's next start."""
        sp = self.spawner
        try:
            await sp.cancel_batch_job()
        except CommandError as e:
            if self._says_over(e):
                result = f"nothing left to cancel ({e.brief})"
            else:
                metrics.CANCELS_BEFORE_FORGET.labels(result="failed").inc()
                self.keep()
                sp.log.warning(
                    "%s: job %s %s, but its cancel failed (%s): it is kept in the server's state and "
                    "cancelled again before the next start. Admin: %s",
                    sp._log_name,
                    job_id,
                    why,
                    e.brief,
                    self.manual_cancel_cmd(job_id),
                )
                return False
        else:
            result = "cancel accepted"
        metrics.CANCELS_BEFORE_FORGET.labels(result="accepted").inc()
        self.cancelled.add(job_id)
        sp.log.info("%s: job %s %s; %s before forgetting it", sp._log_name, job_id, why, result)
        return True

    async def settle_all(self):
        """Before submitting: cancel the job of an interrupted spawn and every job an earlier
        stop() could not cancel. One that still cannot be cancelled stays in uncancelled_jobs
        (the new spawn goes ahead)."""
        sp = self.spawner
        if sp.job_id and not self.may_forget(sp.job_id):
            sp.log.warning("%s: job %s is left from an interrupted spawn", sp._log_name, sp.job_id)
            self.keep()
        remaining = []
        try:
            for entry in sp.uncancelled_jobs:
                sp.load_state(entry)  # that job's id (and cluster...) for the scheduler commands
                if await self.settle(sp.job_id):
                    remaining.append(entry)
        finally:
            sp.load_state({})  # back to no job
            sp.reset_job_tracking()
        sp.uncancelled_jobs = remaining

    async def settle(self, job_id):
        """Query, then cancel, one leftover job (loaded as the spawner's job). True if it may still run.

        The cancel is sent even when the scheduler shows the job ended: that is the
        record that the hub let go of it."""
        sp = self.spawner
        status = await sp.query_job_status()
        try:
            await sp.cancel_batch_job()
        except CommandError as e:
            if status.state is JobState.FINISHED or self._says_over(e):
                sp.log.info(
                    "%s: leftover job %s has ended (%s); its cancel answered: %s. Dropped.",
                    sp._log_name, job_id, status.describe(), e.brief,
                )
                metrics.CANCELS_BEFORE_FORGET.labels(result="accepted").inc()
                return False
            metrics.CANCELS_BEFORE_FORGET.labels(result="failed").inc()
            sp.log.error(
                "%s: still cannot cancel leftover job %s (%s; last state %s). It is kept in the server's "
                "state and tried again at the next start. Admin: cancel it by hand: %s",
                sp._log_name,
                job_id,
                e.brief,
                status.describe(),
                self.manual_cancel_cmd(job_id),
            )
            return True
        metrics.CANCELS_BEFORE_FORGET.labels(result="accepted").inc()
        if status.state is JobState.FINISHED:
            sp.log.info("%s: leftover job %s has ended (%s); cancel sent before dropping it", sp._log_name, job_id, status.describe())
        else:
            sp.log.warning("%s: cancelled leftover job %s (was %s)", sp._log_name, job_id, status.describe())
        return False

    async def cancel_with_retries(self, job_id, retry=True):
        """Cancel the job, retrying with backoff for cancel_retry_timeout.

        Returns None once the scheduler accepted the cancel or shows the job ended (a cancel
        of a job that just ended fails too), else the last error.
        """
        sp = self.spawner
        deadline = time.monotonic() + (sp.cancel_retry_timeout if retry else 0)
        delay = max(sp.cancel_retry_interval, 0.01)
        attempt = 0
        while True:
            attempt += 1
            try:
                await sp.cancel_batch_job()
            except CommandError as e:
                error = e.brief
            else:
                if attempt > 1:
                    sp.log.info("%s: cancel of job %s accepted on attempt %d", sp._log_name, job_id, attempt)
                return None
            status = await sp.query_job_status()
            if status.state is JobState.FINISHED:
                sp.log.info(
                    "%s: cancel of job %s failed (%s), but the job has ended (%s)",
                    sp._log_name,
                    job_id,
                    error,
                    status.describe(),
                )
                return None
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0:
                return f"{error} (after {attempt} attempts; last state {status.describe()})"
            sp.log.warning(
                "%s: cancel of job %s failed (attempt %d: %s; job %s); retrying in %.1f s",
                sp._log_name,
                job_id,
                attempt,
                error,
                status.describe(),
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)
