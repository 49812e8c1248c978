"""batchspawner 1.3 names and semantics, in one place (see docs/migration.md).

Sites upgrading from jupyterhub/batchspawner 1.3 keep their ``jupyterhub_config.py``
and their own spawner modules. This module maps what 1.3 code imports, overrides or
configures onto this package, and says so in the log where the meaning changed:

- names: :class:`BatchSpawnerRegexStates` (the documented base for a site's own
  scheduler class), :class:`UserEnvMixin`, :func:`format_template`, and 1.3's
  :class:`JobStatus` *enum* (NOTFOUND/RUNNING/PENDING/UNKNOWN). This package's own
  job description is :class:`batchspawner.states.JobStatus`, exported at the top
  level as ``JobReport`` so ``from batchspawner import JobStatus`` keeps 1.3's meaning;
- overrides: a subclass's ``run_command`` runs every scheduler command
  (:class:`RunCommandRunner`); its ``state_ispending``/``state_isrunning``/
  ``state_isunknown``/``state_gethost`` decide the state (:func:`legacy_status`);
- semantics: ``state_exechost_exp`` is ``match.expand`` (:func:`expand_host`); a
  configured ``batch_query_cmd`` or ``state_*_re`` is honoured, and the native
  parsers and the shared status query are used only when the defaults are in use
  (:func:`native_parsing`, :func:`shared_status_fits`).

Warnings are logged once per spawner class (at the first spawner built), never per poll.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import shlex

from .runner import CommandError, CommandResult, CommandTimeout
from .states import JobState
from .states import JobStatus as JobReport
from .templating import format_template

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
]

_warned: set = set()


def warn_once(log, key, msg, *args, level=logging.WARNING):
    """Log ``msg`` once per process for ``key`` (startup warnings about a configuration)."""
    if key in _warned:
        return
    _warned.add(key)
    (log or logging.getLogger("batchspawner")).log(level, msg, *args)


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


# ------------------------------------------------------------------ parsing semantics
def expand_host(regex, exp, output):
    """1.3's host rule: search ``regex``; with ``exp`` the match is expanded (``match.expand``),
    else the first group. None when the regex does not match."""
    match = re.search(regex, output or "", re.M)
    if not match:
        return None
    if exp:
        return match.expand(exp).strip()
    return (match.group(1) if match.re.groups else match.group(0)).strip()


QUERY_TRAITS = ("batch_query_cmd", "state_pending_re", "state_running_re", "state_finished_re", "state_exechost_re")


def configured(spawner, names) -> list[str]:
    """Which of ``names`` differ from the class defaults (set by the site)."""
    return [n for n in names if getattr(spawner, n) != spawner.trait_defaults(n)]


_LEGACY_HOOKS = ("state_ispending", "state_isrunning", "state_isunknown", "state_gethost")


def legacy_hooks(spawner) -> list[str]:
    """The 1.3 state predicates a subclass overrides (they then decide the state)."""
    from .parsing import QueryParsingMixin
    from .spawner import BatchSpawnerBase

    base = {
        "state_ispending": BatchSpawnerBase.state_ispending,
        "state_isrunning": BatchSpawnerBase.state_isrunning,
        "state_isunknown": BatchSpawnerBase.state_isunknown,
        "state_gethost": QueryParsingMixin.state_gethost,
    }
    return [name for name in _LEGACY_HOOKS if getattr(type(spawner), name) is not base[name]]


def native_parsing(spawner) -> bool:
    """A scheduler module's structured parser (XML, JSON...) may read the query output: only when
    the query command and the state regexes are the module's defaults and no 1.3 predicate is
    overridden. Otherwise the configured regexes decide, as in 1.3."""
    return not configured(spawner, QUERY_TRAITS) and not legacy_hooks(spawner)


def shared_status_fits(spawner) -> str:
    """"" when the shared status query reads the same states as the per-job one, else why not."""
    if spawner.overrides_run_command():
        # the site's run_command is how this hub reaches the scheduler (often: it has no client
        # tools); the shared query would run beside it and fail, so each job is asked through it
        return "it overrides run_command"
    if configured(spawner, ("batch_status_cmd",)):
        return ""  # the site configured both: its choice
    if legacy_hooks(spawner):
        return "it overrides " + ", ".join(legacy_hooks(spawner))
    custom = configured(spawner, ("batch_query_cmd",))
    if not custom and getattr(spawner, "native_query_parser", False):
        custom = configured(spawner, QUERY_TRAITS)
    if custom:
        return "its " + ", ".join(custom) + " differ from the defaults the shared query's parser reads"
    return ""


def legacy_status(spawner, returncode, stdout, stderr) -> JobReport:
    """The state as 1.3's predicates see it (``job_status`` = the query's output).

    As in 1.3: running, else pending, else unknown, else ended. One change: a query that
    *failed* and that no predicate recognises is unknown, not ended (only a scheduler's
    answer is evidence that a job ended).
    """
    both = f"{stdout}\n{stderr}"
    if returncode != 0 and spawner.state_gone_re and re.search(spawner.state_gone_re, both, re.M):
        return JobReport(JobState.FINISHED, native="gone")
    spawner.job_status = (stdout.strip() if returncode == 0 else (stderr.strip() or stdout.strip()))
    if spawner.state_isrunning():
        return JobReport(JobState.RUNNING, host=spawner.state_gethost() or "")
    if spawner.state_ispending():
        return JobReport(JobState.PENDING)
    if spawner.state_isunknown():
        return JobReport(JobState.UNKNOWN, reason="state_isunknown()")
    if returncode != 0:
        return JobReport(JobState.UNKNOWN, reason=f"query failed ({returncode}): {stderr.strip()[:200]}")
    return JobReport(JobState.FINISHED, reason="neither pending nor running (state_is* predicates)")


class RunCommandRunner:
    """Runs commands through a subclass's 1.3 ``run_command(cmd, input, env)``.

    1.3 joined ``exec_prefix`` and the command into one shell string; here the words are
    shell-quoted (:func:`shlex.join`), so a value is one word to the site's ``run_command``.
    Its RuntimeError (1.3: stderr as the message) is a non-zero exit.
    """

    remote_shell = False

    def __init__(self, spawner, prefix, timeout=30.0):
        self.spawner = spawner
        self.prefix = list(prefix)
        self.timeout = timeout

    def build_argv(self, argv):
        return self.prefix + [str(a) for a in argv]

    async def run(self, argv, *, env=None, stdin=None, timeout=None, check=True, cwd=None):
        full = self.build_argv(argv)
        cmd = shlex.join(full)
        try:
            out = await asyncio.wait_for(
                self.spawner.run_command(cmd, input=stdin, env=dict(env) if env is not None else None),
                self.timeout if timeout is None else timeout,
            )
            result = CommandResult(full, 0, out or "", "")
        except asyncio.TimeoutError:
            raise CommandTimeout(full, reason="run_command timed out") from None
        except RuntimeError as e:
            result = CommandResult(full, 1, "", str(e.args[0]) if e.args else str(e))
        except Exception as e:  # 1.3 took any error of run_command for a failed command, so do we
            result = CommandResult(full, 1, "", f"run_command raised {type(e).__name__}: {e}")
        if check and result.returncode != 0:
            raise CommandError(full, result.returncode, result.stdout, result.stderr)
        return result


# the 1.3 base for a site's own scheduler class (imported last: it needs the spawner module)
from .spawner import BatchSpawnerBase  # noqa: E402


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
