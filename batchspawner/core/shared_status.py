"""Shared status: the traits, and :class:`JobWatch`, the object that reads a job's state.

``SharedStatusTraits`` only declares the configuration (``shared_status``,
``batch_status_cmd``, ``status_exec_prefix``, the ``status_*interval`` timings,
``status_runner``). Like :class:`~batchspawner.commands.ssh.SubmitHostsMixin` it derives
from ``HasTraits``, so the traits are configured under the spawner classes
(``c.SlurmSpawner.status_interval``), never under a section of their own.

:class:`JobWatch` is owned by each spawner (``spawner.job_watch``) and is called
with the job id as an argument. It asks the :class:`~batchspawner.polling.status.StatusPoller`
shared by every spawner that would run the same status query, and confirms what
a shared answer cannot prove with the spawner's own per-job query. It uses only
the spawner's public surface: its traits, ``status_endpoint()`` (the runner,
environment and poller key of the shared query: one place that decides them),
``command_vars()``, ``parse_batch_status()``, ``query_job_status()``, ``log``.
"""

from __future__ import annotations

from traitlets import (
    Any,
    Bool,
    Float,
    HasTraits,
    TraitError,
    Unicode,
    default,
    validate,
)

from batchspawner.core.parsing import QUERY_TRAITS, configured, overridden_predicates
from batchspawner.commands.runner import split_command
from batchspawner.core.states import MISSING, JobState, JobStatus
from batchspawner.polling.status import StatusPoller


class SharedStatusTraits(HasTraits):
    """The shared-status configuration (see the module docstring); the behaviour is in JobWatch."""

    # ---------------------------------------------------------------- traits
    shared_status = Bool(
        True,
        help="""Read job states from one shared query per cluster instead of one query per job.

        All spawners with the same status command, cluster and query identity share a
        poller that asks the scheduler about every job in one command each
        ``status_interval`` (``batch_status_cmd``). Set False to query each job on its own
        with ``batch_query_cmd`` (as batchspawner 1.3 did). Schedulers without a
        ``batch_status_cmd`` always query per job.""",
    ).tag(config=True)

    batch_status_cmd = Unicode(
        "",
        help="""Command that prints the state of many jobs at once, for the shared poller.

        Formatted like the other commands, plus {job_ids} (comma-separated in one argument)
        and {job_id_args} (a token that is exactly this becomes one argument per job). Parsed
        by the scheduler module's parse_batch_status(); empty disables the shared poller.
        A job the answer does not list is confirmed with batch_query_cmd before it counts as
        ended, so an identity that cannot see every job costs queries, never servers.""",
    ).tag(config=True)

    status_exec_prefix = Unicode(
        "",
        help="""Prefix for the shared status query (it covers every user's jobs, so it runs as
        the hub's own user by default, not as one user). E.g. ``sudo -u slurmview`` where the
        scheduler hides other users' jobs.""",
    ).tag(config=True)

    status_interval = Float(
        10.0,
        help="""Seconds between shared status queries while jobs exist. One query covers all
        jobs, so this can be short. Backs off (doubling, up to status_max_interval) while
        queries fail, and stretches to 10x the query's own duration when it is slow.""",
    ).tag(config=True)

    status_min_interval = Float(
        0.5,
        help="Floor between two shared status queries: starting spawns asking for fresh states share one query.",
    ).tag(config=True)

    status_max_interval = Float(
        300.0, help="Ceiling of the shared status interval when backing off after failures."
    ).tag(config=True)

    @validate("status_min_interval")
    def _check_min_interval(self, proposal):
        if proposal["value"] <= 0:
            raise TraitError("BatchSpawnerBase.status_min_interval must be > 0")
        return proposal["value"]

    status_runner = Any(help="CommandRunner for the shared status query (injected in tests).")

    @default("status_runner")
    def _default_status_runner(self):
        # the identity rule (status_exec_prefix, submit_hosts, an ssh exec_prefix, else the hub)
        # lives in batchspawner/commands/policy.py
        return self.runner_policy.status_runner()

    def parse_batch_status(self, returncode, stdout, stderr, job_ids) -> dict:
        """{job_id: JobStatus} from batch_status_cmd's output; raise when it cannot be trusted.

        A job the answer does not list is ``states.missing()``: never evidence that it
        ended (the spawner confirms it with its own query). An error about the whole
        batch is never evidence about one job either: raise, or mark every job missing."""
        raise NotImplementedError(f"{type(self).__name__} has no batched status parser")


# kept for code that imported the old name
SharedStatusMixin = SharedStatusTraits


class JobWatch:
    """One spawner's view of its job's state (``spawner.job_watch``), called with the job id."""

    def __init__(self, spawner):
        self.spawner = spawner

    def shared(self) -> bool:
        return self.spawner.runner_policy.memo("shared_status", self._shared)

    def _shared(self) -> bool:
        sp = self.spawner
        # a 1.3 config with its own batch_query_cmd (and the default batch_status_cmd) is queried per
        # job, as 1.3 did: the shared query's parser would not read what the site's regexes expect
        return bool(sp.shared_status and sp.batch_status_cmd) and not shared_status_fits(sp)

    def poller(self) -> StatusPoller:
        """The poller shared by every spawner that would run the same status query."""
        # kept until a setting changes, and while the registry still holds it (stop_all empties it)
        key, poller = self.spawner.runner_policy.memo(
            "status_poller", self._poller, valid=lambda kp: StatusPoller._registry.get(kp[0]) is kp[1]
        )
        return poller

    def _poller(self):
        sp = self.spawner
        # key, runner and env come from one place (the runner policy, batchspawner/commands/policy.py);
        # the key includes the runner's identity, so a poller never runs as "whichever user polled last"
        runner, env, key = sp.status_endpoint()
        vars_ = sp.command_vars()
        status_cmd = sp.batch_status_cmd
        parse = sp.parse_batch_status
        cls, log = type(sp).__name__, sp.log

        async def query(job_ids):
            ids = {"job_ids": ",".join(job_ids), "job_id_args": list(job_ids)}
            argv = split_command(status_cmd, **(vars_ | ids))
            result = await runner.run(argv, env=env, check=False)
            try:
                answer = parse(result.returncode, result.stdout, result.stderr, job_ids)
            except (RuntimeError, ValueError):
                raise  # the parser's verdict: this answer cannot be trusted (an outage or garbage)
            except Exception as e:
                log.exception(
                    "%s.parse_batch_status raised %s: a bug in the parser, not a scheduler outage "
                    "(every job stays unknown this round). Output: %r",
                    cls, type(e).__name__, (result.stdout or result.stderr)[:300],
                )  # fmt: skip
                raise
            if answer and all(s.native == MISSING for s in answer.values()):
                # nothing listed: say why, for the poller's "suspect answer" message
                cause = describe_answer(argv[0], result)
                for status in answer.values():
                    status.reason = cause
            return answer

        return key, StatusPoller.get(
            key,
            query,
            interval=sp.status_interval,
            min_interval=sp.status_min_interval,
            max_interval=sp.status_max_interval,
            log=sp.log,
        )

    async def status(self, job_id, max_age=None) -> JobStatus:
        """The state of ``job_id``: from the shared poller (no older than ``max_age``) or one query.

        A job the shared answer does not list is asked about alone (as its user); that
        per-job query needs its own confirmation before it may say the job ended."""
        sp = self.spawner
        if not job_id:
            return JobStatus(JobState.FINISHED, native="no job")
        if not self.shared():
            return await sp.query_job_status()
        poller = self.poller()
        status = await poller.status(job_id, max_age, watcher=sp)
        if status.native != MISSING:
            return sp._record_status(status, job_id)
        confirmed = await sp.query_job_status()
        if poller.answer_kind == "partial" and confirmed.alive and confirmed.state is not JobState.UNKNOWN:
            log = sp.log.debug if poller.warned_missing else sp.log.warning
            poller.warned_missing = True
            log(
                "%s: the shared status query did not list job %s (it listed others), but the per-job "
                "query shows it %s. If this repeats, the status identity cannot see other users' jobs: "
                "set %s.status_exec_prefix to one that can (until then each such job costs one extra query).",
                sp._log_name,
                job_id,
                confirmed.describe(),
                type(sp).__name__,
            )
        return confirmed

    def forget(self, job_id):
        """Stop watching ``job_id`` (this spawner's interest only; others may still watch it)."""
        if job_id and self.shared():
            self.poller().unwatch(job_id, watcher=self.spawner)


def describe_answer(tool, result) -> str:
    """Why a batched answer listed no job at all, in words for the log."""
    name = str(tool).rsplit("/", 1)[-1]
    if result.returncode != 0:
        line = next((ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()), "")
        return f"{name} exited with {result.returncode}: {line[:200] or '(no output)'}"
    if not result.stdout.strip():
        return f"{name} printed nothing (exit 0)"
    return f"{name} listed none of the jobs asked about"


def shared_status_fits(spawner) -> str:
    """"" when the shared status query reads the same states as the per-job one, else why not."""
    if spawner.overrides_run_command():
        # the site's run_command is how this hub reaches the scheduler (often: it has no client
        # tools); the shared query would run beside it and fail, so each job is asked through it
        return "it overrides run_command"
    if configured(spawner, ("batch_status_cmd",)):
        return ""  # the site configured both: its choice
    predicates = overridden_predicates(spawner)
    if predicates:
        return "it overrides " + ", ".join(predicates)
    custom = configured(spawner, ("batch_query_cmd",))
    if not custom and getattr(spawner, "native_query_parser", False):
        custom = configured(spawner, QUERY_TRAITS)
    if custom:
        return "its " + ", ".join(custom) + " differ from the defaults the shared query's parser reads"
    return ""
