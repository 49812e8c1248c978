"""BatchSpawnerBase: a JupyterHub spawner that runs single-user servers as batch jobs.

This module knows no scheduler. A scheduler module (``slurm.py``...) sets
the command templates, the script template and small parsing hooks; the flow
(submit, wait, port callback, poll, cancel) lives here once.

Configuration comes from one traits class per concern, each in its own module
(their traits are configured under the spawner classes, e.g. ``c.SlurmSpawner.status_interval``):
:mod:`~batchspawner.core.parsing` (the ``state_*`` regexes, per-job query parsing),
:mod:`~batchspawner.core.shared_status` (one shared status query per cluster),
:mod:`~batchspawner.core.leftovers` (cancel retries, ``uncancelled_jobs``) and
:mod:`~batchspawner.commands.ssh` (submit hosts). Behaviour that is its own concern lives in
objects the spawner owns and calls with the job id: ``self.job_watch``
(:class:`~batchspawner.core.shared_status.JobWatch`: what state is this job in) and
``self.leftovers`` (:class:`~batchspawner.core.leftovers.Leftovers`: nothing is forgotten
without a cancel). This module keeps the hub-facing flow and what they share:
commands, request variables, templates, state, the Spawner API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ipaddress
import os
import inspect
import pwd
from html import escape
import re
import secrets
import shlex
import shutil
import socket
import sys
import time
import weakref

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import (
    Any,
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Integer,
    List,
    Set,
    TraitError,
    Unicode,
    default,
    validate,
)

from batchspawner.hub import api  # noqa: F401  (registers POST /hub/api/batchspawner)
from batchspawner.hub import web as _hub_pages  # noqa: F401  (registers /hub/hpc/log and /hub/hpc/sessions)
from batchspawner.hub import bodylimit  # noqa: F401  (issue 21: oversized user_options get 413 before JupyterHub stores them)
from batchspawner.core import accounts, joblogs
from batchspawner.core import metrics
from batchspawner.hub import sessions
from batchspawner.usage import report
from batchspawner.job import proof as _proof
from batchspawner.core.hosts import usable_host
from batchspawner.core.leftovers import Leftovers, LeftoverTraits
from batchspawner.core.options import (
    PROTECTED,
    OptionError,
    admin_only_vars,
    forget_user_options,
    refused_in_this_request,
    record_form_options,
    validate_spawner_user_options,
)
from batchspawner.core.hublog import warn_once
from batchspawner.core.parsing import QueryParsingMixin, overridden_predicates, predicate_status
from batchspawner.commands.runner import CallableRunner, CommandError, CommandRunner, has_shell_syntax, split_command
from batchspawner.commands.policy import RunnerPolicy
from batchspawner.commands.runner import first_line as _first_line
from batchspawner.core.shared_status import JobWatch, SharedStatusTraits, shared_status_fits
from batchspawner.commands.ssh import SubmitHostsMixin
from batchspawner.core.states import GONE_CLAIM, JobState, JobStatus
from batchspawner.core.templating import format_template, has_control_chars
from batchspawner.commands.tunnel import SshTunnel, TunnelError

# issue 21 (8): every spawner that reported a port, to refuse a report of another server's address
_REPORTED = weakref.WeakSet()

USERNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")


class SpawnFailed(RuntimeError):
    """A spawn failed for a reason the user should read on the spawn page.

    A RuntimeError, as every start failure was in batchspawner 1.3 (code that catches that keeps
    working)."""

    def __init__(self, message, html_message=None):
        super().__init__(message)
        self.jupyterhub_message = message
        if html_message:
            self.jupyterhub_html_message = html_message


class SubmitRefused(web.HTTPError, RuntimeError):
    """The scheduler refused a job built from the user's own options: HTTP 400 with its reason.

    Raised only when the user sent options and the submit command itself answered
    (exit code, message); the message is the scheduler's reason, cleaned of tool
    prefixes, paths and anything token-like (:func:`clean_scheduler_message`).
    """

    def __init__(self, message):
        super().__init__(400, message, reason="Job refused by the batch system")
        self.jupyterhub_message = message

    def __str__(self):
        return self.log_message


class AccountRefused(web.HTTPError):
    """The hub user is a system account (or one whose uid cannot be checked): HTTP 403, nothing run."""

    def __init__(self, message):
        super().__init__(403, message, reason="Account not allowed to run batch jobs")
        self.jupyterhub_message = message

    def __str__(self):
        return self.log_message


# "sbatch: error: ", "qsub: ", "bsub: error: ", "ERROR: " ...: the tool's own prefixes
_TOOL_PREFIX = re.compile(r"^(?:[\w.+-]+:\s*)?(?:(?:error|fatal|warning)\s*:\s*)?", re.I)
_PATH = re.compile(r"(?<![\w.])/[^\s:;,'\"]+")
_SECRETISH = re.compile(r"[A-Za-z0-9_-]*[0-9a-fA-F]{16,}[A-Za-z0-9_-]*")
# a submit that failed because the scheduler or this host is in trouble, whatever the user chose
_SITE_TROUBLE = re.compile(
    r"unable to contact|cannot contact|can't contact|connect(?:ion)? (?:failure|refused|timed out)|timed out|"
    r"not responding|commlib error|qmaster|unknown user|permission denied|no such file",
    re.I,
)


# (host, family) -> (address, monotonic expiry) of recent successful lookups (connect_address)
ADDRESS_TTL = 60.0
_ADDRESSES: dict = {}


def clean_scheduler_message(text, limit=300) -> str:
    """The scheduler's reason for a user to read: its first meaningful line without the tool's
    ``name: error:`` prefix, with paths and long hex strings (tokens, ids of secrets) replaced."""
    for line in (text or "").splitlines():
        line = _TOOL_PREFIX.sub("", line.strip(), count=1).strip()
        if not line:
            continue
        line = _PATH.sub("<path>", line)
        line = _SECRETISH.sub("<hidden>", line)
        return line[:limit]
    return ""


class JobDidNotStart(SpawnFailed, web.HTTPError):
    """The job ended (or cannot start) before its server came up: what happened, the log's tail, what to do.

    Also an HTTP 500 error carrying that message: JupyterHub shows a non-HTTP exception raised
    within the first second of a spawn from the form only as "Unhandled error starting server";
    an HTTPError's ``jupyterhub_message``/``jupyterhub_html_message`` reach the page (and the REST API).
    """

    def __init__(self, message, html_message=None):
        web.HTTPError.__init__(self, 500, reason="Server did not start")
        self.args = (message,)
        self.jupyterhub_message = message
        if html_message:
            self.jupyterhub_html_message = html_message

    def __str__(self):
        return self.jupyterhub_message


def _req(help_text, default_value="", admin_only=False, **kw):
    """A request trait (``req_*``): a template variable; ``admin_only`` ones users can never set."""
    trait = Unicode(default_value, help=help_text, **kw).tag(config=True)
    if admin_only:
        trait.tag(admin_only=True)
    return trait


class BatchSpawnerBase(QueryParsingMixin, SharedStatusTraits, LeftoverTraits, SubmitHostsMixin, Spawner):
    """Base class for spawners that submit the single-user server as a batch job.

    Subclasses set ``batch_script``, ``batch_submit_cmd``, ``batch_query_cmd``,
    ``batch_cancel_cmd`` and the state regexes (all configurable), and may
    override :meth:`parse_job_id` and :meth:`parse_query_output`.
    """

    # ---------------------------------------------------------------- hub timing
    # A batch job waits in a queue, then a Python server starts on a node that
    # may be busy: the hub's defaults (60 s / 30 s) are too short.
    start_timeout = Integer(
        600,
        help="""Seconds from submission until the server must answer, queue wait included.

        The spawn is abandoned (and the job cancelled) after this. Batch spawners wait
        for the job to report its port *and* for the port to accept connections before
        returning, so the hub's ``http_timeout`` only covers the final HTTP check.
        """,
    ).tag(config=True)

    http_timeout = Integer(
        120,
        help="Seconds the hub waits for the server's HTTP answer after start() returns.",
    ).tag(config=True)

    ip = Unicode(
        "0.0.0.0",
        help="""Address the single-user server binds to inside the job.

        The hub connects to the execution host the scheduler reports, so the server must
        listen on an address reachable from the hub (all interfaces by default).""",
    ).tag(config=True)

    # ---------------------------------------------------------------- commands
    exec_prefix = Unicode(
        "sudo -E -u {username}",
        help="""Prefix for submit and cancel commands, e.g. to run them as the user.

        Split with shell rules, then each word is formatted with the template variables
        ({username}, ...). An empty string runs commands as the hub's own user. When the
        first word is ``ssh``, the command is quoted for the remote shell.""",
    ).tag(config=True)

    batch_script = Unicode(
        "",
        help="""Template for the batch script piped to the submit command on stdin.

        Rendered with jinja2 when it contains ``{{`` or ``{%``, else with str.format.
        Variables: every ``req_*`` trait without the prefix, ``cmd`` (the quoted
        single-user command), ``log_path``, ``hub_bin_dir`` (shell-quoted), plus
        validated user options.""",
    ).tag(config=True)

    batch_submit_cmd = Unicode(
        "", help="Command that submits the script (read from stdin) and prints the job id."
    ).tag(config=True)
    batch_query_cmd = Unicode(
        "", help="Command that prints the state of job {job_id}; parsed with the state_*_re regexes."
    ).tag(config=True)
    batch_cancel_cmd = Unicode("", help="Command that cancels job {job_id}.").tag(config=True)
    batch_confirm_cmd = Unicode(
        "",
        help="""Second, independent source asked about job {job_id} when the per-job query says
        the scheduler does not know it (``state_gone_re``, or an empty answer with
        ``empty_query_means_finished``).

        The server ends only when this also shows the job ended or unknown (parsed by the
        scheduler module's parse_confirm_output); if it shows the job alive, or cannot
        answer, the job is kept. Run like batch_query_cmd (through exec_prefix). Empty: a
        per-job "no such job" counts on its own; an empty answer never does.""",
    ).tag(config=True)

    command_timeout = Float(
        30.0,
        help="""Seconds any scheduler command may run before it is killed.

        A submit that times out fails the spawn; a query that times out makes the job
        state *unknown* (alive), never finished.""",
    ).tag(config=True)

    batchspawner_singleuser_cmd = Unicode(
        help="""Wrapper that runs in the job, reports the port to the hub, then starts the server.

        Defaults to the absolute path of ``batchspawner-singleuser`` next to the hub's
        Python. That absolute path is what lets the job find it: JupyterHub >= 5 no longer
        passes PATH on, and ``sudo`` (Debian's ``secure_path``) replaces whatever PATH the
        hub gives the submit command, so the job's PATH is sudo's, without the hub's venv.
        The wrapper then finds ``jupyterhub-singleuser`` next to its own Python.
        Set it when the compute nodes see the wrapper at another path.""",
    ).tag(config=True)

    @default("batchspawner_singleuser_cmd")
    def _default_wrapper(self):
        here = os.path.join(os.path.dirname(sys.executable), "batchspawner-singleuser")
        if os.path.exists(here):
            return here
        return shutil.which("batchspawner-singleuser") or "batchspawner-singleuser"

    hub_bin_dir = Unicode(
        help="""Directory of the hub's Python environment (its ``bin``) as the compute nodes see it.

        Given to the batch script template as ``hub_bin_dir``, already shell-quoted, so a
        script can put the venv first on the job's PATH (``export PATH={{ hub_bin_dir }}:"$PATH"``)
        for the user's prologue and the server's own subprocesses. Defaults to the directory
        of batchspawner_singleuser_cmd's first word when that is an absolute path, else empty
        (the template then leaves PATH alone).""",
    ).tag(config=True)

    @default("hub_bin_dir")
    def _default_hub_bin_dir(self):
        try:
            words = shlex.split(self.batchspawner_singleuser_cmd)
        except ValueError:
            return ""
        if words and os.path.isabs(words[0]):
            return os.path.dirname(words[0])
        return ""

    # ---------------------------------------------------------------- requests
    req_queue = _req("Queue name to submit job to resource manager")
    req_host = _req("Host name of batch server to submit job to resource manager (admin only)", admin_only=True)
    req_memory = _req("Memory to request from resource manager")
    req_nprocs = _req("Number of processors to request from resource manager")
    req_ngpus = _req("Number of GPUs to request from resource manager")
    req_runtime = _req("Length of time for submitted job to run")
    req_partition = _req("Partition name to submit job to resource manager")
    req_account = _req("Account name string to pass to the resource manager (admin only)", admin_only=True)
    req_options = _req("Other options to include into job submission script (admin only)")
    req_prologue = _req("Script to run before single user server starts.")
    req_epilogue = _req("Script to run after single user server ends.")
    req_username = Unicode(help="The user name, for templates (derived from the hub user).").tag(
        config=True
    )
    req_homedir = Unicode(help="The user's home directory, for templates.").tag(config=True)
    req_keepvars = Unicode(
        help="Comma-separated names of environment variables the job keeps (derived from get_env())."
    ).tag(config=True)
    req_keepvars_extra = _req("Extra environment variable names appended to keepvars.")

    @default("req_username")
    def _req_username_default(self):
        return self.user.name

    @default("req_homedir")
    def _req_homedir_default(self):
        # start() and stop() look it up in a thread first (_resolve_homedir): a
        # passwd lookup may ask LDAP/sssd and must not block the hub's event loop. This
        # synchronous default serves other reads (the first poll after a hub restart...).
        return self._lookup_homedir()

    def _lookup_homedir(self):
        try:
            entry = pwd.getpwnam(self.user.name)
        except KeyError:
            return os.path.join("/home", self.user.name)
        self._passwd_shell = getattr(entry, "pw_shell", "")  # for UserEnvMixin's SHELL (compat.py), no second lookup
        return entry.pw_dir

    async def _resolve_homedir(self):
        """Fill in req_homedir's default off the event loop (once; a configured value wins)."""
        if "req_homedir" not in self._trait_values:
            home = await asyncio.to_thread(self._lookup_homedir)
            if "req_homedir" not in self._trait_values:  # not set meanwhile
                self.req_homedir = home

    @default("req_keepvars")
    def _req_keepvars_default(self):
        return ",".join(self.get_env().keys())

    log_path = Unicode(
        help="""Where the job writes its output, as the job script sees it.

        Rendered into the script as {log_path} with the scheduler's job-id placeholder,
        and read back (last lines, as the user) to explain a spawn that failed.
        Formatted with {homedir}, {username}, {job_id}.""",
    ).tag(config=True)

    job_id_placeholder = ""  # e.g. %j for Slurm: the scheduler fills in the id

    token_via_file = Bool(
        False,
        help="""Pass the server's API token to the job in a file instead of its environment.

        Use it where the scheduler shows a job's environment to other users (Grid Engine's
        ``qstat -j`` prints ``env_list`` for any job). The hub writes the token, as the user
        (through ``exec_prefix``), to a new mode-0600 file under ``token_dir``; the job's
        wrapper reads it, deletes it and hands the token to the server in its own environment.
        ``JUPYTERHUB_API_TOKEN`` is then absent from the job's environment and ``keepvars``.""",
    ).tag(config=True)

    token_dir = Unicode(
        "{homedir}",
        help="Directory (as the job sees it, formatted with {homedir}, {username}) for token_via_file.",
    ).tag(config=True)

    tunnel_login_host = Unicode(
        "",
        help="""Reach the job's server through an ssh tunnel via this login node (empty: connect directly).

        For sites where the hub cannot open connections to compute nodes but a login node can.
        Once the job reports its port, the hub resolves the node's name itself to a numeric
        address of the server's family (see ``ip``), binds ``127.0.0.1:LOCAL`` and hands it to a
        relay that runs ``ssh -N -L <private unix socket>:ADDRESS:PORT`` to this host (``host``,
        ``user@host`` or ``host:port``, as the hub's own user; ssh options in
        ``c.SshTunnel.ssh_options``); the hub talks to the local end. Closed when the server
        stops; the relay outlives a hub restart and is adopted, or rebuilt on another local port
        (the route follows) if its port was taken meanwhile (see batchspawner/commands/tunnel.py and
        docs/admin.md). Combine with ``server_proof``.""",
    ).tag(config=True)

    server_proof = CaselessStrEnum(
        ["auto", "required", "off"],
        "auto",
        help="""Whether the hub makes the server that answers on the reported port prove it is the job's own.

        The proof (batchspawner/job/proof.py): the hub sends a random nonce and only a process that
        holds this server's API token can answer HMAC(token, nonce, address, port), bound to the
        address and port it was reached on (so a squatter that relays the question to the real
        server is refused too). ``batchspawner-singleuser`` loads the answering extension into
        jupyter_server and says so in its port report.

        - ``auto`` (default): proof checked when the job's wrapper says its server answers it
          (this package's wrapper around Jupyter Server always does); reports without it
          (batchspawner 1.3's wrapper, a non-Jupyter app behind ``{port}``) are accepted with a
          warning in the log.
        - ``required``: every report is checked; a server that cannot answer fails the spawn.
          Recommended when every job runs Jupyter Server under ``batchspawner-singleuser``:
          then a user's own wrapper cannot have the hub route to someone else's port.
        - ``off``: never checked (not recommended).

        Independently of this, a reported address and port that another server of this hub
        already uses is always refused. Not supported with ``internal_ssl``.""",
    ).tag(config=True)

    @property
    def tunnel(self) -> SshTunnel | None:
        """The spawner's ssh tunnel (batchspawner/commands/tunnel.py), or None without tunnel_login_host."""
        if not self.tunnel_login_host:
            return None
        if getattr(self, "_tunnel", None) is None:
            self._tunnel = SshTunnel(parent=self, login_host=self.tunnel_login_host, log=self.log)
        return self._tunnel

    # ---------------------------------------------------------------- who may run jobs (issue 21)
    min_uid = Integer(
        1000,
        help="""Lowest uid (on the hub host, as NSS resolves the name) of a hub user who may run
        batch jobs. Every command of a spawn runs as the user (``exec_prefix``), so a hub user
        named ``root`` or ``slurm`` would otherwise submit jobs as that account. A user below it
        gets HTTP 403 before any command runs. Set it to your site's first user uid (Debian:
        1000, older RHEL: 500). See also ``denied_users`` and ``allow_accounts_unknown_here``.""",
    ).tag(config=True)
    denied_users = Set(
        Unicode(),
        default_value=set(accounts.DEFAULT_DENIED_USERS),
        help="""Names that never run batch jobs, whatever their uid (HTTP 403 before any command
        runs): system and service accounts (root, nobody, slurm, munge, ...). Applies even when
        the hub host does not know the account. Extend it rather than replace it, e.g.
        ``c.SlurmSpawner.denied_users |= {"svc-backup"}``.""",
    ).tag(config=True)
    allow_accounts_unknown_here = Bool(
        False,
        help="""Let a hub user whose account the hub host cannot resolve run jobs when commands run
        on another host (``submit_hosts`` or an ``ssh`` exec_prefix). Default False (fail closed):
        the uid cannot be checked against ``min_uid`` there, so such a user gets HTTP 403. Set True
        only when the submit host itself refuses system accounts (e.g. sshd ``DenyUsers``,
        ``PermitRootLogin no``); ``denied_users`` still applies. Commands that run on this host
        need no setting: sudo refuses an account it cannot resolve.""",
    ).tag(config=True)

    @validate("min_uid")
    def _check_min_uid(self, proposal):
        if proposal["value"] < 1:
            raise TraitError(f"{type(self).__name__}.min_uid must be at least 1 (uid 0 is root)")
        return proposal["value"]

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

    log_tail_lines = Integer(
        20, help="How many lines of the job's output to show when a spawn fails."
    ).tag(config=True)

    # ---------------------------------------------------------------- user options
    allowed_user_options = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""Which ``user_options`` keys (REST API or an options form) users may set.

        Each key names a request template variable (``req_<name>`` without ``req_``), e.g.
        ``["runtime", "partition"]``; any other key is refused with HTTP 400 naming it, before
        anything is submitted. None (default, as in batchspawner 1.3): every declared request
        variable except the protected ones (cmd, prologue, epilogue, options, srun, keepvars,
        username, homedir...) and the admin-only ones (traits tagged ``admin_only``: accounts,
        projects, QoS, reservations, clusters, resource names such as Grid Engine's
        ``memory_resource``), which can never be listed here either. Set a list, or ``[]``
        for none, so users cannot pick e.g. the partition through the REST API. Values are always checked (plain
        characters only). WrapSpawner passes its own ``allowed_user_options`` to the child;
        ProfilesSpawner passes none (its fields are the allowlist).""",
    ).tag(config=True)

    @validate("allowed_user_options")
    def _check_allowed_user_options(self, proposal):
        value = proposal["value"]
        bad = sorted(set(value or ()) & PROTECTED)
        if bad:
            raise TraitError(
                f"{type(self).__name__}.allowed_user_options: {', '.join(bad)} can never be set by users"
            )
        admin = sorted(set(value or ()) & admin_only_vars(type(self)))
        if admin:
            raise TraitError(
                f"{type(self).__name__}.allowed_user_options: {', '.join(admin)} name an account, project, "
                "resource or policy and are set by administrators only (set them in the config, or offer "
                "one ProfilesSpawner profile per value)"
            )
        return value

    # ---------------------------------------------------------------- what users see (issue 14)
    # session card (batchspawner/hub/sessions.py), job logs (joblogs.py), usage log (report.py)
    log_dir = Unicode(
        "{homedir}/.jupyterhub-hpc/logs",
        help="""The user's private folder for job logs, as the job sees it ({homedir}, {username}).

        ``log_path``'s default puts every job's output here as
        ``jupyter-<date>-<server>-job<id>.log``. Before each submit the hub, as the user,
        creates it with mode 0700, makes the logs in it 0600 and prunes them
        (``log_keep_days``, ``log_keep_count``). Used only when ``log_path`` contains {logdir}.""",
    ).tag(config=True)

    log_keep_days = Integer(
        30, help="Job logs in log_dir older than this many days are deleted before the next submit (0: keep)."
    ).tag(config=True)

    log_keep_count = Integer(
        20, help="At most this many job logs are kept in log_dir, newest first (0: no limit)."
    ).tag(config=True)

    usage_log = Unicode(
        "",
        help="""File (on the hub) the hub appends one JSON line to per spawn, start, failure and stop.

        Read it with ``jupyterhub-hpc-report``. Empty (default): no usage log. Created 0600.""",
    ).tag(config=True)

    batch_details_cmd = Unicode(
        "",
        help="""Command that prints the session-card details (partition, cores, memory, GPUs,
        time limit, submit/start times, node, reason) of many jobs at once; {job_ids} as in
        batch_status_cmd. Run by the shared details poller once per ``session_interval`` for all
        jobs, as status_exec_prefix. Empty: cards show only what the spawner knows.""",
    ).tag(config=True)

    batch_queue_cmd = Unicode(
        "",
        help="""Command that lists every pending job (id and partition) in priority order, for the
        card's queue position; one per round with batch_details_cmd. Empty: no position shown.""",
    ).tag(config=True)

    session_interval = Float(
        15.0,
        help="""Seconds between rounds of the shared details poller (batch_details_cmd and
        batch_queue_cmd, one each for all jobs). Pages never query the scheduler.""",
    ).tag(config=True)

    walltime_warning = Float(
        900.0,
        help="""Seconds of wall time left from which the user is warned that the job ends soon: the
        session card and every hub page, and a banner inside JupyterLab (the job's server asks the
        hub, ``GET /hub/api/batchspawner`` with its own token, see batchspawner/job/proof.py). 0: never.""",
    ).tag(config=True)

    log_file = Unicode("", help="The current job's log file (kept in state; shown on the card).")
    submitted_at = Float(0.0, help="Epoch seconds of the current job's submission (kept in state).")

    def details_poller(self, create=True):
        """The shared :class:`~batchspawner.hub.sessions.DetailsPoller` of this scheduler endpoint, or None.

        Every poll and every REST model asks for it: kept until a setting changes (runner_policy.memo)."""
        if not self.batch_details_cmd or self.overrides_run_command():
            # a site's 1.3 run_command knows submit, query and cancel: it is sent nothing else
            return None
        if not create:
            key = self.runner_policy.memo("details_key", lambda: self._details_poller(create=False)[0])
            return sessions.DetailsPoller._registry.get(key)
        registry = sessions.DetailsPoller._registry
        return self.runner_policy.memo(
            "details_poller", lambda: self._details_poller(create=True),
            valid=lambda kp: registry.get(kp[0]) is kp[1],
        )[1]

    def _details_poller(self, create):
        """(key, poller or None) of the shared details query."""
        # the same runner, environment and identity as the shared status query (one rule, in
        # batchspawner/commands/policy.py): the key holds the identity, so no poller runs as "whichever
        # user asked last"; the closures hold the spawner's settings, not the spawner
        runner, env, status_key = self.status_endpoint()
        vars_ = self.command_vars()
        details_cmd, queue_cmd = self.batch_details_cmd, self.batch_queue_cmd
        parse_details, parse_order = self.parse_job_details, self.parse_queue_order
        key = ("details", details_cmd, queue_cmd) + tuple(status_key)
        if not create:
            return key, None

        async def details(job_ids):
            ids = {"job_ids": ",".join(job_ids), "job_id_args": list(job_ids)}
            argv = split_command(details_cmd, **(vars_ | ids))
            result = await runner.run(argv, env=env, check=False)
            return parse_details(result.returncode, result.stdout, result.stderr)

        queue = None
        if queue_cmd:

            async def queue():
                argv = split_command(queue_cmd, **vars_)
                result = await runner.run(argv, env=env)
                return parse_order(result.stdout)

        return key, sessions.DetailsPoller.get(key, details, queue, interval=self.session_interval,
                                               min_interval=self.status_min_interval)

    def parse_job_details(self, returncode, stdout, stderr) -> dict:
        """{job_id: {partition, cores, memory, gpus, time_limit, start, submit, node, reason, native,
        exit_code}} from batch_details_cmd; raise when the answer cannot be trusted."""
        raise NotImplementedError(f"{type(self).__name__} has no details parser")

    def parse_queue_order(self, stdout) -> list:
        """[(job_id, partition)] of pending jobs in priority order, from batch_queue_cmd."""
        raise NotImplementedError(f"{type(self).__name__} has no queue-order parser")

    def _track_session(self):
        poller = self.details_poller()
        if poller is not None and self.job_id:
            poller.watch(self.job_id)

    def _untrack_session(self, job_id):
        poller = self.details_poller(create=False)
        if poller is not None and job_id:
            poller.unwatch(job_id)

    def _session_submitted(self):
        self.log_file = self.format_log_path(self.job_id)
        self.submitted_at = time.time()
        self._running_at = None
        self._track_session()
        report.record(self, "spawn", outcome="submitted")

    def _session_running(self):
        self._running_at = time.time()

    def _queue_wait(self):
        running = getattr(self, "_running_at", None)
        if not self.submitted_at:
            return None
        return (running or time.time()) - self.submitted_at

    def _session_started(self):
        self._served_at = time.time()
        # no chmod command from the hub: the Slurm and Grid Engine scripts make their log 0600 as the
        # job starts (the wrapper too, when its output is the log); the folder is 0700 for all
        report.record(self, "start", outcome="started", queue_wait=self._queue_wait())

    def _session_failed(self, error):
        joblogs.forget_prepared(self)  # the next try makes the log folder again, if it is gone
        if not self.job_id:
            return
        cancelled = isinstance(error, asyncio.CancelledError)
        reason = "cancelled by the user" if cancelled else str(getattr(error, "jupyterhub_message", "") or error)
        report.record(self, "fail", outcome="cancelled" if cancelled else "failed", reason=reason,
                      queue_wait=self._queue_wait() if getattr(self, "_running_at", None) else None)

    def _session_stopped(self):
        served = getattr(self, "_served_at", None)
        if self.job_id and served:
            report.record(self, "stop", outcome="stopped", run_time=time.time() - served)
        self._served_at = None

    def session_facts(self):
        """The session card's facts (cached only, no scheduler command); see batchspawner.hub.sessions."""
        return sessions.session_facts(self)

    # ---------------------------------------------------------------- job-state checks
    startup_poll_interval = Float(
        0.5,
        help="""Seconds between job-state checks while the job waits to run.

        The job's port report ends this wait at once, whatever the interval.""",
    ).tag(config=True)

    running_check_interval = Float(
        3.0,
        help="""Seconds between job-state checks once the job runs and its server starts up.

        Until the job reports its port and the port accepts connections, the spawner checks
        that the job still runs this often (from the shared status cache), so a job that
        dies fails the spawn within about this long. The job's wrapper reports the port only once
        its server listens, so the hub then connects once; a wrapper that reports earlier gets
        a backoff probe (0.05 s doubling to 1 s).""",
    ).tag(config=True)

    host_wait_timeout = Float(
        60.0,
        help="""Seconds a job may be RUNNING without the scheduler naming its host before the spawn fails.

        No host (Slurm ``%B`` = ``n/a``, HTCondor ``RemoteHost`` undefined, a
        ``state_exechost_re`` that does not match) means "not placed yet": the spawner keeps
        waiting (the spawn page says so), then fails with a clear message and cancels the job.
        It never connects to the hub's own loopback instead, unless ``local_executor`` is set.
        start_timeout still bounds the whole start.""",
    ).tag(config=True)

    local_executor = Bool(
        False,
        help="""The jobs run on the hub's own machine (a test or single-machine setup, not a cluster).

        Only then does a RUNNING job the scheduler names no host for get reached at
        127.0.0.1. Off (default), "no host" means the job is not placed yet: the hub waits
        (``host_wait_timeout``) and never routes a user to a service on its own loopback
        at a port the job chose.""",
    ).tag(config=True)

    follow_requeue = Bool(
        True,
        help="""Follow a running server's job when the scheduler puts it back in the queue (issue 24).

        A job can leave RUNNING without ending: ``scontrol requeue``/``requeuehold``, preemption
        with requeue, or a node failure with Slurm's JobRequeue. Whatever this says, the moment
        the hub sees such a job pending again it removes the server's route (it never routes
        to a job that left RUNNING) and the user's pages say in words what happened.

        - True (default): the server stays in the hub as a pending start (spawn page with the
          queue facts and Cancel); the rerun of the same job reports its port with the same
          token and the hub routes to it again (possibly another node and port). Slurm jobs
          append every run's output to the same log (``--open-mode=append``).
        - False: the Slurm script asks for ``--no-requeue`` (Slurm then ends the job, e.g.
          NODE_FAIL, instead of requeueing it), and a job seen back in the queue anyway is
          cancelled and the server ends, with the reason on the user's page.

        A suspended job is not requeued: it keeps its route and its server.""",
    ).tag(config=True)

    end_report_watch = Float(
        60.0,
        help="""Seconds the hub keeps looking at a job after its wrapper reported that the server ended.

        ``batchspawner-singleuser`` tells the hub (with the server's own token) when its server
        has ended (scancel, wall time, a crash): the hub then queries the job at once and every
        ``end_report_interval`` seconds until the scheduler shows it ended (or back in the
        queue), so the route goes within seconds rather than at the next ``poll_interval``.
        The report alone never ends a server. Cover the scheduler's kill grace (Slurm KillWait,
        30 s by default) with some margin.""",
    ).tag(config=True)

    end_report_interval = Float(
        0.5,
        help="Seconds between the job queries that follow an end report (see end_report_watch).",
    ).tag(config=True)

    unknown_grace = Float(
        600.0,
        help="Seconds of continuous *unknown* state after which the hub logs an error (the server is kept).",
    ).tag(config=True)

    chosen_by_user = Dict(
        help="""Request traits a wrapper set from the user's own choices (ProfilesSpawner fields).

        Set by wrapspawner, not configured: a scheduler that refuses the job then answers
        the user with HTTP 400 and its reason, as for ``user_options``."""
    )

    # ---------------------------------------------------------------- state kept
    job_id = Unicode("")
    job_status = Unicode("")  # last native state text, for templates and logs
    runner = Any(help="Runner for submit/cancel/log reads, as the user (injected in tests).")
    query_runner = Any(help="Runner for per-job queries (injected in tests).")

    scheduler_env_names = List(
        Unicode(),
        help="""More environment variables (names or glob patterns) of the hub that every scheduler
        command gets: submit, per-job query, cancel and the shared status query.

        Built in (see batchspawner.commands.policy.SCHEDULER_ENV_NAMES): PATH, LANG, LC_ALL, HOME, USER and
        the client variables of each scheduler (SLURM_CONF, SGE_ROOT, SGE_CELL, SGE_QMASTER_PORT,
        LSF_ENVDIR, LSF_SERVERDIR, PBS_CONF_FILE, PBS_*, CONDOR_CONFIG, _CONDOR_*...). Names that
        look like secrets (TOKEN, SECRET, PASSWORD, KEY) never reach a query or a cancel. With a
        sudo exec_prefix, sudo's own env_reset/env_keep still applies (the default ``sudo -E``
        keeps them).""",
    ).tag(config=True)

    @property
    def runner_policy(self) -> RunnerPolicy:
        """Who runs which command, as whom, with which environment (batchspawner/commands/policy.py)."""
        policy = self.__dict__.get("_runner_policy")
        if policy is None:
            policy = self.__dict__["_runner_policy"] = RunnerPolicy(self)
        return policy

    @default("runner")
    def _default_runner(self):
        if self.overrides_run_command():
            return CallableRunner(self.run_command, self.runner_policy.exec_prefix_argv(), self.command_timeout)
        return self.runner_policy.user_runner()

    @default("query_runner")
    def _default_query_runner(self):
        return self.runner

    def _make_runner(self, prefix_template):
        """A local runner with this prefix (formatted with the request variables and identity)."""
        policy = self.runner_policy
        if self.submit_hosts:
            return policy.user_runner()
        return policy.local_runner(split_command(prefix_template, **policy.prefix_vars()) if prefix_template else [])

    @validate("exec_prefix")
    def _check_exec_prefix(self, proposal):
        value = proposal["value"]
        try:
            shlex.split(value)
        except ValueError as e:
            raise TraitError(f"BatchSpawnerBase.exec_prefix is not a valid command: {e}")
        return value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._port_future = None
        self._events = []
        self._events_changed = asyncio.Event()
        self._phases = {}
        self._unknown_since = None
        self._grace_reported = False
        self._last_status = None
        self._started_at = None
        self._rerun_task = None  # issue 24: following a requeued job's rerun
        self._end_watch = None  # issue 24: looking at the job after its wrapper reported its end
        self._follow_cancelled = ""  # job whose follow was cancelled (a stop is coming)
        self._suspended_since = None  # issue 24: wall-clock time the job was seen suspended since
        self.suspended_seconds = 0.0  # suspended time seen so far (not counted by the scheduler)
        self._rerun_failed = ""
        self._starting = False  # submitted, not yet served (saved: a restart adopts it)
        self._restored_starting = False
        self._token_sha256 = ""
        self._bind_ip = None  # the configured ip, kept while self.ip holds the node's address
        self._cancel_accepted_for = ""  # stop(): the job whose cancel was just accepted
        self._ended_in_start = ""  # the job start() saw end before its server started
        # how the last job ended under a running server (poll() saw it end): kept through
        # clear_state and in the state, for the "your job ended" page; reset by the next start
        self.last_ended = None
        self.job_watch = JobWatch(self)
        self.leftovers = Leftovers(self)
        self._startup_notes()

    def _startup_notes(self):
        """Say once per class what a 1.3 configuration or subclass gets (docs/migration.md)."""
        cls = type(self).__name__
        for name in ("batch_submit_cmd", "batch_query_cmd", "batch_cancel_cmd", "batch_status_cmd"):
            template = getattr(self, name, "")
            if template and has_shell_syntax(template):
                warn_once(
                    self.log, (cls, name, template),
                    "%s.%s has shell syntax (; | > && $...): it runs through /bin/sh -c, with every "
                    "substituted value shell-quoted: %s", cls, name, template, level=logging.INFO,
                )  # fmt: skip
        why = shared_status_fits(self) if self.shared_status and self.batch_status_cmd else ""
        if why:
            warn_once(
                self.log, (cls, "shared"),
                "%s: %s, so each job is queried on its own with batch_query_cmd (as batchspawner 1.3 "
                "did). To share one status query, also set %s.batch_status_cmd to a command whose "
                "output that class's parse_batch_status reads.", cls, why, cls,
            )  # fmt: skip
        if self.overrides_run_command():
            warn_once(
                self.log, (cls, "run_command"),
                "%s overrides run_command (batchspawner 1.3): every scheduler command runs through it, "
                "as one shell-quoted string; submit_hosts and the shared status runner do not use it.", cls,
            )  # fmt: skip
        hooks = overridden_predicates(self)
        if hooks:
            warn_once(
                self.log, (cls, "hooks"),
                "%s overrides %s (batchspawner 1.3): they decide the job state from job_status; "
                "a failed query they do not recognise counts as unknown, not ended.", cls, ", ".join(hooks),
            )  # fmt: skip

    # ---------------------------------------------------------------- helpers
    def _identity_vars(self):
        name = self.user.name
        if not USERNAME_RE.match(name):
            raise SpawnFailed(
                f"User name {name!r} cannot be used as a system user name for batch jobs."
            )
        return {"username": name, "homedir": self.req_homedir}

    def request_vars(self) -> set[str]:
        """Names of the template variables that come from ``req_*`` traits."""
        return {n[4:] for n in self.trait_names() if n.startswith("req_")}

    def get_req_subvars(self):
        """Template variables from every ``req_*`` trait (batchspawner 1.3 name)."""
        subvars = {n[4:]: getattr(self, n) for n in self.trait_names() if n.startswith("req_") and n != "req_keepvars"}
        # not cached as the trait's value: read early (a poll after a hub restart formats commands
        # with these), it would miss what get_env() holds only once a spawn starts
        configured = "req_keepvars" in self._trait_values
        subvars["keepvars"] = self.req_keepvars if configured else self._req_keepvars_default()
        return subvars

    def cmd_formatted_for_batch(self):
        """The command the job runs: wrapper + cmd + args, each word shell-quoted.

        A string ``cmd`` (``c.Spawner.cmd = "/path/jupyterhub-singleuser --Opt=x"``; JupyterHub
        keeps it as a one-element list) is a command line, as batchspawner 1.3 treated it (its
        script's shell split it): a one-element ``cmd`` with white space is split into words with
        shell rules (quote a path with a space inside it: ``"'/opt/my apps/x' --opt"``). A list
        of several elements keeps each element one word."""
        cmd = list(self.cmd)
        if len(cmd) == 1 and any(c.isspace() for c in cmd[0]):
            try:
                cmd = shlex.split(cmd[0])
            except ValueError as e:
                raise SpawnFailed(f"{type(self).__name__}.cmd is not a valid command line: {e}") from None
        words = shlex.split(self.batchspawner_singleuser_cmd) + cmd + list(self.get_args())
        return shlex.join(words)

    def get_env(self):
        env = super().get_env()
        # JupyterHub >= 5 no longer keeps PATH. Give the submit command one (the hub's own,
        # with its bin directory first); it also puts PATH in keepvars. This PATH reaches
        # sbatch and the job only when the submit runs without sudo (exec_prefix = "") or
        # through a sudo without secure_path: Debian's sudo replaces it with secure_path.
        # What makes the default config work is the absolute batchspawner_singleuser_cmd
        # (and hub_bin_dir, which the script template can put first on the job's PATH).
        if "PATH" not in env:
            hub_bin = os.path.dirname(sys.executable)
            path = os.environ.get("PATH", os.defpath)
            env["PATH"] = hub_bin + os.pathsep + path if hub_bin not in path.split(os.pathsep) else path
        for key in ("LANG", "LC_ALL"):
            if key in os.environ and key not in env:
                env[key] = os.environ[key]
        if self.token_via_file:
            env.pop("JUPYTERHUB_API_TOKEN", None)
            env.pop("JPY_API_TOKEN", None)
            env["JUPYTERHUB_API_TOKEN_FILE"] = self._token_path()
        return env

    def _token_path(self):
        if not getattr(self, "_token_file", None):
            directory = self.token_dir.format(homedir=self.req_homedir, username=self.user.name)
            self._token_file = os.path.join(directory, f".jupyterhub-hpc-token-{secrets.token_hex(8)}")
        return self._token_file

    async def _write_token_file(self):
        """Create the token file as the user: new file (noclobber), mode 0600, token on stdin."""
        argv = ["sh", "-c", 'set -C; umask 077; cat > "$1"', "write-token", self._token_path()]
        try:
            await self.runner.run(argv, env=self.command_env(), stdin=self.api_token)
        except CommandError as e:
            raise SpawnFailed(f"Could not hand the server its token: {_first_line(e.stderr) or e.reason}") from e

    async def _remove_token_file(self):
        path = getattr(self, "_token_file", None)
        if not path:
            return
        self._token_file = None
        try:
            await self.runner.run(["rm", "-f", "--", path], env=self.command_env(), timeout=10)
        except CommandError as e:
            self.log.warning("%s: could not remove token file %s: %s", self._log_name, path, e.reason or e)

    def command_env(self):
        """Environment for queries and cancels: the scheduler variables, no tokens (runners.py)."""
        return self.runner_policy.command_env()

    def command_vars(self, job_id=""):
        """Variables for formatting command words: request values, job_id, identity."""
        subvars = self.get_req_subvars()
        subvars.update(self._identity_vars())
        subvars["job_id"] = job_id
        return subvars

    def template_vars(self, user_values=None):
        subvars = self.get_req_subvars()
        subvars.update(user_values or {})
        if subvars.get("keepvars_extra"):
            subvars["keepvars"] = ",".join(v for v in (subvars["keepvars"], subvars["keepvars_extra"]) if v)
        subvars["cmd"] = self.cmd_formatted_for_batch()
        subvars["log_path"] = self.format_log_path(self.job_id_placeholder)
        subvars["hub_bin_dir"] = shlex.quote(self.hub_bin_dir) if self.hub_bin_dir else ""
        subvars["no_requeue"] = not self.follow_requeue  # issue 24
        return subvars

    def format_log_path(self, job_id):
        if not self.log_path:
            return ""
        return self.log_path.format(**joblogs.log_format_vars(self, job_id))

    def render_script(self, user_values=None):
        return format_template(self.batch_script, **self._checked_script_vars(user_values))

    def _checked_script_vars(self, user_values=None):
        """template_vars(), refused if a value holds a newline where the script does not allow one.

        A request trait the site configured (``req_*`` in the config or the class, e.g. a
        ``req_env_text`` of several ``export`` lines) is the site's own text and may span lines
        where the template gives it whole lines (a line that is only ``{env_text}`` or
        ``{{ env_text }}``), like prologue/epilogue; anywhere else (``#SBATCH -p {queue}``) a
        newline would add a line, so it is refused. A value a user chose (``user_options``, a
        wrapper's field in ``chosen_by_user``) never spans lines, wherever it goes."""
        subvars = self.template_vars(user_values)
        from_users = set(user_values or ()) | {k[4:] if k.startswith("req_") else k for k in self.chosen_by_user}
        whole_lines = set(re.findall(r"(?m)^[ \t]*(?:\{(\w+)\}|\{\{-?\s*(\w+)\s*-?\}\})[ \t]*$", self.batch_script))
        whole_lines = {a or b for a, b in whole_lines}
        site_text = (self.request_vars() & whole_lines) - {"username", "homedir"} - from_users
        site_text |= {"prologue", "epilogue", "cmd"} - from_users
        for key, value in subvars.items():
            if key in site_text:
                continue
            if isinstance(value, str) and has_control_chars(value):
                raise SpawnFailed(f"Template value {key!r} contains a newline or control character.")
        return subvars

    def run_options_from_form(self, form_data):
        """JupyterHub's call on a form post: the site's options_from_form, whose keys are then the
        site's own (``batchspawner.core.options.record_form_options``)."""
        options = super().run_options_from_form(form_data)
        if inspect.isawaitable(options):
            async def recorded():
                return record_form_options(self, await options)

            return recorded()
        return record_form_options(self, options)

    async def _get_batch_script(self, **subvars):
        """batchspawner 1.3's hook: the script text from the template variables.

        A subclass that overrides it is called with the checked variables
        (``_checked_script_vars``) and what it returns is submitted; ``super()._get_batch_script``
        renders ``batch_script`` with them."""
        return format_template(self.batch_script, **subvars)

    def _event(self, progress, message):
        self._events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self._log_name, message)
        self._wake_progress()

    def _wake_progress(self):
        """Wake every progress() stream waiting for a new event."""
        changed, self._events_changed = self._events_changed, asyncio.Event()
        changed.set()

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
        if type(self)._get_batch_script is not BatchSpawnerBase._get_batch_script:
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
        return self._record_status(status)

    _warned_silent = False  # empty_query_means_finished explained once per process

    async def _confirm_gone(self, claim: JobStatus, job_id: str) -> JobStatus:
        """Ask the second source (batch_confirm_cmd) about a job the per-job query did not find."""
        silent = claim.extra.get("silent")
        if silent and not BatchSpawnerBase._warned_silent:
            BatchSpawnerBase._warned_silent = True
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
        return type(self).run_command is not BatchSpawnerBase.run_command

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

    def _record_status(self, status: JobStatus) -> JobStatus:
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

    # ---------------------------------------------------------------- state
    def load_state(self, state):
        super().load_state(state)
        self.job_id = state.get("job_id", "")
        self.job_status = state.get("job_status", "")
        if self.tunnel is not None:
            self.tunnel.load_state(state.get("tunnel") or {})
        self._endpoint = None
        if self.job_id:
            _REPORTED.add(self)  # issue 21 (8): its address counts as taken
        self.log_file = state.get("log_file", "") if self.job_id else ""
        # issue 24: a start the hub was still waiting for when it stopped is adopted by poll()
        self._restored_starting = bool(state.get("starting")) if self.job_id else False
        digest = state.get("token_sha256") if self.job_id else ""
        self._token_sha256 = digest if isinstance(digest, str) else ""
        self.submitted_at = float(state.get("submitted_at") or 0) if self.job_id else 0.0
        ended = state.get("last_ended")
        self.last_ended = dict(ended) if isinstance(ended, dict) and ended.get("job_id") else None
        if "uncancelled_jobs" in state:
            self.uncancelled_jobs = [
                dict(e) for e in state["uncancelled_jobs"] or [] if isinstance(e, dict) and e.get("job_id")
            ]

    def get_state(self):
        state = super().get_state()
        if self.job_id:
            state["job_id"] = self.job_id
            state["job_status"] = self.job_status
            if self.tunnel is not None and self.tunnel.get_state():
                state["tunnel"] = self.tunnel.get_state()
            state["log_file"] = self.log_file
            state["submitted_at"] = self.submitted_at
            if getattr(self, "_starting", False):
                state["starting"] = True  # issue 24: adopted after a hub restart
            digest = self.token_digest()
            if digest:
                state["token_sha256"] = digest  # to know the job's own report after a restart
            try:  # the REST API's server model shows the session card's facts (caches only)
                facts = self.session_facts()
            except Exception:  # never fail a state save over display facts
                self.log.exception("%s: session facts", self._log_name)
                facts = None
            if facts:
                state["session"] = facts
        if self.uncancelled_jobs:
            state["uncancelled_jobs"] = [dict(e) for e in self.uncancelled_jobs]
        if self.last_ended:
            state["last_ended"] = dict(self.last_ended)
        return state

    def clear_state(self):
        # uncancelled_jobs stays: the hub clears the state after every stop (even a failed
        # one) and before every start, and must not forget a job that may still run. For the
        # same reason a job whose cancel was not recorded moves there (the next start
        # cancels it): clear_state() cannot await a cancel itself.
        if self.job_id and not self.leftovers.may_forget(self.job_id):
            self.leftovers.keep()
        super().clear_state()
        self._forget_job()
        self._untrack_session(self.job_id)
        self.job_id = ""
        self.job_status = ""
        self.log_file = ""
        self.submitted_at = 0.0
        self._starting = False
        self._restored_starting = False
        self._token_sha256 = ""

    state_saver = Any(
        None,
        help="""Callable that persists state right after submission (set by wrappers, which
        save their own state around the child's); by default this spawner's own row is saved.""",
    )

    def _save_state_now(self):
        """Persist the job id at once, so a hub restart during start cannot lose it."""
        if self.state_saver is not None:
            self.state_saver()
        else:
            save_spawner_state(self)

    # ---------------------------------------------------------------- Spawner API
    async def start(self):
        """Submit the job and wait until its server listens; return ``(ip, port)``.

        The phases, each stamped (monotonic clock) in the log and in the
        ``batchspawner_spawn_phase_seconds`` histogram by :meth:`_phase`:

        1. **submit**: the batch script is submitted; the job id is saved at once.
        2. **running**: the scheduler shows the job running, or the job's port report arrives
           first (a job that reports runs: one forced status round, or a per-job query when
           rounds fail, then gives its host).
        3. **port**: the job reports the port its *own* server already listens on
           (``batchspawner-singleuser`` reports only once /proc shows that its child holds the
           listening socket; a job that ends or cannot start fails the spawn meanwhile).
        4. **listening**: the hub connects to that port at the host's address in the address
           family the server binds (``ip``), never a name a resolver may turn into the other
           family, where a co-tenant could listen on the same port. One connect normally; a
           bounded backoff probe serves wrappers that report before their server listens.
        5. **ready** (after this returns): JupyterHub's own HTTP check passed.
        """
        await self.check_account()  # issue 21: never as root, slurm, munge, uid < min_uid
        refused = refused_in_this_request(self)
        if refused is not None:  # the hub's same-request retry of refused options
            raise refused
        try:
            user_values = validate_spawner_user_options(self)
        except OptionError as e:
            forget_user_options(self, e)  # refused options must not come back at the next plain Start
            raise
        await self._resolve_homedir()
        if self._bind_ip is None:
            self._bind_ip = self.ip  # what the server binds; self.ip is the node's address after a start
        self.ip = self._bind_ip
        self.last_ended = None
        self._rerun_failed = ""
        self._suspended_since = None
        self.suspended_seconds = 0.0
        self._events = []
        self._started_at = time.monotonic()
        self._phases = {"start": self._started_at}
        self._unknown_since = None
        self._grace_reported = False
        if self.job_id or self.uncancelled_jobs:
            await self.leftovers.settle_all()
        self.port = 0
        loop = asyncio.get_running_loop()
        self._port_future = loop.create_future()
        try:
            self._token_file = None
            if self.token_via_file:
                await self._write_token_file()
            await joblogs.prepare_log_dir(self)  # issue 14: private log folder, pruned
            self.job_id = await self.submit_batch_script(user_values)
            self._starting = True  # issue 24: saved now; a hub restart adopts the start
            self._session_submitted()  # issue 14: log file, card, usage log
            self._save_state_now()
            self._phase("submit")
            self._event(10, f"Job {self.job_id} submitted to the batch system.")
            host = await self._wait_until_running()
            self._phase("running")
            self._session_running()  # issue 14
            self._event(60, f"Job {self.job_id} is running on {host}; waiting for the server to start.")
            if hasattr(self, "mock_port"):  # batchspawner 1.3's test hook (sites' own tests set it)
                return self._mock_started(host)
            port = await self._wait_for_port()
            self._phase("port")
            # the server's own address family only, as a literal address (see connect_address),
            # in both modes: a tunnel forwards to it, never to a name the login node resolves
            target = await self.connect_address(self.resolve_host(host))
            self._claim_address(target, port)  # issue 21 (8): not another server's address
            if self.tunnel is not None:  # i15: the hub reaches the node only via a login node
                ip, port = await self._open_tunnel(target, port)
            else:
                ip = target
            await self._wait_for_listen(ip, port)
            await self._prove_server(ip, port, self._job_endpoint())
            self._phase("listening")
            self._event(90, f"Server is listening on {ip}:{port}.")
        except BaseException as e:
            await self._remove_token_file()
            self._endpoint = None
            if self.tunnel is not None:
                await self.tunnel.close()
            self._session_failed(e)  # issue 14: usage log
            if self._ended_in_start == self.job_id and self.job_id:
                # the scheduler showed the job ended: cancelled (idempotent) and forgotten, as 1.3
                # cleared it; the hub's stop() that follows has nothing left to do
                await self.leftovers.cancel_before_forget(self.job_id, "ended before its server started")
                self.clear_state()
                self._save_state_now()
            raise
        finally:
            self._port_future = None
        self._session_started()  # issue 14: usage log
        self._starting = False
        self.port = port
        self.ip = ip  # as in 1.3, the address the hub reaches the server at (start() resets it)
        self._stamp_ready_later()
        return (ip, port)

    def _mock_started(self, host):
        """1.3's ``mock_port`` test hook: the job counts as started at ``(host, mock_port)``.

        batchspawner 1.3 let tests set ``spawner.mock_port`` instead of running a server; sites'
        own test suites do. Nothing is checked then (no port report, no connect, no proof), so
        it is a test-only attribute: never set it on a hub's spawner. Said once in the log."""
        warn_once(
            self.log, (type(self).__name__, "mock_port"),
            "%s.mock_port is set (batchspawner 1.3's test hook): servers count as started at the "
            "scheduler's host and that port without any check. Never set it on a real hub.",
            type(self).__name__,
        )  # fmt: skip
        self._port_future = None
        self._starting = False
        self.ip = host
        self.port = int(self.mock_port)
        return (self.ip, self.port)

    def _job_endpoint(self):
        """(numeric node address, port) of this spawner's job server, or None."""
        if not self.job_id:
            return None
        claimed = getattr(self, "_endpoint", None)  # (job id, address, port) set by this hub's start()
        if claimed:
            if claimed[0] == self.job_id:
                return claimed[1:]
            self._endpoint = None  # an earlier job's
        if self.tunnel is not None and self.tunnel.remote_port:
            return (_proof.normalize(self.tunnel.remote_host), self.tunnel.remote_port)
        try:
            server = self.server
            if server is not None and server.port and self.tunnel is None:
                return (_proof.normalize(server.ip), int(server.port))
        except Exception:  # no database row (tests, a half-built spawner)
            pass
        return None

    def _claim_address(self, address, port):
        """Refuse a reported address and port that another running or starting server of this hub uses."""
        endpoint = (_proof.normalize(address), int(port))
        for other in list(_REPORTED):
            if other is self or other._job_endpoint() != endpoint:
                continue
            self.log.error(
                "%s: job %s reported port %d on %s, which is already the address of %s's server (job %s); "
                "refused: a job may only report its own server's port",
                self._log_name, self.job_id, port, endpoint[0], getattr(other, "_log_name", "another"), other.job_id,
            )
            raise SpawnFailed(
                f"Your job {self.job_id} reported a port on {endpoint[0]} that another server of this hub "
                "already uses, so the hub will not connect you there. If you did not change the job's "
                "start command, please try again and tell your site's support."
            )
        self._endpoint = (self.job_id, *endpoint)
        _REPORTED.add(self)

    async def _prove_server(self, ip, port, expect, restored=False):
        """Issue 21: the server answering on ip:port proves it holds this server's token
        (batchspawner/job/proof.py), when ``server_proof`` asks for it."""
        mode = self.server_proof.lower()
        claimed = getattr(self, "_proof_claimed", False) or restored
        if mode == "off" or (mode == "auto" and not claimed):
            if mode == "auto":
                self.log.warning(
                    "%s: job %s's server on %s:%s is not verified: its wrapper does not offer the "
                    "batchspawner proof (set server_proof = 'required' once every job runs "
                    "batchspawner-singleuser with Jupyter Server)", self._log_name, self.job_id, expect[0], expect[1])
            return
        if getattr(self, "internal_ssl", False):
            raise SpawnFailed(
                "The hub cannot check your server (server_proof with internal_ssl is not supported). "
                "Tell your site's support: set server_proof to 'auto' or 'off' with internal_ssl."
            )
        base_url = getattr(self.server, "base_url", None) or self.user.url
        try:
            await _proof.probe(ip, port, base_url, self.api_token or "", expect)
        except _proof.ProofError as e:
            self.log.error("%s: job %s: the server on %s:%s could not prove it is this job's server: %s",
                           self._log_name, self.job_id, expect[0], expect[1], e)
            raise SpawnFailed(
                f"The hub could not prove that the server answering on the port your job {self.job_id} "
                f"reported is yours ({e}), so it does not connect you to it. Please try again; if it keeps "
                "happening, tell your site's support."
            ) from None
        if self.tunnel is not None:
            self.tunnel.proved = True
        self.log.info("%s: job %s's server proved its token on %s:%s", self._log_name, self.job_id, *expect)

    async def get_url(self):
        """JupyterHub asks this after a hub restart: a tunnel may have had to move to another
        local port (its old one taken meanwhile), and the route must follow it."""
        task = self._rerun_task
        if task is not None and getattr(self, "_adopting", False):
            # issue 24: JupyterHub asks this while it checks a restored server, then waits
            # http_timeout for it to answer: let that check wait for the adopted start instead
            await asyncio.wait({task})
        url = await super().get_url()
        if self.tunnel is None or not self.tunnel.is_open or not self.tunnel.local_port:
            return url
        from urllib.parse import urlparse, urlunparse

        parts = urlparse(url)
        host = self.tunnel.local_host
        return urlunparse(parts._replace(netloc=f"{host}:{self.tunnel.local_port}"))

    async def _reopen_tunnel(self):
        """poll(): keep the forward; after a move, prove again and move the route. False: end the server."""
        tunnel = self.tunnel
        was_open = tunnel.is_open
        if not await tunnel.reopen():
            return False
        if was_open:
            return True
        restored = tunnel.get_state().get("proved") or getattr(self, "_proof_claimed", False)
        if not tunnel.proved and (restored or self.server_proof.lower() == "required"):
            try:
                await self._prove_server(tunnel.local_host, tunnel.local_port,
                                         (tunnel.remote_host, tunnel.remote_port), restored=True)
            except SpawnFailed:
                return False
            tunnel.proved = True
        self._save_state_now()
        if tunnel.moved:
            await self._move_route()
        return True

    async def _move_route(self):
        """While the hub runs: point the server's address and the proxy route at the new local port.
        (At a hub start JupyterHub does this itself from get_url() and its route check.)"""
        try:
            server = self.server
            if server is None or server.port == self.tunnel.local_port:
                return
            server.ip, server.port = self.tunnel.local_host, self.tunnel.local_port
            if getattr(self, "db", None) is not None:
                self.db.commit()
            proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
            if proxy is not None and self.ready:
                await proxy.add_user(self.user, self.name)
        except Exception:
            self.log.exception("%s: could not move the route to the tunnel's new port", self._log_name)

    async def _open_tunnel(self, node, port):
        try:
            local = await self.tunnel.open(node, port)
        except TunnelError as e:
            raise SpawnFailed(
                f"The hub could not reach your server on {node} through the login node "
                f"{self.tunnel_login_host}: {e}. Ask your site's support to check the tunnel."
            ) from e
        self._save_state_now()  # a hub restart from here reopens the tunnel on the same port
        self._event(80, f"Connected to {node}:{port} through {self.tunnel_login_host}.")
        return local

    def _phase(self, name):
        """Stamp the end of a start phase: log it and observe its duration in the histogram."""
        phases = getattr(self, "_phases", None)
        if not phases:
            return
        now = time.monotonic()
        previous = max(phases.values())
        phases[name] = now
        metrics.SPAWN_PHASE_SECONDS.labels(phase=name).observe(now - previous)
        self.log.info(
            "%s: spawn phase %s done at +%.3f s (took %.3f s)", self._log_name, name, now - phases["start"], now - previous
        )

    def _stamp_ready_later(self):
        """Stamp "ready" when JupyterHub's spawn (its HTTP check included) has succeeded."""
        spawn = getattr(self, "_spawn_future", None)
        if spawn is None or spawn.done():
            return

        def done(fut):
            if not fut.cancelled() and fut.exception() is None:
                self._phase("ready")

        spawn.add_done_callback(done)

    def resolve_host(self, host):
        """The address the hub connects to; ``state_exechost_exp`` already mapped names.

        No host is never loopback, unless the admin declared ``local_executor``.
        """
        host = usable_host(host)
        if host:
            return host
        if self.local_executor:
            return "127.0.0.1"
        raise SpawnFailed(
            f"The batch system did not say on which host job {self.job_id} runs, so the hub cannot "
            "connect to it. Please try again; if it keeps happening, tell your site's support."
        )

    async def connect_address(self, host):
        """``host`` as a literal address in the family the server binds (``ip``).

        The server binds one family (IPv4 for the default ``0.0.0.0``). A host name may
        resolve to the other one first (``localhost`` -> ``::1``), where another user on the
        node can listen on the same port number: the hub then connects, and the proxy routes,
        only to the address of the server's own family.
        """
        bind = self._bind_ip if self._bind_ip is not None else self.ip  # self.ip: the node's, after a start
        family = socket.AF_INET6 if ":" in (bind or "") else socket.AF_INET
        try:
            if ipaddress.ip_address(host).version == (6 if family == socket.AF_INET6 else 4):
                return host
        except ValueError:
            pass
        cached = _ADDRESSES.get((host, family))
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM)
        except OSError as e:
            infos, reason = [], getattr(e, "strerror", None) or str(e)
        else:
            reason = "no address"
        if infos:
            # a storm of spawns on a few nodes resolves each node once a minute (a resolver thread
            # per spawn otherwise); only successful answers are kept
            if len(_ADDRESSES) > 10_000:
                _ADDRESSES.clear()
            _ADDRESSES[(host, family)] = (infos[0][4][0], time.monotonic() + ADDRESS_TTL)
        if not infos:
            name = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise SpawnFailed(
                f"The job {self.job_id} runs on {host}, but the hub cannot find an {name} address for "
                f"that host ({reason}). Ask your site's support to check the node's name resolution."
            )
        return infos[0][4][0]

    async def _job_ended(self, status):
        self._ended_in_start = self.job_id  # start() forgets it (see there)
        # how it ended, for the home page's note ("did not start, nothing lost"): start() forgets
        # the job, so poll() will not see the end (issue 26)
        self.last_ended = sessions.ended_record(self.job_id, status.native, status.exit_code, served=False)
        poller = self.details_poller(create=False)
        if poller is not None and self.job_id in poller.jobs:
            await poller.refresh(max_age=0, everything=True)  # its exit status, for the failure page (one query)
        tail = await self.read_log_tail()
        what = f"The batch job {self.job_id} ended before your server started"
        todo = ""
        if (status.native or "").upper().startswith("CANCELLED"):  # not this page's Cancel (that cancels the spawn)
            what = (f"The batch job {self.job_id} was cancelled before your server started, outside this page: "
                    "by an administrator or the batch system")
            todo = ("Start again. If it is cancelled again, ask your site's support why (give them the job id). "
                    "Nothing ran, so nothing is lost.")
        raise self._spawn_failure(what, status, tail, todo)

    def _spawn_failure(self, what, status, tail, todo=""):
        """SpawnFailed saying what happened, the scheduler's words, the log's tail and what to do (issue 14)."""
        # the tail is the user's own file and read_log_tail may be a subclass's: bound it here too (issue 21)
        tail = joblogs.bounded_tail(tail, self.log_tail_lines)
        poller = self.details_poller(create=False)
        det = poller.details.get(self.job_id, {}) if poller else {}
        if det.get("native") in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            det = {}  # from before the job ended: its exit status is not known there
        facts = []
        if status is not None:
            facts.append(f"job state {status.native or status.state.value}")
        # the details query reads the job's own exit status; the state query's (if any, not 0) is a fallback
        exit_code = det.get("exit_code") if det.get("exit_code") not in (None, "") else (
            status.exit_code if status is not None and status.exit_code else None)
        if det.get("signal"):
            facts.append(f"ended by signal {det['signal']}")
        elif exit_code is not None:
            facts.append(f"exit code {exit_code}")
        if status is not None and status.reason and status.reason != "None":
            facts.append(f"scheduler's reason: {str(self.explain_reason(status.reason))[:400]}")
        todo = todo or (
            "Check the job's log (its last lines are shown; the whole log is in " + (self.log_file or "your home directory") + "), "
            "change the resources or profile if they caused it, then start again. "
            "If it keeps failing, send the job id to your site's support."
        )
        msg = f"{what} ({'; '.join(facts) or 'no details from the scheduler'})."
        msg += "\nLast lines of the job's log:\n" + tail if tail else " The job left no log to show."
        msg += "\nWhat to do: " + todo
        self.log.error("%s: %s", self._log_name, msg)
        html_msg = (
            f'<div class="hpc-failure"><p class="hpc-what"><strong>{escape(what)}.</strong></p>'
            f'<p class="hpc-facts">{escape("; ".join(facts) or "No details from the scheduler.")}</p>'
            + (f'<p>Last lines of the job\'s log:</p><pre class="hpc-log-tail">{escape(tail)}</pre>' if tail
               else "<p>The job left no log to show.</p>")
            + f'<p class="hpc-todo">What to do: {escape(todo)}</p></div>'
        )
        return JobDidNotStart(msg, html_msg)

    async def _fail_if_cannot_start(self, status):
        """While starting: fail the spawn when the job ended, or waits on something only a person can fix."""
        if status.state is JobState.FINISHED:
            await self._job_ended(status)
        blocker = self.start_blocker(status) if status.state is JobState.PENDING else ""
        if blocker:
            tail = await self.read_log_tail()
            raise self._spawn_failure(f"The batch job {self.job_id} cannot start: {blocker}", status, tail)

    async def _until_reported(self, timeout):
        """Sleep ``timeout`` seconds, or less if the job reports its port meanwhile."""
        fut = self._port_future
        if fut is None or fut.done():
            await asyncio.sleep(timeout)
        else:
            await asyncio.wait({fut}, timeout=timeout)

    async def _status_or_report(self, max_age):
        """The job's state (no older than ``max_age``), or None as soon as the job reports its port."""
        fut = self._port_future
        query = asyncio.ensure_future(self.job_status_now(max_age=max_age))
        if fut is None:
            return await query
        done, _ = await asyncio.wait({query, fut}, return_when=asyncio.FIRST_COMPLETED)
        if query in done:
            return query.result()
        query.cancel()
        return None

    async def _status_after_report(self):
        """The job reported, so it runs: one forced status round for its host, or one per-job
        query when the shared rounds fail."""
        status = await self.job_status_now(max_age=0)
        if status.state is JobState.UNKNOWN and self.uses_shared_status():
            status = await self.query_job_status()
        return status

    async def _wait_until_running(self):
        """Wait until the job runs on a host the scheduler named (or its port report ends the
        wait early); returns that host."""
        last = None
        submitted = time.monotonic()
        no_host_since = None
        while True:
            if self._port_future is not None and self._port_future.done():
                status = await self._status_after_report()
            else:
                status = await self._status_or_report(self.startup_poll_interval)
                if status is None:
                    continue
            if status.state is JobState.RUNNING:
                host = usable_host(status.host)
                if host or self.local_executor:
                    metrics.QUEUE_WAIT_SECONDS.observe(time.monotonic() - submitted)
                    return host
                no_host_since = await self._wait_for_host(status, no_host_since)
                await asyncio.sleep(self.startup_poll_interval)
                continue
            await self._fail_if_cannot_start(status)
            desc = status.describe()
            if status.state is JobState.PENDING:  # issue 14: position and estimated start
                desc += await sessions.queue_note(self)
            if desc != last:
                last = desc
                if status.state is JobState.PENDING:
                    if status.reason:
                        desc = desc.replace(f"({status.reason})", f"({self.explain_reason(status.reason)})")
                    self._event(20, f"Job {self.job_id} is waiting in the queue: {desc}.")
                else:
                    self._event(20, f"Job {self.job_id} state not known yet: {status.reason}.")
            await self._until_reported(self.startup_poll_interval)

    async def _wait_for_host(self, status, since):
        """A RUNNING job without a host is not placed yet: say so, fail after host_wait_timeout."""
        now = time.monotonic()
        if since is None:
            self.log.warning(
                "%s: job %s is %s but the scheduler named no usable host (%r); waiting",
                self._log_name, self.job_id, status.native or "running", status.host,
            )
            self._event(
                40,
                f"Job {self.job_id} is running, but the batch system has not said on which host yet; waiting.",
            )
            return now
        if now - since > self.host_wait_timeout:
            msg = (
                f"The batch job {self.job_id} has been running for {now - since:.0f} s but the batch system "
                "never said on which host, so the hub cannot connect to it. The job is cancelled; please "
                "try again, and tell your site's support if it keeps happening."
            )
            self.log.error("%s: %s (last answer: %s)", self._log_name, msg, status.describe())
            raise SpawnFailed(msg)
        return since

    async def _wait_for_port(self):
        """Until the job reports; check that it still runs every ``running_check_interval``."""
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(self._port_future), self.running_check_interval)
            except asyncio.TimeoutError:
                pass
            status = await self.job_status_now(max_age=self.running_check_interval)
            await self._fail_if_cannot_start(status)

    async def _wait_for_listen(self, ip, port):
        """Connect once: the job reported a port its server already listens on.

        A wrapper that reports before its server listens (batchspawner 1.3's, a custom one)
        gets a bounded backoff probe (0.05 s doubling to 1 s), and a job check every
        ``running_check_interval``."""
        last_check = time.monotonic()
        delay = 0.05
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
                writer.close()
                return
            except (OSError, asyncio.TimeoutError):
                pass
            if time.monotonic() - last_check >= self.running_check_interval:
                last_check = time.monotonic()
                status = await self.job_status_now(max_age=self.running_check_interval)
                await self._fail_if_cannot_start(status)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def report_port(self, port: int, proof: bool = False):
        """Called by the hub's API handler when the job reports its port (``proof``: the wrapper
        says its server answers the hub's proof, see server_proof)."""
        fut = self._port_future
        if fut is None or fut.done():
            raise web.HTTPError(403, "This server is not waiting for a port (already reported, or not starting).")
        self._proof_claimed = bool(proof)
        fut.set_result(port)
        self.log.info("%s: job %s reported port %d", self._log_name, self.job_id, port)

    async def poll(self):
        # no _resolve_homedir() here: start() did it for this spawner; only the first poll of a
        # spawner restored at hub startup (before the hub serves requests) looks it up inline,
        # and an await here would split one shared status round of many polls into two
        if not self.job_id:
            return 1  # 1.3: no job is a stopped server with exit status 1
        if self.leftovers.may_forget(self.job_id):
            self.clear_state()  # seen ended (or cancelled and seen gone): forgotten, as 1.3 did
            self._save_state_now()  # saved at submit, so forgotten in the database too
            return 1
        self._track_session()  # issue 14: session card facts (idempotent)
        status = await self.job_status_now()
        if status.state is JobState.FINISHED:
            # issue 14: the pages say how and when the job ended (scancel, wall time, node failure)
            self.last_ended = sessions.ended_record(self.job_id, status.native, status.exit_code,
                                                    served=not (self._starting or self._restored_starting))
            if getattr(self, "_served_at", None):  # issue 14: usage log (walltime, scancel)
                report.record(self, "stop", outcome="ended", reason=status.describe(),
                              run_time=time.time() - self._served_at)
                self._served_at = None
            # the hub forgets the job after this (clear_state): cancel it first, as its user
            await self.leftovers.cancel_before_forget(self.job_id, f"has ended ({status.describe()})")
            self._forget_job()
            if self._rerun_task is not None:  # issue 24: no rerun to follow any more
                self._rerun_task.cancel()
            if self.tunnel is not None:
                await self.tunnel.close()
            code = 1 if status.exit_code is None else (status.exit_code or 1)
            self.clear_state()  # 1.3: an ended job is forgotten by poll() (cancelled first, above)
            self._save_state_now()
            return code
        if self._rerun_failed:
            return 1  # issue 24: the requeued job's rerun cannot be followed; stop() cancels it
        if self._restored_starting and self._rerun_task is None and not getattr(self, "_spawn_pending", False):
            # issue 24: the hub restarted while this start waited: go on waiting, as a pending start
            self._restored_starting = False
            self._follow(f"The hub restarted while your server was starting; it goes on following your "
                         f"job {self.job_id}.", adopt=True)
            return None
        if (status.state is JobState.PENDING and self._rerun_task is None
                and self._follow_cancelled != self.job_id  # Cancel pressed: the hub's stop follows
                and not getattr(self, "_spawn_pending", False) and not self.job_is_suspended(status)
                and not getattr(self._hub_spawner(), "_stop_pending", False)):  # a stop cancels it anyway
            # issue 24: a ready server's job left RUNNING without ending (requeue, hold, node failure)
            await self._job_back_in_queue(status)
            return 1 if self._rerun_failed else None
        if self.tunnel is not None and status.state is JobState.RUNNING:
            # after a hub restart, or if the relay died; a route must never point at a port the
            # hub does not hold: when no forward can be rebuilt, the server ends (issue 21)
            if not await self._reopen_tunnel():
                reason = (f"its ssh tunnel through {self.tunnel_login_host} could not be rebuilt "
                          "(see the errors above)")
                self.log.error("%s: ending the server of job %s: %s. The user can start a new one.",
                               self._log_name, self.job_id, reason)
                await self.leftovers.cancel_before_forget(self.job_id, reason)
                await self.tunnel.close()
                self._endpoint = None
                self._forget_job()
                return 1
        return None

    # ---------------------------------------------------------------- issue 24: requeued jobs
    SUSPENDED_WORDS = frozenset({"SUSPENDED", "S", "T", "USUSP", "SSUSP", "PSUSP"})

    def job_is_suspended(self, status: JobStatus) -> bool:
        """A suspended job keeps its processes (and its port): it is not back in the queue."""
        return (status.native or "").split(" ")[0].upper() in self.SUSPENDED_WORDS

    def _requeue_words(self, status: JobStatus) -> str:
        return self.requeue_cause(status.reason or "")

    def _hub_spawner(self):
        """The spawner JupyterHub holds: this one, or the wrapper (ProfilesSpawner) around it."""
        outer, seen = self, 0
        while getattr(outer, "wrapper_spawner", None) is not None and seen < 5:
            outer, seen = outer.wrapper_spawner, seen + 1
        return outer

    async def _unroute(self):
        """Remove this server's proxy route (the server stays in the hub)."""
        outer = self._hub_spawner()
        proxy = (getattr(outer.user, "settings", None) or {}).get("proxy")
        if proxy is None:
            return  # at hub startup: check_routes drops routes of servers that are not ready
        try:
            await proxy.delete_user(outer.user, outer.name)
        except Exception as e:
            self.log.error("%s: could not remove the route of job %s's server: %s", self._log_name, self.job_id, e)

    async def _job_back_in_queue(self, status: JobStatus):
        """The job of a ready server is pending again: unroute now; follow the rerun or end cleanly."""
        why = self._requeue_words(status)
        if not self.follow_requeue:
            self._rerun_failed = (
                f"The scheduler put your job {self.job_id} back in the queue ({why}). This site does not "
                "follow requeued jobs, so your server has ended and the job is cancelled; unsaved work in "
                "it is lost. Start a new server."
            )
            self.log.warning("%s: job %s left RUNNING and is back in the queue (%s); follow_requeue is off: "
                             "ending the server", self._log_name, self.job_id, status.describe())
            self.last_ended = sessions.ended_record(self.job_id, "REQUEUED", None)
            await self._unroute()
            await self.leftovers.cancel_before_forget(self.job_id, f"was put back in the queue ({status.describe()})")
            self._forget_job()
            if self.tunnel is not None:
                await self.tunnel.close()
            return
        self.log.warning("%s: job %s left RUNNING and is back in the queue (%s): its route is removed and the "
                         "hub follows its rerun (follow_requeue)", self._log_name, self.job_id, status.describe())
        self._follow(
            f"The scheduler put your job {self.job_id} back in the queue ({why}); your server will be back "
            "when it runs again; unsaved work in it is lost."
        )
        await self._unroute()
        if self.tunnel is not None:
            await self.tunnel.close()

    def _follow(self, message, adopt=False):
        """Make this server a pending start again, waiting for its job's (next) port report."""
        outer = self._hub_spawner()
        outer._spawn_pending = True  # JupyterHub: not ready, not routed, the spawn page shows our progress
        self._spawn_pending = True
        self._events = []
        self.port = 0
        self._endpoint = None
        self._proof_claimed = False
        self._port_future = asyncio.get_running_loop().create_future()
        self._starting = True
        self._adopting = adopt
        self._event(5, message)
        task = asyncio.ensure_future(self._follow_rerun())
        self._rerun_task = task
        outer._spawn_future = task  # the spawn page and its Cancel act on it, as for a first start
        task.add_done_callback(self._rerun_done)
        self._save_state_now()  # "starting": a hub restart from now on adopts it again

    def token_digest(self) -> str:
        token = getattr(self, "api_token", "") or ""
        if token:
            return hashlib.sha256(token.encode()).hexdigest()
        return getattr(self, "_token_sha256", "") or ""

    def owns_server_token(self, token: str) -> bool:
        """This server's token (after a hub restart known only by its SHA-256 in the state)."""
        if not token:
            return False
        want = hashlib.sha256(token.encode()).hexdigest()
        return any(d and hmac.compare_digest(d, want) for d in (self.token_digest(), self._token_sha256))

    def job_end_reported(self) -> bool:
        """The job's wrapper says its server ended (issue 24): look at the job now and, until it
        shows ended (or back in the queue), every ``end_report_interval`` for ``end_report_watch``
        seconds; JupyterHub's poll callbacks then remove the route. The report alone never ends
        the server. False when there is no job to look at."""
        if not self.job_id:
            return False
        self.log.info("%s: job end reported by job %s's wrapper; looking at the job now", self._log_name, self.job_id)
        if self._end_watch is None or self._end_watch.done():
            self._end_watch = asyncio.ensure_future(self._watch_end(self.job_id))
        return True

    async def _watch_end(self, job_id):
        outer = self._hub_spawner()
        deadline = time.monotonic() + self.end_report_watch
        try:
            while self.job_id == job_id:
                status = await self.job_status_now(max_age=0)
                if status.state is JobState.FINISHED or (
                        status.state is JobState.PENDING and not getattr(self, "_spawn_pending", False)):
                    if not getattr(outer, "_spawn_pending", False) and not getattr(outer, "_stop_pending", False):
                        await outer.poll_and_notify()  # poll() decides; its callbacks unroute and stop
                    return
                if time.monotonic() >= deadline:
                    self.log.warning("%s: job %s's wrapper reported its end, but the job still shows %s "
                                     "after %.0f s; the hub's regular polls go on", self._log_name, job_id,
                                     status.describe(), self.end_report_watch)
                    return
                await asyncio.sleep(self.end_report_interval)
        except Exception:
            self.log.exception("%s: looking at job %s after its end report", self._log_name, job_id)

    async def _follow_rerun(self):
        """Wait for the requeued job to run again, take its port report, and route to it again."""
        self._started_at = time.monotonic()
        self._phases = {"start": self._started_at}
        host = await self._wait_until_running()
        self._event(60, f"Job {self.job_id} is running on {host}; waiting for the server to start.")
        port = await self._wait_for_port()
        target = await self.connect_address(self.resolve_host(host))
        self._claim_address(target, port)
        if self.tunnel is not None:
            ip, port = await self._open_tunnel(target, port)
        else:
            ip = target
        await self._wait_for_listen(ip, port)
        await self._prove_server(ip, port, self._job_endpoint())
        self.port = port
        self._starting = False  # saved below: a hub restart from now on finds it running
        outer = self._hub_spawner()
        outer.server.ip = ip
        outer.server.port = port
        self._save_state_now()  # commits the server row's new address too (the hub's one session)
        proxy = (getattr(outer.user, "settings", None) or {}).get("proxy")
        if proxy is not None:
            await proxy.add_user(outer.user, outer.name)
        self._event(90, f"Server is listening on {ip}:{port}.")
        self.log.warning("%s: job %s runs again; routed to %s:%s", self._log_name, self.job_id, ip, port)

    def _rerun_done(self, fut):
        outer = self._hub_spawner()
        if outer._spawn_future is fut and (fut.cancelled() or fut.exception() is None):
            # as JupyterHub's own spawn does: keep only a failure (its pages show it); a
            # cancelled future must not stay (User.stop asks it for its exception)
            outer._spawn_future = None
        outer._spawn_pending = False
        self._spawn_pending = False
        if getattr(self, "_adopting", False) and (fut.cancelled() or fut.exception() is not None):
            # an adopted start failed (its page says why) or was cancelled while the hub still
            # checks the restored server: let that check give up at once instead of waiting
            # http_timeout on an address nothing listens on (restored by stop())
            if getattr(self, "_saved_http_timeout", None) is None:
                self._saved_http_timeout = outer.http_timeout
            outer.http_timeout = 0
        self._adopting = False
        self._rerun_task = None
        self._port_future = None
        self._wake_progress()
        if fut.cancelled():
            # Cancel on the spawn page (JupyterHub cancels this future, waits 1 s, then stops the
            # server): the next poll must not follow the same job again in between
            self._follow_cancelled = self.job_id
            return
        exc = fut.exception()
        if exc is None:
            return
        self._rerun_failed = str(exc) or type(exc).__name__
        self.log.error("%s: the rerun of job %s cannot be followed: %s; ending the server",
                       self._log_name, self.job_id, self._rerun_failed)
        asyncio.ensure_future(outer.poll_and_notify())  # the hub stops the server now, not at its next poll

    async def stop(self, now=False):
        """Cancel the job and wait (bounded) until the scheduler shows it gone.

        Whatever happens, the hub then clears the state and forgets the server: JupyterHub's
        User.stop() runs clear_state() in a ``finally`` even when stop() raises, and its API
        handler swallows the exception (raising would only skip deleting the server's token).
        So a job that cannot be cancelled is not raised about but kept in ``uncancelled_jobs``
        (saved with the state, cancelled before the next start) and logged as an error.
        """
        if self._rerun_task is not None:  # issue 24
            self._rerun_task.cancel()
        if getattr(self, "_saved_http_timeout", None) is not None:
            self._hub_spawner().http_timeout = self._saved_http_timeout
            self._saved_http_timeout = None
        if self.tunnel is not None:
            await self.tunnel.close()
        if not self.job_id:
            return
        if self.leftovers.may_forget(self.job_id):
            self._forget_job()  # poll() saw it end and cancelled it already
            return
        await self._resolve_homedir()
        self._session_stopped()  # issue 14: usage log
        error = await self.leftovers.cancel_with_retries(self.job_id, retry=not now)
        if error is None:
            self._cancel_accepted_for = self.job_id
            deadline = time.monotonic() + (0 if now else self.cancel_wait_timeout)
            while True:
                status = await self.job_status_now(max_age=self.startup_poll_interval)
                if status.state is JobState.FINISHED:
                    self.leftovers.cancelled.add(self.job_id)
                    self._forget_job()
                    return
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.startup_poll_interval)
            self.leftovers.keep()
            self.log.warning(
                "%s: job %s still %s %.0f s after its cancel was accepted; it is kept in the server's "
                "state and checked (and cancelled again if alive) at the next start. If it stays, "
                "cancel it by hand: %s",
                self._log_name,
                self.job_id,
                status.describe(),
                0 if now else self.cancel_wait_timeout,
                self.leftovers.manual_cancel_cmd(self.job_id),
            )
        else:
            self.leftovers.keep()
            self.log.error(
                "%s: could not cancel job %s: %s. The job may still be running and holding its "
                "allocation. The hub stops the server anyway (proxy route and token removed); the job "
                "is kept in the server's state and cancelled before the user's next start. Admin: check "
                "that the scheduler answers, then cancel it by hand: %s",
                self._log_name,
                self.job_id,
                error,
                self.leftovers.manual_cancel_cmd(self.job_id),
            )
        self._forget_job()

    async def progress(self):
        """Spawn progress: submission, queue state and reason, host, listening.

        Wakes when :meth:`_event` adds a message (no timer per open page); a long safety
        timeout notices a spawn that ended without a last event."""
        sent = 0
        while True:
            changed = self._events_changed
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not getattr(self, "_spawn_pending", False):
                break
            try:
                await asyncio.wait_for(changed.wait(), 5)
            except asyncio.TimeoutError:
                pass


def save_spawner_state(spawner) -> bool:
    """Write ``spawner.get_state()`` to its database row now (outside the hub's own saves).

    True when saved. A failure never fails the spawn (the hub saves the state again when the
    spawn ends), but it is logged as an error naming the job and what it risks, and the
    session is rolled back so the hub's own next commit is not refused too.
    """
    name = getattr(spawner, "_log_name", spawner)
    orm = getattr(spawner, "orm_spawner", None)
    if orm is None:
        return False  # not a hub's spawner (a test, or a wrapper's temporary child)
    session = None
    try:
        from sqlalchemy import inspect

        session = inspect(orm).session
        if session is None:
            spawner.log.warning(
                "%s: the server's database row is detached; job %s is saved only with the hub's next "
                "state save", name, getattr(spawner, "job_id", ""),
            )  # fmt: skip
            return False
        orm.state = spawner.get_state()
        # synchronous, on the event loop, as JupyterHub itself commits its database
        # (User.spawn/stop call db.commit() inline); the session is not thread-safe
        session.commit()
        return True
    except Exception as e:  # never fail a spawn over this
        if session is not None:
            try:
                session.rollback()
            except Exception:  # noqa: S110 - the original error is the one to report
                pass
        spawner.log.error(
            "%s: could not save the server's state (job %s) to the hub database: %s: %s. The spawn goes "
            "on and the hub saves the state again when it ends; if the hub restarts before that, it may "
            "not know job %s: check the database, and cancel the job by hand if it is left running.",
            name, getattr(spawner, "job_id", ""), type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "",
            getattr(spawner, "job_id", ""),
        )  # fmt: skip
        return False

