"""The hub side of a session: its card's facts (details poller) and its usage records.

:class:`SessionCards` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. The core calls its
hooks (``_session_submitted``, ``_session_started``, ``_session_failed``, ``_session_stopped``) at each
phase; they feed the session card (:mod:`batchspawner.hub.sessions`) and the usage log
(:mod:`batchspawner.usage.report`). Nothing here decides whether a server lives or ends.
"""

from __future__ import annotations

import asyncio
import time

from batchspawner.core import joblogs
from batchspawner.hub import sessions, stopped
from batchspawner.usage import report
from batchspawner.commands.runner import split_command


class SessionCards:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    def details_poller(self, create=True):
        """The shared :class:`~batchspawner.hub.sessions.DetailsPoller` of this scheduler endpoint, or None.

        Every poll and every REST model asks for it: kept until a setting changes (runner_policy.memo)."""
        if not self.batch_details_cmd or self.overrides_run_command():
            # a site's 1.3 run_command knows submit, query and cancel: it is sent nothing else
            return None
        if not create:
            key = self.runner_policy.memo("details_key", lambda: self._details_poller(create=False)[0])
            return sessions.DetailsPoller._registry.get(key)
        registry = sessions.DetailsPoller._registry
        return self.runner_policy.memo(
            "details_poller", lambda: self._details_poller(create=True),
            valid=lambda kp: registry.get(kp[0]) is kp[1],
        )[1]

    def _details_poller(self, create):
        """(key, poller or None) of the shared details query."""
        # the same runner, environment and identity as the shared status query (one rule, in
        # batchspawner/commands/policy.py): the key holds the identity, so no poller runs as "whichever
        # user asked last"; the closures hold the spawner's settings, not the spawner
        runner, env, status_key = self.status_endpoint()
        vars_ = self.command_vars()
        details_cmd, queue_cmd = self.batch_details_cmd, self.batch_queue_cmd
        parse_details, parse_order = self.parse_job_details, self.parse_queue_order
        key = ("details", details_cmd, queue_cmd) + tuple(status_key)
        if not create:
            return key, None

        async def details(job_ids):
            ids = {"job_ids": ",".join(job_ids), "job_id_args": list(job_ids)}
            argv = split_command(details_cmd, **(vars_ | ids))
            result = await runner.run(argv, env=env, check=False)
            return parse_details(result.returncode, result.stdout, result.stderr)

        queue = None
        if queue_cmd:

            async def queue():
                argv = split_command(queue_cmd, **vars_)
                result = await runner.run(argv, env=env)
                return parse_order(result.stdout)

        return key, sessions.DetailsPoller.get(key, details, queue, interval=self.session_interval,
                                               min_interval=self.status_min_interval)

    def parse_job_details(self, returncode, stdout, stderr) -> dict:
        """{job_id: {partition, cores, memory, gpus, time_limit, start, submit, node, reason, native,
        exit_code}} from batch_details_cmd; raise when the answer cannot be trusted."""
        raise NotImplementedError(f"{type(self).__name__} has no details parser")

    def parse_queue_order(self, stdout) -> list:
        """[(job_id, partition)] of pending jobs in priority order, from batch_queue_cmd."""
        raise NotImplementedError(f"{type(self).__name__} has no queue-order parser")

    def _track_session(self):
        poller = self.details_poller()
        if poller is not None and self.job_id:
            poller.watch(self.job_id)

    def _untrack_session(self, job_id):
        poller = self.details_poller(create=False)
        if poller is not None and job_id:
            poller.unwatch(job_id)

    def _session_submitted(self):
        self.log_file = self.format_log_path(self.job_id)
        self.submitted_at = time.time()
        self._running_at = None
        self._track_session()
        report.record(self, "spawn", outcome="submitted")

    def _session_running(self):
        self._running_at = time.time()

    def _queue_wait(self):
        running = getattr(self, "_running_at", None)
        if not self.submitted_at:
            return None
        return (running or time.time()) - self.submitted_at

    def _session_started(self):
        self._served_at = time.time()
        # no chmod command from the hub: the Slurm and Grid Engine scripts make their log 0600 as the
        # job starts (the wrapper too, when its output is the log); the folder is 0700 for all
        report.record(self, "start", outcome="started", queue_wait=self._queue_wait())

    def _session_failed(self, error):
        joblogs.forget_prepared(self)  # the next try makes the log folder again, if it is gone
        if not self.job_id:
            return
        cancelled = isinstance(error, asyncio.CancelledError)
        reason = "cancelled by the user" if cancelled else str(getattr(error, "jupyterhub_message", "") or error)
        report.record(self, "fail", outcome="cancelled" if cancelled else "failed", reason=reason,
                      queue_wait=self._queue_wait() if getattr(self, "_running_at", None) else None)

    def _session_stopped(self):
        """stop() is cancelling a job: the usage log's stop record, and (issue 26) the finished card of
        a server that had started, when the stop was asked through the hub ("stopped by you", an
        administrator, a hub service), kept in ``last_ended`` as an ended job's is; a cancelled start
        says so on its own page instead."""
        if self.job_id and not (getattr(self, "_starting", False) or getattr(self, "_restored_starting", False)):
            owner = getattr(getattr(self, "user", None), "name", "") or ""
            by, service = stopped.who_stopped(owner)
            if by:  # a request through the hub (the user, an admin, a service); a stop() called
                # directly (a site's or batchspawner 1.3's own tests, a wrapper) leaves the state
                # empty, as 1.3's did
                self.last_ended = stopped.stopped_record(self.job_id, by, service)
        served = getattr(self, "_served_at", None)
        if self.job_id and served:
            report.record(self, "stop", outcome="stopped", run_time=time.time() - served)
        self._served_at = None

    def _session_ended(self, native, exit_code, served=None, reason=""):
        """The core saw the job end (or leave RUNNING for good): how, for the "your job ended" page and
        the home page's note (kept in the state as ``last_ended``), and the usage log's stop record
        (``reason``) if its server had been serving."""
        self.last_ended = sessions.ended_record(self.job_id, native, exit_code, served=served)
        if reason and getattr(self, "_served_at", None):  # issue 14: usage log (walltime, scancel)
            report.record(self, "stop", outcome="ended", reason=reason, run_time=time.time() - self._served_at)
            self._served_at = None

    async def _queue_note(self) -> str:
        """The pending job's place in the queue and estimated start, for the spawn page (issue 14)."""
        return await sessions.queue_note(self)

    def session_facts(self):
        """The session card's facts (cached only, no scheduler command); see batchspawner.hub.sessions."""
        return sessions.session_facts(self)
