"""SharedStatusMixin: job states from one shared scheduler query per cluster.

Holds the shared-status part of :class:`~batchspawner.spawner.BatchSpawnerBase`:
its traits (``shared_status``, ``batch_status_cmd``, ``status_exec_prefix``, the
``status_*interval`` timings, ``status_runner``) and the methods that read a
job's state through the :class:`~batchspawner.status.StatusPoller` shared by
every spawner that would run the same status query, or fall back to one
per-job query (``job_status_now``, ``uses_shared_status``, ``status_poller``,
``parse_batch_status``, ``_forget_job``).

It is a separate module because it is one concern (batching many spawners'
queries into one) that the submit/start/stop flow only calls into. The mixin
is not usable alone: it relies on what BatchSpawnerBase provides (``job_id``,
``query_job_status``, ``_record_status``, ``command_vars``, ``command_env``,
``_make_runner``, ``_log_name``, ``log``). Like
:class:`~batchspawner.ssh.SubmitHostsMixin` it derives from ``HasTraits``, so
its traits are declared here but configured under the spawner classes
(``c.SlurmSpawner.status_interval``), never under a section of their own.
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

from .runner import split_command
from .states import MISSING, JobState, JobStatus
from .status import StatusPoller


class SharedStatusMixin(HasTraits):
    """Shared status traits and the methods that ask the shared poller (see the module docstring)."""

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
        # lives in batchspawner/runners.py
        return self.runner_policy.status_runner()

    # ---------------------------------------------------------------- job state
    async def job_status_now(self, max_age=None) -> JobStatus:
        """This job's state, from the shared poller (no older than ``max_age``) or one query."""
        if not self.job_id:
            return JobStatus(JobState.FINISHED, native="no job")
        if not self.uses_shared_status():
            return await self.query_job_status()
        poller = self.status_poller()
        status = await poller.status(self.job_id, max_age)
        if status.native == MISSING:
            # not listed is not proof of an end: ask about this job alone, as its user
            confirmed = await self.query_job_status()
            if confirmed.alive and confirmed.state is not JobState.UNKNOWN:
                log = self.log.debug if poller.warned_missing else self.log.warning
                poller.warned_missing = True
                log(
                    "%s: the shared status query did not list job %s, but the per-job query shows it %s. "
                    "If this repeats, the status identity cannot see other users' jobs: set "
                    "%s.status_exec_prefix to one that can (until then each such job costs one extra query).",
                    self._log_name,
                    self.job_id,
                    confirmed.describe(),
                    type(self).__name__,
                )
            return confirmed
        return self._record_status(status)

    def uses_shared_status(self):
        from .compat import shared_status_fits

        return bool(self.shared_status and self.batch_status_cmd) and not shared_status_fits(self)

    def status_poller(self) -> StatusPoller:
        """The poller shared by every spawner that would run the same status query."""
        # key, runner and env come from one place (runners.py); the key includes the runner's
        # identity, so a poller never runs as "whichever user polled last"
        key, runner, env = self.runner_policy.status_endpoint()
        vars_ = self.command_vars()
        cls, log = type(self).__name__, self.log

        async def query(job_ids):
            ids = {"job_ids": ",".join(job_ids), "job_id_args": list(job_ids)}
            argv = split_command(self.batch_status_cmd, **(vars_ | ids))
            result = await runner.run(argv, env=env, check=False)
            try:
                return self.parse_batch_status(result.returncode, result.stdout, result.stderr, job_ids)
            except (RuntimeError, ValueError):
                raise  # the parser's verdict: this answer cannot be trusted (an outage or garbage)
            except Exception as e:
                log.exception(
                    "%s.parse_batch_status raised %s: a bug in the parser, not a scheduler outage "
                    "(every job stays unknown this round). Output: %r",
                    cls, type(e).__name__, (result.stdout or result.stderr)[:300],
                )  # fmt: skip
                raise

        return StatusPoller.get(
            key,
            query,
            interval=self.status_interval,
            min_interval=self.status_min_interval,
            max_interval=self.status_max_interval,
            log=self.log,
        )

    def parse_batch_status(self, returncode, stdout, stderr, job_ids) -> dict:
        """{job_id: JobStatus} from batch_status_cmd's output; raise when it cannot be trusted."""
        raise NotImplementedError(f"{type(self).__name__} has no batched status parser")

    def _forget_job(self):
        if self.job_id and self.uses_shared_status():
            self.status_poller().unwatch(self.job_id)
