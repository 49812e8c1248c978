"""batchspawner 1.3 names, in one place (see docs/migration.md).

Sites upgrading from jupyterhub/batchspawner 1.3 keep their ``jupyterhub_config.py`` and
their own spawner modules. This module holds the *names* 1.3 code imports that this package
would not have otherwise:

- :class:`BatchSpawnerRegexStates`, the documented base for a site's own scheduler class
  (a successful answer the regexes do not recognise means the job ended, as in 1.3);
- :class:`UserEnvMixin` (USER, HOME, SHELL in the job's environment);
- 1.3's :class:`JobStatus` *enum* (NOTFOUND/RUNNING/PENDING/UNKNOWN). This package's own job
  report is :class:`batchspawner.core.states.JobStatus`, exported at the top level as ``JobReport``
  so ``from batchspawner import JobStatus`` keeps 1.3's meaning;
- :func:`format_template`.

It sits on top of the core: nothing in the core (``spawner``, ``parsing``, ``shared_status``,
``runner``...) imports it (``tests/unit/test_layers.py``). The points where a 1.3 subclass
or configuration changes what the core does are the core's own documented hooks:
``run_command`` (:class:`batchspawner.commands.runner.CallableRunner`), the ``state_is*`` predicates
(:func:`batchspawner.core.parsing.predicate_status`), a configured query or regex
(:func:`batchspawner.core.parsing.native_parsing`, :func:`batchspawner.core.shared_status.shared_status_fits`)
and ``_get_batch_script``. Their old names here stay importable.
"""

from __future__ import annotations

import enum

from batchspawner.core.hublog import warn_once
from batchspawner.core.parsing import QUERY_TRAITS, configured, expand_host, native_parsing, overridden_predicates
from batchspawner.core.parsing import predicate_status as legacy_status
from batchspawner.commands.runner import CallableRunner
from batchspawner.core.shared_status import shared_status_fits
from batchspawner.spawner import BatchSpawnerBase
from batchspawner.core.states import JobState
from batchspawner.core.states import JobStatus as JobReport
from batchspawner.core.templating import format_template

__all__ = [
    "BatchSpawnerRegexStates",
    "JobStatus",
    "JobReport",
    "UserEnvMixin",
    "format_template",
    "RunCommandRunner",
    "expand_host",
    "legacy_status",
    "native_parsing",
    "shared_status_fits",
    "warn_once",
    "QUERY_TRAITS",
    "configured",
    "legacy_hooks",
]


class JobStatus(enum.Enum):
    """batchspawner 1.3's job status enum, for code that imports and compares it."""

    NOTFOUND = 0
    RUNNING = 1
    PENDING = 2
    UNKNOWN = 3

    def __eq__(self, other):
        # 1.3 code compares what query_job_status() returns with the members: this package
        # returns a JobReport, which equals the member of its state (FINISHED == NOTFOUND)
        if isinstance(other, JobReport):
            return JobStatus.from_report(other) is self
        return self is other

    def __hash__(self):
        return hash(self.name)

    @classmethod
    def from_report(cls, report) -> "JobStatus":
        """The 1.3 member for one of this package's job reports (FINISHED becomes NOTFOUND)."""
        return {
            JobState.RUNNING: cls.RUNNING,
            JobState.PENDING: cls.PENDING,
            JobState.UNKNOWN: cls.UNKNOWN,
            JobState.FINISHED: cls.NOTFOUND,
        }[report.state]


class UserEnvMixin:
    """USER, HOME and SHELL of the user in the job's environment (and so in ``{keepvars}``), as in 1.3.

    batchspawner 1.3's SlurmSpawner and CondorSpawner had it: a script with
    ``--export={keepvars}`` then gives the job the user's own USER/HOME/SHELL.
    """

    def user_env(self, env):
        # from the passwd lookup the spawner already made off the event loop (_resolve_homedir);
        # a configured req_homedir is never looked up, so SHELL is then left out
        env["USER"] = self.user.name
        home = self._trait_values.get("req_homedir", "")
        if home:
            env["HOME"] = home
        shell = getattr(self, "_passwd_shell", "")
        if shell:
            env["SHELL"] = shell
        return env

    def get_env(self):
        return self.user_env(super().get_env())


legacy_hooks = overridden_predicates  # the 0.x names of the core's hooks


class RunCommandRunner(CallableRunner):
    """:class:`~batchspawner.commands.runner.CallableRunner` over a spawner's ``run_command`` (0.x signature)."""

    def __init__(self, spawner, prefix, timeout=30.0):
        super().__init__(spawner.run_command, prefix, timeout)


class BatchSpawnerRegexStates(BatchSpawnerBase):
    """batchspawner 1.3's base for a scheduler described by regexes.

    Set ``batch_script``, ``batch_submit_cmd``, ``batch_query_cmd``, ``batch_cancel_cmd``
    and ``state_pending_re``, ``state_running_re``, ``state_exechost_re`` (optionally
    ``state_exechost_exp``, ``state_unknown_re``; new: ``state_finished_re``,
    ``state_gone_re``). The regexes run on the query's output and decide the state;
    output they do not recognise is *unknown* (the server is kept), where 1.3 took it
    for an ended job: set ``state_finished_re`` or ``empty_query_means_finished``.
    """

    def parse_query_output(self, returncode, stdout, stderr):
        if self.state_finished_re:
            return super().parse_query_output(returncode, stdout, stderr)
        # 1.3: the scheduler answered and the answer is neither pending, running nor unknown
        return legacy_status(self, returncode, stdout, stderr)
