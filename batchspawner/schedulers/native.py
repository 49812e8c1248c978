"""Small shared pieces for scheduler modules that parse structured output (XML, JSON, key = value).

The state machine stays in :class:`~batchspawner.spawner.BatchSpawnerBase`; a
scheduler module turns one query result into a :class:`JobStatus` with these.
"""

from __future__ import annotations

import re

from batchspawner.commands.runner import first_line
from batchspawner.core.states import JobState, JobStatus, silent_claim

# Scheduler answers are small; anything far larger is not a status report.
MAX_QUERY_OUTPUT = 1_000_000


def failed_query(spawner, returncode, stdout, stderr):
    """The base class verdict when the query failed or printed a known error, else None.

    A non-zero exit is *finished* only when ``state_gone_re`` matches (the
    scheduler says it does not know the job), else *unknown*.
    """
    both = f"{stdout}\n{stderr}"
    if returncode != 0 or (spawner.state_unknown_re and re.search(spawner.state_unknown_re, both, re.M)):
        from batchspawner.spawner import BatchSpawnerBase

        return BatchSpawnerBase.parse_query_output(spawner, returncode, stdout, stderr)
    if len(stdout) > MAX_QUERY_OUTPUT:
        return JobStatus(JobState.UNKNOWN, reason=f"query printed {len(stdout)} bytes; not a status report")
    return None


def status_from_native(native, table, host="", exit_code=None, reason=""):
    """Map a scheduler's own state word through ``table`` ({word: JobState})."""
    state = table.get(native)
    if state is None:
        return JobStatus(JobState.UNKNOWN, native=native, reason=f"unrecognised job state {native!r}")
    if state is not JobState.RUNNING:
        host = ""
    if state is not JobState.FINISHED:
        exit_code = None
    if state is not JobState.PENDING and state is not JobState.FINISHED:
        reason = ""
    return JobStatus(state, host=host, native=native, exit_code=exit_code, reason=reason)


def mapped_host(spawner, host, output):
    """Apply ``state_exechost_exp`` (batchspawner 1.3: ``match.expand`` of state_exechost_re on the
    raw output) when set; the native host when the regex does not match."""
    if spawner.state_exechost_exp and spawner.state_exechost_re:
        from batchspawner.core.parsing import expand_host

        return expand_host(spawner.state_exechost_re, spawner.state_exechost_exp, output) or host
    return host


def regex_parse(spawner, returncode, stdout, stderr):
    """The state_*_re verdict (the site configured its own query or regexes), else None."""
    if spawner.native_parse():
        return None
    from batchspawner.core.parsing import QueryParsingMixin

    return QueryParsingMixin.parse_query_output(spawner, returncode, stdout, stderr)


def parse_one_job(spawner, returncode, stdout, stderr, *, what, read, missing=None, first=None, configured=None):
    """The one per-job parse skeleton of the structured-output schedulers (Torque, PBS, Moab, LSF,
    HTCondor, OAR): each module gives only what is its own.

    1. A site's own query or regexes (batchspawner 1.3's ``state_*_re``) decide (:func:`regex_parse`);
       ``configured(status)`` may add to that verdict (HTCondor marks an empty answer).
    2. ``first(returncode, stdout, stderr)``: a verdict the scheduler gives before the generic rule
       (LSF's JSON "job not found" with a non-zero exit), or None.
    3. A failed command, a known error text or an oversized answer: the base verdict
       (:func:`failed_query`: *unknown*, or a "gone" claim only through ``state_gone_re``).
    4. ``read(stdout)``: this job's :class:`JobStatus`, or None when the answer does not list the
       job (then ``missing``, a claim that a second source must confirm). An answer ``read`` cannot
       make sense of (ValueError) is ``what`` garbled: *unknown* unless the module's regexes match,
       never an end.
    """
    verdict = regex_parse(spawner, returncode, stdout, stderr)
    if verdict is not None:
        return configured(verdict) if configured is not None else verdict
    if first is not None:
        verdict = first(returncode, stdout, stderr)
        if verdict is not None:
            return verdict
    verdict = failed_query(spawner, returncode, stdout, stderr)
    if verdict is not None:
        return verdict
    try:
        verdict = read(stdout)
    except ValueError:
        return garbled(stdout, what, spawner)
    return missing if verdict is None else verdict


def to_int(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def garbled(output, what, spawner=None):
    """Output the structured parser cannot read: the module's state regexes decide, else unknown.

    The regexes (batchspawner 1.3's, per module) match a fragment of the real output, e.g.
    ``<job_state>R</job_state>``; a site's wrapper or a 1.3 test may print only that fragment.
    Only a running, pending or finished match counts; anything else stays unknown."""
    if not output.strip():
        return silent_claim(f"the {what} was empty")
    if spawner is not None:
        from batchspawner.core.parsing import QueryParsingMixin

        status = QueryParsingMixin.parse_query_output(spawner, 0, output, "")
        if status.state is not JobState.UNKNOWN:
            return status
    return JobStatus(JobState.UNKNOWN, reason=f"could not read the {what}: {output.strip()[:120]!r}")


def check_batch_answer(spawner, returncode, stdout, stderr, tool):
    """Raise RuntimeError unless a batched status answer can be trusted.

    Trusted: the scheduler answered (no ``state_unknown_re`` match) and either
    exited 0 or complained only about jobs it does not know (every non-blank
    stderr line matches ``state_gone_re``, as ``qstat ID1 ID2`` does when one of
    the ids is gone). The poller then marks every job *unknown* and backs off.
    """
    both = f"{stdout}\n{stderr}"
    if spawner.state_unknown_re and re.search(spawner.state_unknown_re, both, re.M):
        raise RuntimeError(f"{tool} cannot reach the scheduler: {first_line(both)[:200] or '(no output)'}")
    if returncode != 0:
        complaints = [line for line in stderr.splitlines() if line.strip()]
        gone = spawner.state_gone_re
        if not complaints or not gone or not all(re.search(gone, line) for line in complaints):
            raise RuntimeError(f"{tool} exited with {returncode}: {first_line(stderr or stdout)[:200] or '(no output)'}")


def short_id(job_id):
    """``123.server.example.org`` -> ``123`` (PBS-family ids as qstat and qsub print them)."""
    return str(job_id).split(".")[0]


# ---------------------------------------------------------------- second sources (history commands)
def history_ended(tool, exit_code=None, detail=""):
    """A history command's positive record that the job ended (the per-job query no longer knew it)."""
    said = f"{tool} shows it ended" + (f" with exit status {exit_code}" if exit_code is not None else "")
    return JobStatus(
        JobState.FINISHED, native="gone", exit_code=exit_code, reason=f"{said}{': ' + detail if detail else ''}"
    )


def history_unknown(tool, returncode, stdout, stderr, why=""):
    """A history command that could not show the job ended (error, no record, garbage): keep the job."""
    said = (stderr or stdout).strip().splitlines()
    first = said[0][:160] if said else "no output"
    why = why or (f"{tool} exited with {returncode}: {first}" if returncode else f"{tool} has no end record: {first!r}")
    return JobStatus(JobState.UNKNOWN, reason=why)
