"""Job states and what each one means to the hub."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class JobState(str, enum.Enum):
    """The four states every scheduler's answer is reduced to.

    ``UNKNOWN`` means "we could not tell" (the query failed, timed out or
    printed something we do not understand). The hub treats it as alive: a
    scheduler hiccup must never drop a running server or orphan its job.
    Only positive evidence (the scheduler answered and the job is gone or
    ended) gives ``FINISHED``.
    """

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    UNKNOWN = "unknown"

    @property
    def alive(self) -> bool:
        return self is not JobState.FINISHED


@dataclass
class JobStatus:
    """One job as the scheduler last described it."""

    state: JobState
    host: str = ""
    native: str = ""  # the scheduler's own state word, e.g. COMPLETING
    reason: str = ""  # pending reason or error explanation
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state.alive

    def describe(self) -> str:
        words = [self.native or self.state.value]
        if self.host:
            words.append(f"on {self.host}")
        if self.reason:
            words.append(f"({self.reason})")
        return " ".join(words)


UNKNOWN = JobStatus(JobState.UNKNOWN)

# ``native`` of a job that a successful batched status answer did not list. Not
# evidence that it ended: the status identity may not see every user's jobs
# (Slurm PrivateData, Torque query_other_jobs) or the job may have been purged.
# The spawner confirms with its own per-job query before believing either.
MISSING = "missing from the shared status answer"


def missing(reason="not listed by the shared status query") -> JobStatus:
    return JobStatus(JobState.UNKNOWN, native=MISSING, reason=reason)


# ``native`` of a per-job query that said "no such job" (or, with
# ``empty_query_means_finished``, printed nothing). A claim, not yet evidence: the
# spawner asks a second, independent source (``batch_confirm_cmd``) and ends the
# server only when that source also says the job ended or is unknown.
GONE_CLAIM = "not found by the per-job query"


def gone_claim(reason="the per-job query reports no such job") -> JobStatus:
    return JobStatus(JobState.UNKNOWN, native=GONE_CLAIM, reason=reason)


def silent_claim(reason) -> JobStatus:
    """A query that succeeded but listed nothing for the job: silence, never proof on its own.

    The spawner asks ``batch_confirm_cmd``; without one the job stays unknown (alive)."""
    claim = gone_claim(reason)
    claim.extra["silent"] = True
    return claim
