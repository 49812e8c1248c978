"""One shared status query per cluster, for every job the hub owns.

jupyterhub/batchspawner 1.3 runs one ``sudo squeue -j ID`` per user per hub
poll, and every 0.5 s per starting spawn. Here, spawners that talk to the same
scheduler (same query command, cluster, submit hosts and query identity) share
one :class:`StatusPoller`. It asks the scheduler about *all* registered jobs in
one command every ``interval`` seconds, in a background task, and spawners read
its cache. A starting spawn may ask for a fresher answer; requests that arrive
while a query runs, or within ``min_interval`` of the last one, share it.

A failed, hung or garbled query marks every job *unknown* (alive) and backs the
interval off; it never marks a job finished. The interval also stretches when
the query itself is slow, so a struggling controller is not hammered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from . import metrics
from .states import JobState, JobStatus

QueryFn = Callable[[list], Awaitable[dict]]

log = logging.getLogger("batchspawner.status")


class StatusPoller:
    """Cache of job states for one scheduler endpoint, refreshed by one query per round."""

    # (key) -> poller; shared by all spawners in the process
    _registry: dict = {}

    def __init__(self, key, query: QueryFn, interval=10.0, min_interval=0.5, max_interval=300.0, log=log):
        self.key = key
        self.query = query
        self.interval = interval
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.log = log
        self.jobs: dict[str, int] = {}  # job id -> number of spawners watching it
        self.watched_at: dict[str, float] = {}
        self.cache: dict[str, tuple[JobStatus, float]] = {}
        self.rounds = 0  # scheduler queries made (for tests and metrics)
        self.failures = 0  # consecutive failed rounds
        self.last_round_end = 0.0
        self.last_duration = 0.0
        self._inflight: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._wake = None
        self.warned_missing = False  # a listed-as-missing job turned out alive (logged once)

    # ------------------------------------------------------------------ registry
    @classmethod
    def get(cls, key, query: QueryFn, **settings) -> "StatusPoller":
        poller = cls._registry.get(key)
        if poller is None:
            poller = cls._registry[key] = cls(key, query, **settings)
        else:
            poller.query = query  # newest config wins (same key means same command)
            for name, value in settings.items():
                setattr(poller, name, value)
        return poller

    @classmethod
    async def stop_all(cls):
        """Stop every poller's background task (for tests and hub shutdown)."""
        for poller in list(cls._registry.values()):
            await poller.close()
        cls._registry.clear()

    # ------------------------------------------------------------------ jobs
    def watch(self, job_id: str):
        self.jobs[job_id] = self.jobs.get(job_id, 0) + 1
        self.watched_at.setdefault(job_id, time.monotonic())
        self._ensure_task()

    def unwatch(self, job_id: str):
        count = self.jobs.get(job_id, 0) - 1
        if count <= 0:
            self.jobs.pop(job_id, None)
            self.cache.pop(job_id, None)
            self.watched_at.pop(job_id, None)
        else:
            self.jobs[job_id] = count

    # ------------------------------------------------------------------ reading
    async def status(self, job_id: str, max_age: float | None = None) -> JobStatus:
        """State of ``job_id`` no older than ``max_age`` seconds (default: two intervals)."""
        if job_id not in self.jobs:
            self.watch(job_id)
        if max_age is None:
            max_age = 2 * self.current_interval() + 5
        cached = self.cache.get(job_id)
        if cached is not None and time.monotonic() - cached[1] <= max_age:
            return cached[0]
        since = time.monotonic() - max_age
        if cached is None:  # a round that started before this job was watched did not ask about it
            since = max(since, self.watched_at.get(job_id, 0.0))
        await self.refresh(since=since)
        cached = self.cache.get(job_id)
        if cached is None:
            return JobStatus(JobState.UNKNOWN, reason="no answer from the scheduler yet")
        return cached[0]

    def current_interval(self) -> float:
        """The background interval: backed off after failures, stretched when queries are slow."""
        interval = max(self.interval, 10 * self.last_duration)
        if self.failures:
            interval = interval * (2 ** min(self.failures, 6))
        return max(self.min_interval, min(interval, self.max_interval))

    # ------------------------------------------------------------------ querying
    async def refresh(self, since: float = 0.0):
        """Make sure a round that *started* after ``since`` has finished (coalesced)."""
        if self._inflight is not None and not self._inflight.done():
            started = self._inflight_started
            await asyncio.shield(self._inflight)
            if started >= since:
                return
        if self.last_round_start >= since and self.last_round_end >= self.last_round_start:
            return
        wait = self.min_interval - (time.monotonic() - self.last_round_end)
        if wait > 0:
            await asyncio.sleep(wait)
            if self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)
                return
        if self._inflight is None or self._inflight.done():
            self._inflight_started = time.monotonic()
            self._inflight = asyncio.ensure_future(self._round())
        await asyncio.shield(self._inflight)

    last_round_start = 0.0
    _inflight_started = 0.0

    async def _round(self):
        job_ids = sorted(self.jobs)
        if not job_ids:
            return
        self.last_round_start = t0 = time.monotonic()
        self.rounds += 1
        try:
            answer = await self.query(job_ids)
        except Exception as e:  # a failed round: everything unknown, back off
            self.failures += 1
            reason = getattr(e, "reason", "") or str(e).splitlines()[0][:200]
            status = JobStatus(JobState.UNKNOWN, reason=f"status query failed: {reason}")
            now = time.monotonic()
            for job_id in job_ids:
                self.cache[job_id] = (status, now)
            self.log.warning(
                "status query for %d jobs failed (%d in a row, next in %.0f s): %s",
                len(job_ids),
                self.failures,
                self.current_interval(),
                reason,
            )
        else:
            self.failures = 0
            now = time.monotonic()
            for job_id in job_ids:
                self.cache[job_id] = (answer.get(job_id) or JobStatus(JobState.UNKNOWN, reason="not in answer"), now)
            metrics.record_job_states(self.key, answer.values())
        finally:
            self.last_round_end = time.monotonic()
            self.last_duration = self.last_round_end - t0
            metrics.POLL_ROUND_SECONDS.observe(self.last_duration)

    # ------------------------------------------------------------------ background
    def _ensure_task(self):
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._task = loop.create_task(self._run())

    async def _run(self):
        while self.jobs:
            await asyncio.sleep(self.current_interval())
            if not self.jobs:
                break
            try:
                await self.refresh(since=time.monotonic() - self.min_interval)
            except Exception:  # never let the loop die
                self.log.exception("status poller round failed")

    async def close(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._task = None
