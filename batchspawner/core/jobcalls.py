"""The job's scheduler calls: submit, query, confirm, cancel, read the log; who runs them (the runner policy).

:class:`JobCalls` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. Every command goes through
the spawner's runners (:mod:`batchspawner.commands`); what a query answer means is decided by
:mod:`batchspawner.core.parsing` and the scheduler module, never by a command's exit code alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import time

from batchspawner.core.script import JobScript
from batchspawner.core import accounts, joblogs, metrics
from batchspawner.core.options import forget_user_options
from batchspawner.core.parsing import overridden_predicates, predicate_status
from batchspawner.commands.runner import CommandError, CommandRunner, first_line as _first_line, split_command
from batchspawner.commands.policy import RunnerPolicy
from batchspawner.core.states import GONE_CLAIM, JobState, JobStatus
from batchspawner.core.errors import (
    AccountRefused, SpawnFailed, SubmitRefused, _SITE_TROUBLE, clean_scheduler_message,
)


class JobCalls:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    async def check_account(self):
        """Refuse (HTTP 403) a hub user that is a system account, before any command runs."""
        name = self.user.name
        uid = await asyncio.get_running_loop().run_in_executor(None, accounts.lookup_uid, name)
        problem = accounts.account_problem(
            name, uid, min_uid=self.min_uid, denied=self.denied_users,
            runs_elsewhere=bool(self.submit_hosts) or RunnerPolicy.runs_elsewhere(self.runner),
            allow_unknown=self.allow_accounts_unknown_here, cls=type(self).__name__,
        )
        if problem:
            self.log.warning("%s: refused before any command ran: %s", self._log_name, problem)
            raise AccountRefused(f"This account cannot start servers: {problem}")

    @property
    def runner_policy(self) -> RunnerPolicy:
        """Who runs which command, as whom, with which environment (batchspawner/commands/policy.py)."""
        policy = self.__dict__.get("_runner_policy")
        if policy is None:
            policy = self.__dict__["_runner_policy"] = RunnerPolicy(self)
        return policy

    def _make_runner(self, prefix_template):
        """A local runner with this prefix (formatted with the request variables and identity)."""
        policy = self.runner_policy
        if self.submit_hosts:
            return policy.user_runner()
        return policy.local_runner(split_command(prefix_template, **policy.prefix_vars()) if prefix_template else [])

    @property
    def _log_name(self):
        return f"{self.user.name}:{self.name}" if self.name else self.user.name

    # ---------------------------------------------------------------- scheduler hooks
    def parse_job_id(self, output):
        """Job id from the submit command's stdout."""
        text = output.strip()
        match = re.search(r"(\d+(?:\.[\w.-]+)?)", text)
        if not match:
            raise SpawnFailed(f"Could not find a job id in the submit output: {text[:200]!r}")
        return match.group(1)

    # ---------------------------------------------------------------- scheduler calls
    async def submit_batch_script(self, user_values=None):
        if type(self)._get_batch_script is not JobScript._get_batch_script:
            script = await self._get_batch_script(**self._checked_script_vars(user_values))  # a 1.3 subclass
        else:
            script = self.render_script(user_values)
        argv = split_command(self.batch_submit_cmd, **(self.command_vars() | (user_values or {})))
        env = self.runner_policy.submit_env()
        self.log.info("%s: submitting job: %s", self._log_name, shlex.join(self.runner.build_argv(argv)))
        try:
            result = await self.runner.run(argv, env=env, stdin=script, cwd=await self._submit_cwd())
        except CommandError as e:
            raise self._submit_error(e, user_values) from e
        return self.parse_job_id(result.stdout)

    def _submit_error(self, error, user_values):
        """Whose fault a failed submit is: the user's (HTTP 400) or the site's (SpawnFailed, 500).

        The user's when the user chose values (``user_options``, or a wrapper's fields in
        ``chosen_by_user``) and the scheduler itself answered with a refusal: the command ran
        to an exit code (no timeout), the message is not from sudo/ssh and does not say the
        scheduler is unreachable or this host is misconfigured (``_SITE_TROUBLE``). The user then reads the scheduler's own reason, cleaned
        (no tool prefix, path or token), and the refused options are forgotten so the next
        plain Start does not repeat them. Anything else is the site's to fix.
        """
        self.log.error("%s: submit failed: %s", self._log_name, error)
        reason = clean_scheduler_message(error.stderr) or clean_scheduler_message(error.stdout)
        first = (_first_line(error.stderr) or _first_line(error.stdout)).lower()
        answered = error.returncode is not None and not error.reason and bool(reason)
        not_the_scheduler = (
            first.startswith(("sudo:", "ssh:", "sh:", "bash:"))
            or bool(_SITE_TROUBLE.search(error.output))
            or bool(self.state_unknown_re and re.search(self.state_unknown_re, error.output, re.M))
        )
        chosen = dict(user_values or {})
        chosen.update({k[4:] if k.startswith("req_") else k: v for k, v in self.chosen_by_user.items()})
        if chosen and answered and not not_the_scheduler:
            listed = ", ".join(f"{k}={v}" for k, v in sorted(chosen.items()))
            refused = SubmitRefused(
                f"The batch system refused the job with the options you chose ({listed}): {reason}. "
                "Change the options and start again."
            )
            forget_user_options(self, refused)
            return refused
        return SpawnFailed(
            "The batch system refused the job: "
            + (reason or error.reason or f"exit code {error.returncode}")
            + ". Check the requested resources or ask your site's support."
        )

    async def _submit_cwd(self):
        if self.runner.remote_shell:
            return None
        home = self.req_homedir
        # the home directory may be on NFS: stat it in a thread, not on the event loop
        if home and await asyncio.to_thread(os.path.isdir, home):
            return home
        return None

    async def query_job_status(self, job_id=None) -> JobStatus:
        """Ask the scheduler about one job (default: this spawner's), with one command."""
        job_id = self.job_id if job_id is None else job_id
        if not job_id:
            return JobStatus(JobState.FINISHED, native="no job")
        argv = split_command(self.batch_query_cmd, **self.command_vars(job_id))
        try:
            result = await self.query_runner.run(argv, env=self.runner_policy.env_for(self.query_runner), check=False)
        except CommandError as e:  # timeout or could not start
            status = JobStatus(JobState.UNKNOWN, reason=e.reason or str(e))
        else:
            status = self.read_query_result(result.returncode, result.stdout, result.stderr)
        if status.native == GONE_CLAIM:
            status = await self._confirm_gone(status, job_id)
        return self._record_status(status, job_id)

    _warned_silent = False  # empty_query_means_finished explained once per process

    async def _confirm_gone(self, claim: JobStatus, job_id: str) -> JobStatus:
        """Ask the second source (batch_confirm_cmd) about a job the per-job query did not find."""
        silent = claim.extra.get("silent")
        if silent and not JobCalls._warned_silent:
            JobCalls._warned_silent = True
            self.log.warning(
                "%s.empty_query_means_finished is True: an empty per-job answer no longer ends a server "
                "by itself; it is only a reason to ask %s.batch_confirm_cmd (%s)",
                type(self).__name__,
                type(self).__name__,
                repr(self.batch_confirm_cmd) if self.batch_confirm_cmd else "not set: such jobs stay unknown",
            )
        if not self.batch_confirm_cmd or self.overrides_run_command():
            # (a 1.3 run_command knows submit, query and cancel only: it is sent no confirming query)
            if silent and job_id == self._cancel_accepted_for:
                # stop() sent this job's cancel and the scheduler accepted it: not listed any more
                # right after that is the evidence there is (1.3's stop() took it as the end)
                return JobStatus(JobState.FINISHED, native="gone", reason="not listed after its cancel was accepted")
            if silent:
                return JobStatus(JobState.UNKNOWN, reason="the per-job query printed nothing")
            return JobStatus(JobState.FINISHED, native="gone", reason=claim.reason)
        argv = split_command(self.batch_confirm_cmd, **self.command_vars(job_id))
        try:
            result = await self.query_runner.run(argv, env=self.runner_policy.env_for(self.query_runner), check=False)
        except CommandError as e:
            return JobStatus(JobState.UNKNOWN, reason=f"{claim.reason}; the confirming query failed: {e.reason or e}")
        status = self.parse_confirm_output(result.returncode, result.stdout, result.stderr)
        if status.state is JobState.FINISHED:
            status.reason = status.reason or f"{claim.reason}, and {argv[0]} agrees"
        elif status.state is JobState.UNKNOWN:
            status.reason = f"{claim.reason}; {argv[0]} could not confirm: {status.reason}"
        else:
            self.log.warning(
                "%s: the per-job query did not find job %s (%s), but %s shows it %s: kept",
                self._log_name,
                job_id,
                claim.reason,
                argv[0],
                status.describe(),
            )
        return status

    def read_query_result(self, returncode, stdout, stderr) -> JobStatus:
        """One query's output as a JobStatus: 1.3 predicates if a subclass overrides them, else
        parse_query_output. A parser that raises is a bug, logged as one (never a scheduler outage)."""
        try:
            if overridden_predicates(self):
                return predicate_status(self, returncode, stdout, stderr)
            return self.parse_query_output(returncode, stdout, stderr)
        except Exception as e:
            self.log.exception(
                "%s: reading the answer of %s raised %s: a bug in the query parser, not a scheduler "
                "outage (the job state is unknown; the server is kept). Output: %r",
                self._log_name, type(self).__name__, type(e).__name__, (stdout or stderr)[:300],
            )  # fmt: skip
            return JobStatus(JobState.UNKNOWN, reason=f"query parser error ({type(e).__name__})")

    # ---------------------------------------------------------------- batchspawner 1.3 API
    # state_ispending/state_isrunning/state_isunknown/state_gethost: batchspawner/core/parsing.py

    def overrides_run_command(self) -> bool:
        return type(self).run_command is not JobCalls.run_command

    async def run_command(self, cmd, input=None, env=None):
        """1.3 API: run ``cmd`` (one shell string, the caller's own text) and return its stdout.

        Raises RuntimeError with stderr when it fails. This package never calls it unless a
        subclass overrides it (then every scheduler command goes through the override)."""
        result = await CommandRunner(timeout=self.command_timeout, log=self.log).run(
            ["/bin/sh", "-c", cmd], env=env, stdin=input, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout.strip()

    def _record_status(self, status: JobStatus, job_id: str | None = None) -> JobStatus:
        """``status`` as this spawner's last known job state (the card, suspend time, the unknown clock).

        ``job_id``: the job the answer is about. When the spawner no longer has that job (a stop
        cleared it while the query ran), the answer is returned but not recorded or logged."""
        if job_id is not None and job_id != self.job_id:
            return status
        self._last_status = status
        # issue 4 of 24: suspended time does not count against the wall time (the card's time left)
        if self.job_is_suspended(status):
            if self._suspended_since is None:
                self._suspended_since = time.time()
        elif status.state is not JobState.UNKNOWN and self._suspended_since is not None:
            self.suspended_seconds += time.time() - self._suspended_since
            self._suspended_since = None
        if status.native:
            self.job_status = f"{status.native} {status.host}".strip()
        if status.state is JobState.UNKNOWN:
            now = time.monotonic()
            if self._unknown_since is None:
                self._unknown_since = now
                self.log.warning("%s: job %s state unknown: %s", self._log_name, self.job_id, status.reason)
            elif now - self._unknown_since > self.unknown_grace and not self._grace_reported:
                self._grace_reported = True
                metrics.UNKNOWN_TOO_LONG.inc()
                self.log.error(
                    "%s: job %s state unknown for %d s (%s); keeping the server",
                    self._log_name,
                    self.job_id,
                    now - self._unknown_since,
                    status.reason,
                )
        else:
            if self._unknown_since is not None:
                self.log.warning(
                    "%s: job %s state known again: %s after %.0f s unknown",
                    self._log_name,
                    self.job_id,
                    status.describe(),
                    time.monotonic() - self._unknown_since,
                )
            self._unknown_since = None
            self._grace_reported = False
        return status

    # ---------------------------------------------------------------- job state (see job_watch)
    async def job_status_now(self, max_age=None) -> JobStatus:
        """This job's state, from the shared poller (no older than ``max_age``) or one query."""
        return await self.job_watch.status(self.job_id, max_age)

    def uses_shared_status(self):
        return self.job_watch.shared()

    def status_poller(self):
        return self.job_watch.poller()

    def status_endpoint(self):
        """(runner, env, poller key) of the shared status query.

        Decided in one place, the runner policy (batchspawner/commands/policy.py): the key includes
        the runner's identity, so spawners share one poller only when they would run the same
        query as the same identity. Spawners whose key is equal share one poller (one query per
        round for all their jobs)."""
        key, runner, env = self.runner_policy.status_endpoint()
        return runner, env, key

    def _forget_job(self):
        self.job_watch.forget(self.job_id)

    def reset_job_tracking(self):
        """Forget what was seen of the last job's state (unknown-since timers, last status)."""
        self._last_status = None
        self._unknown_since = None
        self._grace_reported = False

    async def cancel_batch_job(self, job_id=None):
        job_id = self.job_id if job_id is None else job_id
        argv = split_command(self.batch_cancel_cmd, **self.command_vars(job_id))
        self.log.info("%s: cancelling job %s", self._log_name, job_id)
        await self.runner.run(argv, env=self.command_env())

    async def read_log_tail(self, job_id=None):
        """The job log's last lines, read as the user; "" when there is no log (never a tool's error)."""
        if job_id is None or job_id == self.job_id:
            path = self.log_file or self.format_log_path(self.job_id)
        else:
            path = self.format_log_path(job_id)
        return await joblogs.read_tail(self, path, self.log_tail_lines)
