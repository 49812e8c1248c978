"""One shared status query per cluster, for every job the hub owns.

jupyterhub/batchspawner 1.3 runs one ``sudo squeue -j ID`` per user per hub
poll, and every 0.5 s per starting spawn. Here, spawners that talk to the same
scheduler (same query command, cluster, submit hosts and query identity) share
one :class:`StatusPoller`. It asks the scheduler about *all* registered jobs in
one command every ``interval`` seconds, in a background task, and spawners read
its cache. A starting spawn may ask for a fresher answer; requests that arrive
while a query runs, or within ``min_interval`` of the last one, share it.

A failed, hung or garbled query marks every job *unknown* (alive) and backs the
interval off (``interval``, then doubling up to ``max_interval``); it never marks
a job finished. A slow but successful query stretches the interval to 10x its
duration, so a struggling controller is not hammered; a killed one does not
count as slow. The "next in N s" the log shows is the delay the loop then waits.

An answer that lists none of two or more jobs is *suspect* (an empty answer, or an
error about the whole batch, says nothing about any one job): it is logged once
with its cause, and every job is confirmed by its own spawner's query. Answers are
counted by kind in ``batchspawner_status_answers_total``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from batchspawner.core import metrics
from batchspawner.polling.base import SharedPoller
from batchspawner.core.states import MISSING, JobState, JobStatus

QueryFn = Callable[[list], Awaitable[dict]]

log = logging.getLogger("batchspawner.polling.status")


class StatusPoller(SharedPoller):
    """Cache of job states for one scheduler endpoint, refreshed by one query per round.

    The registry (key -> poller, shared by all spawners in the process), the clock, the
    background loop and stop_all() come from :class:`batchspawner.polling.base.SharedPoller`."""

    name = "status poller"

    def __init__(self, key, query: QueryFn, interval=10.0, min_interval=0.5, max_interval=300.0, log=log,
                 clock=None):
        super().__init__(clock=clock)
        self.key = key
        self.query = query
        self.interval = interval
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.log = log
        self.jobs: dict[str, set] = {}  # job id -> ids of the spawners watching it
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
        self.answer_kind = "none"  # complete, partial, suspect or failed: the last round's answer
        self.trouble_since = None  # (monotonic time, kind) of the first failed/suspect round in a row
        self.troubled_rounds = 0
        self._started = self.clock.now()

    # ------------------------------------------------------------------ registry
    @classmethod
    def get(cls, key, query: QueryFn, **settings) -> "StatusPoller":
        """The poller of ``key`` (made on first use); stop_all() (inherited) stops them all."""
        poller = cls.for_key(key, key, query, **settings)
        poller.query = query  # newest config wins (same key means same command)
        for name, value in settings.items():
            setattr(poller, name, value)
        return poller

    # ------------------------------------------------------------------ jobs
    def watch(self, job_id: str, watcher=None):
        """Register interest of ``watcher`` (a spawner) in ``job_id``; watching twice counts once."""
        self.jobs.setdefault(job_id, set()).add(id(watcher))
        self.watched_at.setdefault(job_id, self.clock.now())
        self.start()

    def unwatch(self, job_id: str, watcher=None):
        watchers = self.jobs.get(job_id)
        if watchers is None:
            return
        watchers.discard(id(watcher))
        if not watchers:
            self.jobs.pop(job_id, None)
            self.cache.pop(job_id, None)
            self.watched_at.pop(job_id, None)
            self._publish_counts()

    # ------------------------------------------------------------------ reading
    async def status(self, job_id: str, max_age: float | None = None, watcher=None) -> JobStatus:
        """State of ``job_id`` no older than ``max_age`` seconds (default: two intervals)."""
        if id(watcher) not in self.jobs.get(job_id, ()):
            self.watch(job_id, watcher)
        if max_age is None:
            max_age = 2 * self.current_interval() + 5
        cached = self.cache.get(job_id)
        if cached is not None and self.clock.now() - cached[1] <= max_age:
            return cached[0]
        since = self.clock.now() - max_age
        if cached is None:  # a round that started before this job was watched did not ask about it
            since = max(since, self.watched_at.get(job_id, 0.0))
        await self.refresh(since=since)
        cached = self.cache.get(job_id)
        if cached is None:
            return JobStatus(JobState.UNKNOWN, reason="no answer from the scheduler yet")
        return cached[0]

    def current_interval(self) -> float:
        """Seconds from the end of the last round to the next background round.

        After failures: ``interval`` doubling per failure in a row (``interval`` after the
        first). Otherwise stretched to 10x the last successful query's duration when that
        was slow. Between ``min_interval`` and ``max_interval``."""
        if self.failures:
            interval = self.interval * (2 ** min(self.failures - 1, 30))
        else:
            interval = max(self.interval, 10 * self.last_duration)
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
        wait = self.min_interval - (self.clock.now() - self.last_round_end)
        if wait > 0:
            await self.clock.sleep(wait)
            if self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)
                return
        if self._inflight is None or self._inflight.done():
            self._inflight_started = self.clock.now()
            self._inflight = asyncio.ensure_future(self._round())
        await asyncio.shield(self._inflight)

    last_round_start = 0.0
    _inflight_started = 0.0

    async def _round(self):
        job_ids = sorted(self.jobs)
        if not job_ids:
            return
        self.last_round_start = t0 = self.clock.now()
        self.rounds += 1
        try:
            answer = await self.query(job_ids)
        except Exception as e:  # a failed round: everything unknown, back off
            self.failures += 1
            reason = getattr(e, "reason", "") or (str(e).splitlines() or [type(e).__name__])[0][:200]
            status = JobStatus(JobState.UNKNOWN, reason=f"status query failed: {reason}")
            now = self.clock.now()
            for job_id in job_ids:
                self.cache[job_id] = (status, now)
            self.last_round_end = now
            self._note_answer("failed", len(job_ids), reason)
        else:
            self.failures = 0
            now = self.clock.now()
            self.last_duration = now - t0  # only a successful query's duration stretches the interval
            listed = 0
            for job_id in job_ids:
                status = answer.get(job_id) or JobStatus(JobState.UNKNOWN, native=MISSING, reason="not in answer")
                listed += status.native != MISSING
                self.cache[job_id] = (status, now)
            self.last_round_end = now
            if listed == len(job_ids):
                kind, cause = "complete", ""
            elif listed == 0 and len(job_ids) >= 2:
                kind = "suspect"
                cause = next(iter(answer.values())).reason if answer else "empty answer"
            else:
                kind, cause = "partial", f"{len(job_ids) - listed} of {len(job_ids)} jobs not listed"
            self._note_answer(kind, len(job_ids), cause)
            self._publish_counts()
        finally:
            if self.last_round_end < t0:  # cancelled mid-query
                self.last_round_end = self.clock.now()
            metrics.POLL_ROUND_SECONDS.observe(self.clock.now() - t0)

    def _note_answer(self, kind, n_jobs, cause):
        """Count the answer, and log a change of kind once (with its real cause), then recovery."""
        metrics.STATUS_ANSWERS.labels(poller=self.label, kind=kind).inc()
        previous, self.answer_kind = self.answer_kind, kind
        troubled = kind in ("failed", "suspect")
        if troubled:
            if self.trouble_since is None:
                self.trouble_since = (self.clock.now(), kind)
                self.troubled_rounds = 0
            self.troubled_rounds += 1
        if kind == "failed":
            # rate-limited: the 1st, 2nd, 4th, 8th... failure in a row at warning level
            n = self.failures
            log = self.log.warning if n & (n - 1) == 0 else self.log.debug
            log(
                "status query for %d jobs failed (%d in a row; next in %s s; jobs kept, state unknown): %s",
                n_jobs,
                n,
                _secs(self.current_interval()),
                cause,
            )
        elif kind == "suspect" and previous != "suspect":
            self.log.warning(
                "suspect shared status answer: it lists none of the %d jobs (%s). That is no evidence "
                "that any job ended: every server is kept and each job is checked with its own query.",
                n_jobs,
                cause,
            )
        elif kind == "partial" and previous != "partial":
            self.log.info("partial shared status answer (%s): each of those is checked with its own query", cause)
        if not troubled and self.trouble_since is not None:
            since, first = self.trouble_since
            self.trouble_since = None
            metrics.STATUS_RECOVERIES.labels(poller=self.label).inc()
            self.log.warning(
                "shared status answers complete again after %d troubled round(s), the first %s (%.0f s)",
                self.troubled_rounds,
                first,
                self.clock.now() - since,
            )

    @property
    def label(self) -> str:
        """Low-cardinality metrics label: the spawner class of the key."""
        key = self.key
        return str(key[0]) if isinstance(key, tuple) and key else str(key)

    def _publish_counts(self):
        """Set the jobs gauge from every poller with this label (pollers never overwrite each other)."""
        counts = {}
        for poller in list(self._registry.values()) + ([] if self in self._registry.values() else [self]):
            if poller.label != self.label:
                continue
            for job_id in poller.jobs:
                cached = poller.cache.get(job_id)
                if cached is not None:
                    state = cached[0].state.value
                    counts[state] = counts.get(state, 0) + 1
        metrics.set_job_counts(self.label, counts)

    # ------------------------------------------------------------------ background (SharedPoller)
    def wanted(self) -> bool:
        return bool(self.jobs)

    def due_in(self) -> float:
        """0 while a round runs (the loop waits for it), else until ``current_interval()`` after the last."""
        if self._inflight is not None and not self._inflight.done():
            return 0.0
        return (self.last_round_end or self._started) + self.current_interval() - self.clock.now()

    async def background_round(self):
        if self._inflight is not None and not self._inflight.done():
            try:
                await asyncio.shield(self._inflight)
            except Exception:
                pass
            return
        if self.jobs:
            await self.refresh(since=self.clock.now())

    def other_tasks(self) -> list:
        return [self._inflight] if self._inflight is not None else []


def _secs(value: float) -> str:
    """Seconds for the log: 0.2, 10, 300 (what the loop really waits, to 0.1 s)."""
    return f"{round(value, 1):g}"
