"""Who runs which scheduler command, as whom, with which environment: one policy.

:class:`RunnerPolicy` is owned by each batch spawner (``spawner.runner_policy``)
and builds every runner the spawner uses:

- **submit / cancel / log / token file** (``spawner.runner``): as the user, through
  ``exec_prefix`` (formatted with every request variable, as batchspawner 1.3 did:
  ``ssh {username}@{host}`` works) or over ssh to ``submit_hosts``;
- **per-job query** (``spawner.query_runner``): the same identity as submit;
- **shared status** (``spawner.status_runner``): one query for many users' jobs.
  Its identity is explicit (:meth:`RunnerPolicy.status_identity`) and is part of
  the shared poller's key, so a poller never runs "as whichever user polled last":

  * ``status_exec_prefix`` set: that prefix, locally (the admin's status identity);
  * ``submit_hosts`` set: ssh to the submit hosts as this user (one poller per user);
  * ``exec_prefix`` runs the command elsewhere (its first word is ``ssh``): the hub
    is not a scheduler client, so the shared query goes the same way, as this user;
  * otherwise: locally, as the hub's own user.

- **environment**: one rule (:meth:`RunnerPolicy.env_for`). Every scheduler command
  that runs on this machine gets ``PATH``/``LANG``/``LC_ALL``/``HOME``/``USER`` and
  the scheduler client variables the hub has (``SLURM_CONF``, ``SGE_ROOT``,
  ``LSF_ENVDIR``, ``PBS_CONF_FILE``, ``CONDOR_CONFIG``... plus
  ``scheduler_env_names``); a command that runs elsewhere (ssh) gets none of them
  (they describe the hub). The submit also gets the job's environment (``get_env()``,
  which holds the API token; over ssh it travels in the channel, on stdin). A name
  that looks like a secret (TOKEN, SECRET, PASSWORD, KEY) never reaches a query or
  a cancel.

The runners stay injectable traits on the spawner (tests give fakes): the policy
only provides their defaults, and reads whatever runner is injected for the key.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re

from batchspawner.commands.runner import SECRET_ENV_MARKERS, CommandRunner, split_command

__all__ = ["RunnerPolicy", "SCHEDULER_ENV_NAMES", "BASE_ENV_NAMES", "scheduler_env", "is_remote_prefix"]

BASE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "HOME", "USER")

# Variables scheduler client commands read to find their cluster (batchspawner 1.3 passed the
# hub's whole environment; its LSF and Grid Engine spawners named theirs). Globs allowed.
SCHEDULER_ENV_NAMES = (
    "SLURM_CONF", "SLURM_CLUSTERS", "SLURM_CONF_SERVER",
    "SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT", "SGE_CLUSTER_NAME", "SGE_EXECD",
    "LSF_ENVDIR", "LSF_SERVERDIR", "LSF_BINDIR", "LSF_LIBDIR", "LSF_FULL_VERSION", "LSF_VERSION",
    "PBS_CONF_FILE", "PBS_SERVER", "PBS_DEFAULT", "PBS_HOME", "PBS_EXEC", "PBS_*",
    "CONDOR_CONFIG", "_CONDOR_*", "MOABHOMEDIR", "TORQUEHOME",
)  # fmt: skip


def _secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_ENV_MARKERS)


@functools.lru_cache(maxsize=32)
def _name_matcher(extra_names: tuple):
    """One compiled pattern for every name glob (run per command: one match per variable)."""
    patterns = tuple(BASE_ENV_NAMES) + tuple(SCHEDULER_ENV_NAMES) + extra_names
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def scheduler_env(extra_names=(), environ=None) -> dict[str, str]:
    """The environment every scheduler command gets (no secrets): see the module docstring."""
    environ = os.environ if environ is None else environ
    matches = _name_matcher(tuple(extra_names or ()))
    env = {name: value for name, value in environ.items() if matches(name) and not _secret(name)}
    env.setdefault("PATH", os.defpath)
    return env


def is_remote_prefix(prefix_argv) -> bool:
    """True when the prefix runs the command on another machine (its first word is ssh)."""
    return bool(prefix_argv) and os.path.basename(prefix_argv[0]) == "ssh"


class RunnerPolicy:
    """Builds the spawner's runners and environments (see the module docstring)."""

    # Spawner traits that change while a server lives (each poll, each start) without changing
    # which command runs, as whom, where or with which environment. A change of any other trait
    # drops what memo() keeps; unlisted names are safe (they only cost a rebuild).
    RUNTIME_TRAITS = frozenset({
        "job_id", "job_status", "log_file", "submitted_at", "uncancelled_jobs", "state_saver",
        "port", "server", "api_token",
    })  # fmt: skip

    def __init__(self, spawner):
        self.spawner = spawner
        self._memo = {}
        spawner.observe(self._settings_changed)

    def _settings_changed(self, change):
        if change["name"] not in self.RUNTIME_TRAITS:
            self._memo.clear()

    def memo(self, name, build, valid=None):
        """``build()``, kept until one of the spawner's settings changes.

        For what the spawner derives from its settings on every poll and every page: the shared
        status and details pollers and their endpoint. Building them formats every request
        variable and filters the hub's environment (about 1 ms, once per server per poll round
        and per REST model); the poll itself reads a cache. ``valid(value)`` False rebuilds it
        (a poller the shared registry no longer holds)."""
        if name in self._memo:
            value = self._memo[name]
            if valid is None or valid(value):
                return value
        value = self._memo[name] = build()
        return value

    # ------------------------------------------------------------ identity
    def prefix_vars(self) -> dict:
        """Variables exec_prefix may use: every request variable plus the identity (1.3 allowed all)."""
        sp = self.spawner
        # req_keepvars is left out: its default reads get_env(), and computing it here (runners are
        # built early, e.g. by the first poll after a restart) would freeze it before the spawn
        values = {
            name[4:]: getattr(sp, name)
            for name in sp.trait_names()
            if name.startswith("req_") and name != "req_keepvars"
        }
        values = {k: v for k, v in values.items() if isinstance(v, str)}
        values.update(sp._identity_vars())
        return values

    def exec_prefix_argv(self) -> list[str]:
        sp = self.spawner
        return split_command(sp.exec_prefix, **self.prefix_vars()) if sp.exec_prefix else []

    def hub_is_scheduler_client(self) -> bool:
        """False when commands run elsewhere (submit_hosts, or an exec_prefix starting with ssh)."""
        sp = self.spawner
        return not sp.submit_hosts and not is_remote_prefix(self.exec_prefix_argv())

    # ------------------------------------------------------------ runners
    def user_runner(self):
        """Submit, per-job query, cancel, log tail, token file: as the user."""
        sp = self.spawner
        if sp.submit_hosts:
            return sp.make_ssh_runner(sp._identity_vars())
        return self.local_runner(self.exec_prefix_argv())

    def local_runner(self, prefix):
        sp = self.spawner
        return CommandRunner(
            prefix=list(prefix), timeout=sp.command_timeout, remote_shell=is_remote_prefix(prefix), log=sp.log
        )

    def status_runner(self):
        """The shared status query's runner (see the module docstring for the identity rule)."""
        sp = self.spawner
        if sp.status_exec_prefix:
            return self.local_runner(split_command(sp.status_exec_prefix, **self.prefix_vars()))
        if not self.hub_is_scheduler_client():
            return self.user_runner()
        return self.local_runner([])

    @staticmethod
    def identity_of(runner) -> tuple:
        """What identifies who a runner runs as and where: part of the shared poller's key."""
        hosts = tuple(str(h) for h in (getattr(runner, "hosts", ()) or ()))
        return (
            type(runner).__name__,
            tuple(getattr(runner, "prefix", ()) or ()),
            getattr(runner, "user", "") if hosts else "",
            hosts,
            id(runner) if not hasattr(runner, "prefix") and not hosts else 0,
        )

    # ------------------------------------------------------------ environment
    @staticmethod
    def runs_elsewhere(runner) -> bool:
        """True for a runner whose commands run on another machine (ssh prefix, submit_hosts)."""
        return bool(getattr(runner, "remote_shell", False))

    def env_for(self, runner) -> dict[str, str]:
        """Queries, cancels, the shared status query, log reads: the scheduler variables, no tokens.

        Only for commands on this machine: the hub's SLURM_CONF (etc.) describes the hub, so a
        command that runs on a login node or submit host gets none of them (its login sets its own)."""
        if self.runs_elsewhere(runner):
            return {}
        return scheduler_env(self.spawner.scheduler_env_names)

    def command_env(self) -> dict[str, str]:
        return self.env_for(self.spawner.runner)

    def submit_env(self) -> dict[str, str]:
        """The submit: the job's environment (get_env()), plus the scheduler variables it lacks
        when the submit runs on this machine. A remote runner sends it over ssh's channel."""
        env = dict(self.spawner.get_env())
        if self.runs_elsewhere(self.spawner.runner):
            return env
        # the scheduler variables only: the hub's own HOME/USER must not become the job's
        # (sudo -E keeps what it is given; a job with HOME=/root cannot start its server)
        for name, value in scheduler_env(self.spawner.scheduler_env_names).items():
            if name not in BASE_ENV_NAMES:
                env.setdefault(name, value)
        return env

    # ------------------------------------------------------------ shared status
    def status_endpoint(self):
        """(key, runner, env) of the shared status query this spawner would use."""
        return self.memo("status_endpoint", self._status_endpoint)

    def _status_endpoint(self):
        sp = self.spawner
        runner = sp.status_runner
        key = (
            type(sp).__name__,
            sp.batch_status_cmd,
            sp.command_vars().get("cluster_opt", ""),
            self.identity_of(runner),
        )
        return key, runner, self.env_for(runner)
