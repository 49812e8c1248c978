"""QueryParsingMixin: turn one per-job scheduler query into a JobStatus.

Holds the ``state_*`` regex traits of :class:`~batchspawner.spawner.BatchSpawnerBase`
(``state_pending_re``, ``state_running_re``, ``state_finished_re``,
``state_gone_re``, ``state_unknown_re``, ``state_exechost_re``,
``state_exechost_exp``, ``empty_query_means_finished``) and the default
scheduler hooks that read a job's state: ``parse_query_output``,
``state_gethost``, ``pending_reason``, ``start_blocker``, ``explain_reason``.
A scheduler module overrides the regexes (class attributes) and, where its
output needs it, these small hooks.

It is a separate module because parsing is one concern, kept apart from the
commands that produce the output (spawner.py) and from the shared status
parser (each scheduler's ``parse_batch_status``). Only the submit output's
``parse_job_id`` stays in spawner.py, next to the submit. Like
:class:`~batchspawner.commands.ssh.SubmitHostsMixin` the mixin derives from
``HasTraits``: its traits are configured under the spawner classes.
"""

from __future__ import annotations

import re

from traitlets import Bool, HasTraits, Unicode

from batchspawner.commands.runner import first_line as _first_line
from batchspawner.core.states import GONE_CLAIM, JobState, JobStatus, gone_claim, silent_claim


class QueryParsingMixin(HasTraits):
    """The state regexes and the default query-parsing hooks (see the module docstring)."""

    # ---------------------------------------------------------------- states
    state_pending_re = Unicode(
        "", help="Regex that matches query output when the job is pending."
    ).tag(config=True)
    state_running_re = Unicode(
        "", help="Regex that matches query output when the job is running."
    ).tag(config=True)
    state_finished_re = Unicode(
        "",
        help="""Regex that matches query output when the job has ended.

        Only this (or the job vanishing, see state_gone_re) counts as finished: output
        nothing matches is *unknown*, which keeps the server alive.""",
    ).tag(config=True)
    state_gone_re = Unicode(
        "",
        help="""Regex on a failed per-job query's output meaning the scheduler does not know the job.

        A claim, not yet proof: the job counts as ended only when ``batch_confirm_cmd`` (a
        second, independent source, e.g. ``scontrol show job`` or a history command) agrees,
        or, where no such command is set, on this per-job answer alone. Never applied to an
        error about a whole batch of jobs.""",
    ).tag(config=True)
    state_unknown_re = Unicode(
        "",
        help="Regex on query output meaning the scheduler could not answer (state unknown).",
    ).tag(config=True)
    state_exechost_re = Unicode(
        "", help="Regex with one group that extracts the execution host from query output."
    ).tag(config=True)
    state_exechost_exp = Unicode(
        "",
        help="""If set, the host is the state_exechost_re match expanded with this template
        (``match.expand``, as in batchspawner 1.3), e.g. ``\\1.ib.cluster`` to map node names
        the hub cannot resolve; if empty, the regex's first group.""",
    ).tag(config=True)
    empty_query_means_finished = Bool(
        False,
        help="""Whether a per-job query that succeeds and prints nothing may mean the job ended.

        Kept for batchspawner 1.3 configurations, with a safer meaning: an empty answer is
        silence, never proof. When True it only makes the spawner ask ``batch_confirm_cmd``
        (the second source), which must show the job ended or unknown; with no
        ``batch_confirm_cmd`` the job stays *unknown* (alive) and a warning names this
        trait. When False an empty answer is simply *unknown*.""",
    ).tag(config=True)

    # ---------------------------------------------------------------- scheduler hooks
    # The four predicates of batchspawner 1.3's API. A subclass that overrides any of them decides
    # the state with them (predicate_status below); the defaults read the state_*_re traits.
    def state_ispending(self):
        """1.3 API: does ``job_status`` (the last query's output) match state_pending_re?"""
        return bool(self.job_status and self.state_pending_re and re.search(self.state_pending_re, self.job_status, re.M))

    def state_isrunning(self):
        """1.3 API: does ``job_status`` match state_running_re?"""
        return bool(self.job_status and self.state_running_re and re.search(self.state_running_re, self.job_status, re.M))

    def state_isunknown(self):
        """1.3 API: does ``job_status`` match state_unknown_re?"""
        return bool(self.job_status and self.state_unknown_re and re.search(self.state_unknown_re, self.job_status, re.M))

    def state_gethost(self, output=None):
        """The execution host in ``output`` (default: job_status) by state_exechost_re/_exp."""
        output = self.job_status if output is None else output
        if not self.state_exechost_re:
            return ""
        return expand_host(self.state_exechost_re, self.state_exechost_exp, output) or ""

    def native_parse(self) -> bool:
        """Whether a scheduler module's own parser (XML, JSON...) reads the query output.

        Only when the site kept the module's batch_query_cmd and state_*_re defaults: a configured
        query or regex is honoured through the regex parser (batchspawner 1.3's semantics)."""
        return native_parsing(self)

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        """Turn one query's result into a JobStatus using the state_* regexes."""
        out = stdout.strip()
        both = f"{stdout}\n{stderr}"
        if self.state_unknown_re and re.search(self.state_unknown_re, both, re.M):
            return JobStatus(JobState.UNKNOWN, native=out[:80], reason=_first_line(stderr or stdout))
        if returncode != 0:
            if self.state_gone_re and re.search(self.state_gone_re, both, re.M):
                return gone_claim(_first_line(stderr or stdout) or "the per-job query reports no such job")
            return JobStatus(JobState.UNKNOWN, reason=f"query failed ({returncode}): {_first_line(stderr)}")
        if not out:
            if self.empty_query_means_finished:
                return silent_claim("the per-job query printed nothing")
            return JobStatus(JobState.UNKNOWN, reason="query printed nothing")
        native = out.split()[0] if out.split() else ""
        if self.state_running_re and re.search(self.state_running_re, out, re.M):
            return JobStatus(JobState.RUNNING, host=self.state_gethost(out), native=native)
        if self.state_pending_re and re.search(self.state_pending_re, out, re.M):
            return JobStatus(JobState.PENDING, native=native, reason=self.pending_reason(out))
        if self.state_finished_re and re.search(self.state_finished_re, out, re.M):
            return JobStatus(JobState.FINISHED, native=native)
        return JobStatus(JobState.UNKNOWN, native=native, reason=f"unrecognised query output: {out[:120]!r}")

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """The second source's verdict (``batch_confirm_cmd``) on a job the per-job query did not find.

        FINISHED when it shows a terminal state or also says "no such job"; the job's state
        when it shows the job alive; UNKNOWN when it cannot tell (its silence proves nothing
        either). By default parsed like the per-job query."""
        status = self.parse_query_output(returncode, stdout, stderr)
        if status.native == GONE_CLAIM:
            if status.extra.get("silent"):
                return JobStatus(JobState.UNKNOWN, reason="the confirming query printed nothing")
            return JobStatus(JobState.FINISHED, native="gone", reason=status.reason)
        return status

    def pending_reason(self, output):
        return ""

    def start_blocker(self, status) -> str:
        """Why a job the scheduler still keeps cannot start until someone acts; "" when it can.

        Asked only while a spawn waits: a non-empty answer fails the spawn at once with it
        (the hub then stops the server, which cancels the job) instead of waiting out
        start_timeout. poll() never asks: only FINISHED ends a running server, and a job
        that is held after its server started may still be released.
        """
        return ""

    def explain_reason(self, reason):
        """The scheduler's pending reason with a few words a user understands (per scheduler)."""
        return reason

    def requeue_cause(self, reason):
        """Why a job that ran is pending again, in words, from its pending reason (per scheduler).

        Shown to the user when a ready server's job goes back to the queue (issue 24)."""
        return f"requeued; {self.explain_reason(reason)}" if reason else "requeued"


# ------------------------------------------------------------------ which parser reads the answer
def expand_host(regex, exp, output):
    """The host rule of ``state_exechost_re``/``state_exechost_exp`` (batchspawner 1.3's): search
    ``regex``; with ``exp`` the match is expanded (``match.expand``), else the first group.
    None when the regex does not match."""
    match = re.search(regex, output or "", re.M)
    if not match:
        return None
    if exp:
        return match.expand(exp).strip()
    return (match.group(1) if match.re.groups else match.group(0)).strip()


QUERY_TRAITS = ("batch_query_cmd", "state_pending_re", "state_running_re", "state_finished_re", "state_exechost_re")
PREDICATES = ("state_ispending", "state_isrunning", "state_isunknown", "state_gethost")


def configured(spawner, names) -> list[str]:
    """Which of ``names`` differ from the class defaults (set by the site)."""
    return [n for n in names if getattr(spawner, n) != spawner.trait_defaults(n)]


def overridden_predicates(spawner) -> list[str]:
    """The state predicates (``state_ispending``...) a subclass overrides: they then decide the state."""
    cls = type(spawner)
    return [name for name in PREDICATES if getattr(cls, name, None) is not getattr(QueryParsingMixin, name)]


def native_parsing(spawner) -> bool:
    """A scheduler module's structured parser (XML, JSON...) may read the query output: only when
    the query command and the state regexes are the module's defaults and no predicate is
    overridden. Otherwise the configured regexes decide."""
    return not configured(spawner, QUERY_TRAITS) and not overridden_predicates(spawner)


def predicate_status(spawner, returncode, stdout, stderr) -> JobStatus:
    """The state as a subclass's predicates see it (``job_status`` = the query's output).

    Running, else pending, else unknown, else ended (batchspawner 1.3's order). One change:
    a query that *failed* and that no predicate recognises is unknown, not ended (only a
    scheduler's answer is evidence that a job ended).
    """
    both = f"{stdout}\n{stderr}"
    if returncode != 0 and spawner.state_gone_re and re.search(spawner.state_gone_re, both, re.M):
        return JobStatus(JobState.FINISHED, native="gone")
    spawner.job_status = stdout.strip() if returncode == 0 else (stderr.strip() or stdout.strip())
    if spawner.state_isrunning():
        return JobStatus(JobState.RUNNING, host=spawner.state_gethost() or "")
    if spawner.state_ispending():
        return JobStatus(JobState.PENDING)
    if spawner.state_isunknown():
        return JobStatus(JobState.UNKNOWN, reason="state_isunknown()")
    if returncode != 0:
        return JobStatus(JobState.UNKNOWN, reason=f"query failed ({returncode}): {stderr.strip()[:200]}")
    return JobStatus(JobState.FINISHED, reason="neither pending nor running (state_is* predicates)")
