"""What users and admins see about a batch session: the facts behind the session card.

The hub's pages (home, spawn-pending, every page's walltime warning, the admin's
sessions page) and ``GET /hub/hpc/cards?format=json`` all read
:func:`session_facts`, which only reads caches: the shared status poller's last
answer, and this module's :class:`DetailsPoller`. A page view never runs a
scheduler command.

The DetailsPoller runs, for every job the hub owns on one scheduler endpoint,
*one* details query per round (Slurm: ``squeue -j ID,ID,... -o ...`` giving
partition, cores, memory, GPUs, time limit, submit/start times, node and
pending reason, the start time being Slurm's estimate while the job pends, as
``squeue --start`` shows it) and *one* queue-order query (every pending job of
the cluster, by priority) from which each job's position among the pending
jobs of its partition is computed. Rounds run in the background every
``session_interval`` seconds while jobs exist; a starting spawn may ask for a
fresher one (coalesced, never more than one per ``status_min_interval``).

A scheduler without ``batch_details_cmd`` shows what the spawner itself knows
(job id, state and node from the status poller, the requested resources).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from batchspawner.core.durations import clock, human_seconds, parse_duration, parse_timestamp  # noqa: F401 (also this module's names)
from batchspawner.hub import stopped
from batchspawner.polling.base import SharedPoller

log = logging.getLogger("batchspawner.hub.sessions")

WARN_SECONDS = 15 * 60  # the walltime warning shows in the last 15 minutes (BatchSpawnerBase.walltime_warning)


def batch_child(spawner):
    """The batch spawner behind ``spawner`` (wrappers followed), or None."""
    for _ in range(5):
        if spawner is None or hasattr(spawner, "details_poller"):
            return spawner
        spawner = getattr(spawner, "child_spawner", None)
    return None


class DetailsPoller(SharedPoller):
    """Cache of job details and queue positions for one scheduler endpoint.

    Registry, clock, background loop and stop_all() from :class:`batchspawner.polling.base.SharedPoller`."""

    name = "session details"
    log = log

    def __init__(self, key, details, queue, interval=15.0, min_interval=0.5, clock=None):
        super().__init__(clock=clock)
        self.key = key
        self.details_query = details  # async (job_ids) -> {job_id: dict}
        self.queue_query = queue  # async () -> [(job_id, partition)] in priority order, or None
        self.interval = interval
        self.min_interval = min_interval
        self.jobs: set[str] = set()
        self.details: dict[str, dict] = {}
        self.fetched_at: dict[str, float] = {}  # epoch seconds each job's details were read
        self.positions: dict[str, tuple[int, int]] = {}
        self.rounds = 0
        self.failures = 0  # failed rounds in a row
        self.max_interval = 600.0
        self.updated_at = 0.0  # monotonic (self.clock) end of the last successful round
        self._inflight = None
        self._next_round = None  # clock time of the next background round (None: at once)

    @classmethod
    def get(cls, key, details, queue, **settings):
        poller = cls.for_key(key, key, details, queue, **settings)
        poller.details_query, poller.queue_query = details, queue
        for name, value in settings.items():
            setattr(poller, name, value)
        return poller

    def watch(self, job_id):
        if job_id and job_id not in self.jobs:
            self.jobs.add(job_id)
            if not self.running():
                self._next_round = None  # a (re)started loop asks at once
            self.start()

    def unwatch(self, job_id):
        self.jobs.discard(job_id)
        self.details.pop(job_id, None)
        self.fetched_at.pop(job_id, None)
        self.positions.pop(job_id, None)

    # A job that runs on a node keeps its details (partition, size, limit, start, node): it is
    # asked about again only after this many seconds (an admin may change its time limit), not
    # every round. Rounds then cost nothing while every job runs (issue 16: the hub's work per
    # round); pending jobs, new jobs and a job whose end must be explained are asked every round.
    settled_refresh = 600.0

    def settled(self, job_id, now=None) -> bool:
        """True for a job last seen started on a node, less than ``settled_refresh`` s ago."""
        det = self.details.get(job_id)
        if not det or not det.get("node") or not det.get("start"):
            return False
        now = time.time() if now is None else now
        return det["start"] <= now and now - self.fetched_at.get(job_id, 0.0) < self.settled_refresh

    async def refresh(self, max_age: float, everything: bool = False):
        """Make sure the cache is no older than ``max_age`` seconds (one shared round).

        ``everything``: ask about settled (running) jobs too, e.g. for the exit status of a job
        that has just ended."""
        if self.clock.now() - self.updated_at <= max_age and not everything:
            return
        if everything and self._inflight is not None and not self._inflight.done():
            await asyncio.shield(self._inflight)  # that round may leave settled jobs out: then one for all
        if self._inflight is None or self._inflight.done():
            wait = self.min_interval - (self.clock.now() - self.updated_at)
            if wait > 0:
                await self.clock.sleep(wait)
            if self._inflight is None or self._inflight.done():
                self._inflight = asyncio.ensure_future(self._round(everything))
        await asyncio.shield(self._inflight)

    async def _round(self, everything=False):
        now = time.time()
        job_ids = sorted(j for j in self.jobs if everything or not self.settled(j, now))
        if not job_ids:
            self.updated_at = self.clock.now()  # every job settled: the cache is as fresh as it needs to be
            return
        self.rounds += 1
        try:
            details = await self.details_query(job_ids)
            # positions matter for pending jobs only: no queue query while every asked job runs
            waiting = any(not (details.get(j) or {}).get("node") for j in job_ids)
            order = await self.queue_query() if self.queue_query and waiting else None
        except Exception as e:  # keep the old facts; the cards say how old they are
            self.failures += 1
            n = self.failures
            (log.warning if n & (n - 1) == 0 else log.debug)(  # the 1st, 2nd, 4th, 8th... in a row
                "session details query for %d jobs failed (%d in a row; next in %.0f s): %s",
                len(job_ids), n, self.next_interval(), str(e)[:200],
            )  # fmt: skip
            return
        self.failures = 0
        for job_id in job_ids:
            if job_id in details:
                self.details[job_id] = details[job_id]
                self.fetched_at[job_id] = now
        if order is None and self.queue_query:
            for job_id in job_ids:  # none of them waits in a queue any more
                self.positions.pop(job_id, None)
        if order is not None:
            by_partition: dict[str, list[str]] = {}
            for job_id, partition in order:
                by_partition.setdefault(partition, []).append(job_id)
            self.positions = {}
            for job_id in job_ids:
                part = (self.details.get(job_id) or {}).get("partition", "")
                queue = by_partition.get(part, [])
                if job_id in queue:
                    self.positions[job_id] = (queue.index(job_id) + 1, len(queue))
        self.updated_at = self.clock.now()

    def next_interval(self) -> float:
        """``interval``, doubling per failed round in a row up to ``max_interval``: a scheduler
        whose details query fails (an older squeue without these fields) is not asked about
        every job every 15 s forever; the cards then show what is known from the status query."""
        return self.backoff(self.interval, min(self.failures, 10))

    # the background loop (SharedPoller): a round at once, then one ``next_interval()`` after each
    def wanted(self) -> bool:
        return bool(self.jobs)

    def due_in(self) -> float:
        return 0.0 if self._next_round is None else self._next_round - self.clock.now()

    async def background_round(self):
        try:
            await self.refresh(max_age=0)
        finally:
            self._next_round = self.clock.now() + self.next_interval()

    def other_tasks(self) -> list:
        return [self._inflight] if self._inflight is not None else []


# ---------------------------------------------------------------- facts for pages and the API
def _reason_words(batch, reason):
    if not reason:
        return ""
    explain = getattr(batch, "explain_reason", None)
    return explain(reason) if explain else reason


def session_facts(spawner, now: float | None = None) -> dict | None:
    """The card of one server, from caches only (no scheduler command); None if it has no job."""
    batch = batch_child(spawner)
    if batch is None or not getattr(batch, "job_id", ""):
        return None
    now = time.time() if now is None else now
    job_id = batch.job_id
    poller = batch.details_poller(create=False)
    det = dict(poller.details.get(job_id, {})) if poller else {}
    pos = poller.positions.get(job_id) if poller else None
    status = getattr(batch, "_last_status", None)
    native = (status.native if status else "") or det.get("native", "")
    state_word = status.state.value if status else "unknown"
    is_suspended = getattr(batch, "job_is_suspended", None)
    suspended_since = getattr(batch, "_suspended_since", None)
    if status and is_suspended is not None and is_suspended(status):
        state = "suspended"  # issue 24: kept and routed, but paused by the scheduler
    elif getattr(spawner, "ready", False):
        state = "running"
    elif state_word == "pending":
        state = "queued"
    elif state_word == "running":
        # the status poller's answer is the newest (the progress stream says "running on" from it):
        # details read before the job started (PENDING, estimated start) must not make it "queued"
        state = "starting"
    elif det.get("native") == "PENDING":
        state = "queued"
    elif getattr(spawner, "pending", None) == "spawn":
        state = "submitting" if not status else "starting"
    else:
        state = state_word
    reason = (status.reason if status and status.state.value == "pending" else "") or (
        det.get("reason", "") if state == "queued" else ""
    )
    node = (status.host if status and status.host else "") or (det.get("node", "") if state != "queued" else "")
    started = det.get("start") if state in ("running", "starting", "suspended") else None
    if started and det.get("native") == "PENDING":  # that "start" was the scheduler's estimate
        started = getattr(batch, "_running_at", None)
    limit = det.get("time_limit")
    if limit is None:
        limit = parse_duration(getattr(batch, "req_runtime", ""))
    time_left = None
    if started and limit:
        # the scheduler does not count suspended time against the wall time
        paused = (getattr(batch, "suspended_seconds", 0.0) or 0.0) + (now - suspended_since if suspended_since else 0.0)
        time_left = max(0, int(started + limit + paused - now))
    submitted = det.get("submit") or getattr(batch, "submitted_at", None)
    queue_wait = None
    if submitted:
        queue_wait = int((started or now) - submitted) if (started or state == "queued") else None
    estimated = det.get("start") if state == "queued" else None
    if estimated is not None and estimated < now - 60:
        estimated = None  # Slurm's placeholder for "no estimate yet"
    facts = {
        "job_id": job_id,
        "server": spawner.name or "",
        "profile": _profile_name(spawner),
        "scheduler": type(batch).__name__.replace("Spawner", ""),
        "state": state,
        "native_state": native,
        "node": node,
        "partition": det.get("partition") or getattr(batch, "req_partition", "") or getattr(batch, "req_queue", ""),
        "cores": det.get("cores") or getattr(batch, "req_nprocs", "") or "",
        "memory": det.get("memory") or getattr(batch, "req_memory", "") or "",
        "gpus": det.get("gpus") or getattr(batch, "req_ngpus", "") or "",
        "reason": reason,
        "reason_text": _reason_words(batch, reason),
        "position": pos[0] if pos else None,
        "pending_in_partition": pos[1] if pos else None,
        "estimated_start": estimated,
        "estimated_start_text": clock(estimated),
        "queue_wait": queue_wait,
        "queue_wait_text": human_seconds(queue_wait),
        "walltime": limit,
        "walltime_text": human_seconds(limit),
        "time_left": time_left,
        "time_left_text": human_seconds(time_left),
        "ends_soon": time_left is not None and time_left <= warn_seconds(batch),
        "warn_seconds": warn_seconds(batch),
        "log_path": getattr(batch, "log_file", "") or "",
        "facts_age": int(poller.clock.now() - poller.updated_at) if poller and poller.updated_at else None,
    }
    return facts


def warn_seconds(batch) -> float:
    """The batch spawner's ``walltime_warning`` (seconds; 0 = never warn), else WARN_SECONDS."""
    value = getattr(batch, "walltime_warning", WARN_SECONDS)
    return float(value) if isinstance(value, (int, float)) and value >= 0 else float(WARN_SECONDS)


def walltime_answer(spawner, now: float | None = None) -> dict:
    """What a job's own server is told about its wall time (``GET /hub/api/batchspawner``): the
    session's state, time left and whether to warn now, from the hub's caches only."""
    facts = session_facts(spawner, now=now) or {}
    return {
        "job_id": facts.get("job_id", ""),
        "state": facts.get("state", ""),
        "time_left": facts.get("time_left"),
        "walltime": facts.get("walltime"),
        "warn_seconds": facts.get("warn_seconds", warn_seconds(batch_child(spawner))),
        "ends_soon": bool(facts.get("ends_soon")) and bool(facts.get("warn_seconds")),
        "time_left_text": facts.get("time_left_text", ""),
    }


def _profile_name(spawner) -> str:
    key = getattr(spawner, "child_profile", "") or getattr(batch_child(spawner), "_wrapper_profile", "") or ""
    find = getattr(spawner, "profile", None)
    if key and callable(find):
        profile = find(key)
        if profile is not None:
            return profile.display
    return key


def user_sessions(user) -> list[dict]:
    """Cards of every server of a hub user (for ``JupyterHub.template_vars``); [] for no user."""
    if user is None or not hasattr(user, "spawners"):
        return []
    cards = []
    for name, spawner in sorted(user.spawners.items()):
        try:
            facts = session_facts(spawner)
        except Exception:  # a page must render even if one card cannot
            log.exception("session card of %s:%s", getattr(user, "name", "?"), name)
            continue
        if facts:
            facts["user"] = user.name
            facts["relaunch"] = _relaunch_or_none(spawner)
            cards.append(facts)
    return cards


# ---------------------------------------------------------------- relaunch / edit and launch
_NUMBERED = re.compile(r"-[0-9]{1,3}$")


def relaunch_target(spawner) -> str | None:
    """The server a relaunch of ``spawner``'s session starts: the same one when it is stopped; a new
    named server ``<name>-2``, ``-3``... (the first not active) while it is active, if the hub allows
    named servers; None when it cannot (active, and no named servers)."""
    name = getattr(spawner, "name", "") or ""
    if not getattr(spawner, "active", False):
        return name
    user = getattr(spawner, "user", None)
    if not getattr(user, "allow_named_servers", False):
        return None
    base = _NUMBERED.sub("", name) or "server"
    others = getattr(user, "spawners", {}) or {}
    for i in range(2, 100):
        candidate = f"{base}-{i}"
        other = others.get(candidate)
        if other is None or not getattr(other, "active", False):
            return candidate
    return None


def relaunch_facts(spawner) -> dict | None:
    """What the Relaunch and Edit buttons of a session need: ``{"target": server name, "inputs":
    [(form input, value)], "edit_path": ...}``; None for a spawner whose options cannot be posted
    again (no profile form) or when there is nowhere to start it. The inputs are posted to the hub's
    spawn form like any form: checked again (same 400 rules)."""
    form_inputs = getattr(spawner, "form_inputs", None)
    if not callable(form_inputs):
        return None
    inputs = form_inputs(getattr(spawner, "user_options", None))
    target = relaunch_target(spawner)
    user = getattr(getattr(spawner, "user", None), "name", "") or ""
    if not inputs or target is None or not user:
        return None
    server = getattr(spawner, "name", "") or ""
    return {
        "target": target,
        "spawn_path": "spawn/" + _url_escape(user) + ("/" + _url_escape(target) if target else ""),
        "edit_path": "hpc/edit/" + _url_escape(user) + ("/" + _url_escape(server) if server else ""),
        "inputs": inputs,
    }


def _relaunch_or_none(spawner):
    try:
        return relaunch_facts(spawner)
    except Exception:  # a card must render even without its buttons
        log.exception("relaunch facts of %s", getattr(spawner, "_log_name", "?"))
        return None


def template_vars() -> dict:
    """``c.JupyterHub.template_vars.update(batchspawner.hub.sessions.template_vars())``."""
    return {"hpc_sessions": user_sessions, "hpc_ended": user_ended}


async def queue_note(batch) -> str:
    """``; position 2 of 3 pending in partition x; estimated start 06:12 UTC`` for the progress stream.

    Reads the shared details poller, asking it for a round no older than ``session_interval``
    (one query for all jobs, shared with every other starting spawn)."""
    poller = batch.details_poller()
    if poller is None:
        return ""
    poller.watch(batch.job_id)
    try:
        await poller.refresh(max_age=batch.session_interval)
    except Exception:
        return ""
    det = poller.details.get(batch.job_id, {})
    pos = poller.positions.get(batch.job_id)
    words = []
    if pos:
        part = det.get("partition", "")
        words.append(f"position {pos[0]} of {pos[1]} pending" + (f" in partition {part}" if part else ""))
    start = det.get("start")
    if start and start > time.time() - 60:
        words.append(f"estimated start {clock(start)}")
    elif det:
        words.append("no start estimate from the scheduler yet")
    return ("; " + "; ".join(words)) if words else ""


# ---------------------------------------------------------------- a job that ended under a running server
# What the user reads when the job behind a running server ended (scancel, wall time, node failure):
# the scheduler's final state word in plain words. Other words show as "ended (WORD)"; anything
# that is not a plain state word (a tool's message) is never shown.
ENDED_WORDS = {
    "CANCELLED": "was cancelled (by you, an administrator or the scheduler)",
    "TIMEOUT": "reached its wall time",
    "DEADLINE": "reached its deadline",
    "NODE_FAIL": "lost its node (node failure)",
    "BOOT_FAIL": "could not boot its node",
    "PREEMPTED": "was preempted by the scheduler",
    "OUT_OF_MEMORY": "ran out of memory",
    "FAILED": "failed",
    "COMPLETED": "finished (its server exited)",
    "REMOVED": "was removed from the queue (condor_rm: by you, an administrator or a policy)",  # HTCondor
}
ENDED_ADVICE = {
    "TIMEOUT": "Start again, with a longer wall time if you need one.",
    "DEADLINE": "Start again, with a longer wall time if you need one.",
    "OUT_OF_MEMORY": "Start again with more memory.",
}
_STATE_WORD = re.compile(r"^[A-Za-z_]{1,24}$")


def ended_record(job_id: str, native: str, exit_code=None, at: float | None = None, served: bool | None = None) -> dict:
    """What a spawner keeps (in its state) when poll() sees its job end under the server.

    ``served``: False when the job ended before its server ever started (a failed or
    cancelled start): the pages then say that nothing ran, not that unsaved work is lost."""
    word = (native or "").split(" ")[0].rstrip("+").upper()  # sacct: "CANCELLED by 1006"
    record = {
        "job_id": str(job_id),
        "state": word if _STATE_WORD.match(word) else "",
        "exit_code": exit_code if isinstance(exit_code, int) else None,
        "at": float(time.time() if at is None else at),
    }
    if served is not None:
        record["served"] = bool(served)
    return record


def ended_facts(spawner) -> dict | None:
    """How the last job of a stopped server ended, for its pages; None if unknown or running again."""
    record = getattr(spawner, "last_ended", None)
    if not record:
        batch = batch_child(spawner)
        record = getattr(batch, "last_ended", None) if batch is not None and batch is not spawner else None
    if not record or not isinstance(record, dict) or not record.get("job_id"):
        return None
    if getattr(spawner, "active", False):
        return None  # a new start is under way or running: the old ending is history
    state = record.get("state") or ""
    what = ENDED_WORDS.get(state) or (f"ended ({state})" if state else "ended")
    code = record.get("exit_code")
    if state == "FAILED" and code:
        what = f"failed (exit code {code})"
    at = record.get("at")
    never_started = record.get("served") is False
    if never_started and state == "CANCELLED":
        what = "was cancelled (by an administrator or the batch system, not from your spawn page)"
    was_stopped = stopped.is_stopped(record)  # its server was stopped (batchspawner.hub.stopped)
    if was_stopped:
        state, what, never_started = "stopped", stopped.stopped_words(record), False
    user = getattr(getattr(spawner, "user", None), "name", "") or ""
    server = getattr(spawner, "name", "") or ""
    return {
        "server": server,
        "never_started": never_started,
        # where "Start again" goes (under the hub's base_url)
        "start_path": "spawn/" + _url_escape(user) + ("/" + _url_escape(server) if server else "") if user else "",
        "job_id": record["job_id"],
        "state": state,
        "what": what,
        "at": at,
        "at_text": clock(at),
        "stopped": was_stopped,
        "stopped_by": record.get("stopped_by", "") if was_stopped else "",
        "advice": ENDED_ADVICE.get(state, "Start again to get a new server.") if not never_started else (
            "Your server never ran, so no work was lost. Start again; if it keeps happening, ask your "
            "site's support (give them the job id)."),
    }


def _url_escape(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="@~")


def _stopped_with_an_ending(user) -> list:
    """The user's stopped servers that JupyterHub no longer holds in ``user.spawners`` (it drops a
    server's Spawner after a stop) but whose saved state says how their last job ended: loaded
    again (``user.spawners[name]`` builds it from the database), so their note shows."""
    orm_user = getattr(user, "orm_user", None)
    found = []
    for name, orm_spawner in sorted((getattr(orm_user, "orm_spawners", None) or {}).items()):
        if name in user.spawners or not isinstance(getattr(orm_spawner, "state", None), dict):
            continue
        if name and not getattr(user, "allow_named_servers", False):
            continue
        if orm_spawner.state.get("last_ended"):
            try:
                found.append((name, user.spawners[name]))
            except Exception:  # a page must render even if one server cannot be loaded
                log.exception("loading stopped server %s:%s", getattr(user, "name", "?"), name)
    return found


def user_ended(user) -> dict:
    """``{server name: ended_facts}`` for a hub user's stopped servers (``JupyterHub.template_vars``)."""
    if user is None or not hasattr(user, "spawners"):
        return {}
    out = {}
    for name, spawner in list(user.spawners.items()) + _stopped_with_an_ending(user):
        try:
            facts = ended_facts(spawner)
        except Exception:  # a page must render even if one note cannot
            log.exception("ended facts of %s:%s", getattr(user, "name", "?"), name)
            continue
        if facts:
            facts["user"] = user.name
            facts["relaunch"] = _relaunch_or_none(spawner)
            out[name or ""] = facts
    return out
