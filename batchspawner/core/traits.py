"""The configuration of every batch spawner: its traits, with their defaults and checks.

One class, :class:`BatchTraits`, mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`; configured under
the spawner classes (``c.SlurmSpawner.req_runtime``). Behaviour lives in the other ``core`` modules.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
import shutil
import sys

from traitlets import (
    Any, Bool, CaselessStrEnum, Dict, Float, HasTraits, Integer, List, Set, TraitError, Unicode,
    default, validate,
)

from batchspawner.core import accounts
from batchspawner.core.options import PROTECTED, admin_only_vars
from batchspawner.commands.runner import CallableRunner


def _req(help_text, default_value="", admin_only=False, **kw):
    """A request trait (``req_*``): a template variable; ``admin_only`` ones users can never set."""
    trait = Unicode(default_value, help=help_text, **kw).tag(config=True)
    if admin_only:
        trait.tag(admin_only=True)
    return trait


def _options_applied_in_start(spawner, user_options):
    """BatchSpawnerBase's ``apply_user_options``: the options are checked and applied in start()."""
    return None


class BatchTraits(HasTraits):
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

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

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # JupyterHub >= 5.3 warns "Received unhandled user_options" on every spawn with options
        # unless this hook is set; a batch spawner checks them (allowed_user_options, values) and
        # applies them to the job script in start(), so the hook has nothing left to do. A site's
        # own apply_user_options (a callable or a dict) still replaces this default.
        return _options_applied_in_start

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

    @default("runner")
    def _default_runner(self):
        if self.overrides_run_command():
            return CallableRunner(self.run_command, self.runner_policy.exec_prefix_argv(), self.command_timeout)
        return self.runner_policy.user_runner()

    @default("query_runner")
    def _default_query_runner(self):
        return self.runner

    @validate("exec_prefix")
    def _check_exec_prefix(self, proposal):
        value = proposal["value"]
        try:
            shlex.split(value)
        except ValueError as e:
            raise TraitError(f"BatchSpawnerBase.exec_prefix is not a valid command: {e}")
        return value
