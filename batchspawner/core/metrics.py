"""Prometheus metrics, served by the hub's own ``/metrics`` (they live in the default registry)."""

from __future__ import annotations

import os
from collections import Counter

from prometheus_client import Counter as PCounter
from prometheus_client import Gauge, Histogram

COMMAND_SECONDS = Histogram(
    "batchspawner_command_duration_seconds",
    "Time taken by scheduler commands (sbatch, squeue, scancel, ...)",
    ["command"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
COMMAND_FAILURES = PCounter(
    "batchspawner_command_failures_total",
    "Scheduler commands that failed (non-zero exit, timeout, could not start)",
    ["command", "kind"],
)
JOBS = Gauge(
    "batchspawner_jobs",
    "Jobs of this hub by state, as the shared status queries last saw them (summed over the pollers of a spawner class)",
    ["poller", "state"],
)
STATUS_ANSWERS = PCounter(
    "batchspawner_status_answers_total",
    "Shared status answers by kind: complete, partial (some jobs not listed), suspect (none of "
    "two or more jobs listed: no evidence, every job kept and checked alone), failed (error, "
    "timeout, garbage: every job kept as unknown)",
    ["poller", "kind"],
)
STATUS_RECOVERIES = PCounter(
    "batchspawner_status_recoveries_total",
    "Times shared status answers became complete again after failed or suspect rounds",
    ["poller"],
)
CANCELS_BEFORE_FORGET = PCounter(
    "batchspawner_cancels_before_forget_total",
    "Cancels sent before a job id left the hub's state, by result (accepted, failed: kept in uncancelled_jobs)",
    ["result"],
)
QUEUE_WAIT_SECONDS = Histogram(
    "batchspawner_queue_wait_seconds",
    "Time from submission until the job ran",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
POLL_ROUND_SECONDS = Histogram(
    "batchspawner_status_round_seconds",
    "Time taken by one shared status query round",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNKNOWN_TOO_LONG = PCounter(
    "batchspawner_unknown_grace_exceeded_total",
    "Times a job stayed in state unknown longer than unknown_grace (the server was kept)",
)


def command_name(argv) -> str:
    """A low-cardinality label for a command: the tool's base name (never its arguments)."""
    return os.path.basename(str(argv[0]))[:40] if argv else "unknown"


def set_job_counts(label, counts):
    """Set the jobs gauge of one spawner class from {state: count} (all its pollers summed)."""
    for state in ("pending", "running", "finished", "unknown"):
        JOBS.labels(poller=label, state=state).set(counts.get(state, 0))


def record_job_states(key, statuses):
    """Gauge from one list of statuses (kept for callers outside the poller)."""
    label = str(key[0]) if isinstance(key, tuple) and key else str(key)
    set_job_counts(label, Counter(s.state.value for s in statuses))


SPAWN_PHASES = ("submit", "running", "port", "listening", "ready")
SPAWN_PHASE_SECONDS = Histogram(
    "batchspawner_spawn_phase_seconds",
    "Duration of each phase of a spawn, from the end of the previous one: submit (start() until "
    "the scheduler took the job), running (until the job was seen running or reported), port "
    "(until the job reported the port its server listens on), listening (until the hub connected "
    "to it), ready (until JupyterHub's HTTP check passed)",
    ["phase"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 600),
)
