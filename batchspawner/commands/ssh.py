"""Run scheduler commands on submit hosts over ssh, with failover.

:class:`SshRunner` has the :class:`~batchspawner.commands.runner.CommandRunner`
interface and runs each argv on one of a list of submit hosts with the OpenSSH
client (never a shell on the hub):

- the argv is joined and quoted for the remote shell with :func:`shlex.join`
  and put after ``--``, so nothing in it can be read as an ssh option;
- ``BatchMode=yes`` (never prompt), ``ConnectTimeout``, keep-alives, and one
  reused connection per user and host (``ControlMaster=auto`` with the socket
  in a private mode-0700 directory and ``ControlPersist``);
- a *connection* failure (ssh exit 255 with an ssh message about connecting,
  resolving or the host key) moves on to the next host and puts the failed
  one in a cool-down; the last good host is tried first. A refused *login*
  (``Permission denied``, ``Too many authentication failures``) is the user's
  failure, not the host's: the next host is tried, but the host is not put in
  the process-wide cool-down, so one user's broken key benches it for nobody. A
  *command* failure (the remote command's own exit status) is returned as it
  is and never retried elsewhere, and neither is a command timeout or a
  connection lost *while* the command ran: a submit must not run twice.

Environment variables
---------------------
The submit command reads the batch script on stdin and the job needs the
hub's variables (``JUPYTERHUB_*``, including the API token unless
``token_via_file``). ssh does not carry a client's environment unless the
client says ``SendEnv`` and the server says ``AcceptEnv``, which sites rarely
allow. Putting ``NAME=value`` into the remote command would show the token in
``ps`` on both machines, and a file would leave it on disk. So by default
(``env_method="stdin"``) the variables travel *in front of the data on
stdin*: the remote command becomes::

    sh -c 'while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; exec "$@"' jhpc-env sbatch --parsable

and stdin is ``NAME=value`` lines, one empty line, then the script. ``read``
takes one line at a time from the pipe, so the submit command gets exactly
the script; ``export "$kv"`` assigns the value verbatim (no expansion). Names
must be shell identifiers and values must not contain a newline (refused
before anything runs). The values are inside the encrypted channel: not in
any argv, not in any file. ``env_method="sendenv"`` uses ``-o SendEnv=NAME``
instead (names only on the command line, values in the ssh process's own
environment); it needs a matching ``AcceptEnv`` on every submit host, or the
variables are silently dropped, and such a command opens its own connection
(a shared one forwards only what the ssh that opened it was told to send).

Variables that describe the hub machine (``PATH``, ``HOME``, ``USER``, ...)
are not sent (``env_skip``): the remote login provides its own.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shlex
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from traitlets import Enum, Float, HasTraits, Integer, List, TraitError, Unicode, validate

from batchspawner.commands.runner import (
    DEFAULT_ENV_SKIP,
    ENV_NAME_RE,  # noqa: F401  (kept importable from here)
    REMOTE_ENV_SH,
    CommandError,
    CommandResult,
    CommandRunner,
    env_to_send,
    first_line,
    split_command,
)
from batchspawner.commands.submit_hosts import HEALTH, HostHealth, SubmitHost, classify_ssh_failure

__all__ = ["SshRunner", "SubmitHostsMixin", "SubmitHost", "HostHealth", "classify_ssh_failure", "private_control_dir"]

MAX_CONTROL_DIR = 107 - 58

_control_dir = None
_control_lock = threading.Lock()


def private_control_dir(path: str = "") -> str:
    """A directory only this user can enter, for ssh control sockets.

    With no ``path`` one new ``jhpc-ssh-*`` directory per hub process is made
    with :func:`tempfile.mkdtemp` (mode 0700). A configured path is created
    0700 if missing; an existing one must belong to us and be closed to others.
    """
    global _control_dir
    if not path:
        with _control_lock:
            if _control_dir is None or not os.path.isdir(_control_dir):
                _control_dir = tempfile.mkdtemp(prefix="jhpc-ssh-")
                atexit.register(_remove_if_empty, _control_dir)
            return _control_dir
    if len(os.fsencode(path)) > MAX_CONTROL_DIR:
        raise ValueError(f"ssh control directory {path} is too long for Unix socket paths (max {MAX_CONTROL_DIR} bytes)")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"ssh control directory {path} must be owned by uid {os.getuid()} and closed to others (mode 0700)"
        )
    return path


@dataclass
class SshRunner:
    """Runs argv lists on the first reachable submit host over ssh."""

    hosts: list = field(default_factory=list)
    user: str = ""
    ssh_command: list[str] = field(default_factory=lambda: ["ssh"])
    options: list[str] = field(default_factory=list)
    connect_timeout: float = 5.0
    control_persist: int = 60
    control_dir: str = ""
    identity_file: str = ""
    cooldown: float = 60.0
    env_method: str = "stdin"
    env_skip: Sequence[str] = DEFAULT_ENV_SKIP
    timeout: float = 30.0
    log: object = None
    health: HostHealth = field(default_factory=lambda: HEALTH)

    remote_shell = True  # the spawner must not pass a local cwd

    def __post_init__(self):
        self.hosts = [h if isinstance(h, SubmitHost) else SubmitHost.parse(h) for h in self.hosts]
        if not self.hosts:
            raise ValueError("SshRunner needs at least one submit host")
        if self.env_method not in ("stdin", "sendenv"):
            raise ValueError(f"env_method must be 'stdin' or 'sendenv', not {self.env_method!r}")
        self._local = CommandRunner(prefix=[], timeout=self.timeout, log=self.log)

    # ------------------------------------------------------------ argv
    def _common_options(self, share: bool = True) -> list[str]:
        opts = []
        for option in self.options:  # first: ssh keeps the first value it sees for an option
            opts += ["-o", option]
        opts += [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
            "-o", "LogLevel=ERROR",
            # a shared connection to a host that vanished is noticed within ~15 s, below command_timeout
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        if share and self.control_persist > 0:
            opts += [
                "-o", "ControlMaster=auto",
                "-o", "ControlPath=" + os.path.join(private_control_dir(self.control_dir), "%C"),
                "-o", f"ControlPersist={int(self.control_persist)}",
            ]  # fmt: skip
        else:
            opts += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        if self.identity_file:
            opts += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        return opts

    def argv_for(self, host: SubmitHost, argv: Sequence[str], env_names: Sequence[str] = ()) -> list[str]:
        """The local ssh argv that runs ``argv`` on ``host`` (no variable values in it)."""
        argv = [str(a) for a in argv]
        if env_names and self.env_method == "stdin":
            argv = ["sh", "-c", REMOTE_ENV_SH, "jhpc-env"] + argv
        # A shared connection sends variables by the SendEnv of the ssh that opened it, not ours:
        # with sendenv, a command that sends variables gets a connection of its own.
        sendenv = bool(env_names) and self.env_method == "sendenv"
        full = list(self.ssh_command) + self._common_options(share=not sendenv)
        if sendenv:
            for name in env_names:
                full += ["-o", f"SendEnv={name}"]
        if host.port:
            full += ["-p", str(host.port)]
        user = host.user or self.user
        dest = f"{user}@{host.host}" if user else host.host
        return full + ["--", dest, shlex.join(argv)]

    def build_argv(self, argv: Sequence[str]) -> list[str]:
        """The ssh argv for the host that would be tried first (for logs)."""
        return self.argv_for(self.health.order(self.hosts)[0], argv)

    # ------------------------------------------------------------ env
    def env_to_send(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return env_to_send(env, self.env_skip)

    def _local_env(self, send: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SSH_AUTH_SOCK", "LANG", "LC_ALL")}
        env.setdefault("PATH", os.defpath)
        if self.env_method == "sendenv":
            env.update(send)
        return env

    # ------------------------------------------------------------ run
    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        cwd: str | None = None,  # noqa: ARG002 - remote commands start in the login directory
    ) -> CommandResult:
        argv = [str(a) for a in argv]
        send = self.env_to_send(env)
        data = stdin
        if send and self.env_method == "stdin":
            header = "".join(f"{k}={v}\n" for k, v in send.items()) + "\n"
            data = header + (stdin or "")
        local_env = self._local_env(send)
        failures = []
        refused = []
        full = []
        for host in self.health.order(self.hosts):
            full = self.argv_for(host, argv, list(send))
            # CommandTimeout and "could not start" propagate: the command may have run, or no host can work
            result = await self._local.run(full, env=local_env, stdin=data, timeout=timeout, check=False)
            kind = classify_ssh_failure(result.returncode, result.stderr)
            if kind == "auth":
                # this user's login was refused (key, account): the host is fine for everyone else,
                # so it is not benched in the process-wide table; another host may take the key
                reason = _first_line(result.stderr)
                refused.append(f"{host} ({reason})")
                self._warn("submit host %s refused the ssh login of %s (%s)", host, self.user, reason)
                continue
            if kind == "connect":
                self.health.failed(host, self.cooldown)
                reason = _first_line(result.stderr)
                failures.append(f"{host} ({reason})")
                self._warn("submit host %s unreachable (%s); trying the next one", host, reason)
                continue
            if kind == "lost":
                self.health.failed(host, self.cooldown)
                raise CommandError(
                    full, result.returncode, result.stdout, result.stderr,
                    reason=f"connection to submit host {host} was lost while the command ran; "
                    "not retried on another host because it may have run",
                )  # fmt: skip
            self.health.succeeded(self.hosts, host)
            if check and result.returncode != 0:
                raise CommandError(full, result.returncode, result.stdout, result.stderr)
            return result
        if refused:
            raise CommandError(
                full, 255, "", "\n".join(refused + failures),
                reason=f"ssh authentication as {self.user} failed on every submit host: "
                + "; ".join(refused + failures)
                + f". Check {self.user}'s key (ssh_identity_file) and account on the submit hosts",
            )  # fmt: skip
        raise CommandError(
            full, 255, "", "\n".join(failures),
            reason="no submit host reachable over ssh: " + "; ".join(failures)
            + ". Check that sshd runs on the submit hosts and that the hub can log in",
        )  # fmt: skip

    def _warn(self, msg, *args):
        if self.log is not None:
            self.log.warning(msg, *args)


class SubmitHostsMixin(HasTraits):
    """Config for running scheduler commands on submit hosts over ssh (see :class:`SshRunner`)."""

    submit_hosts = List(
        Unicode(),
        help="""Submit hosts to run scheduler commands on over ssh, tried in order.

        Entries are ``host``, ``host:port``, ``user@host`` or ``[ipv6]:port``. When set, submit,
        query and cancel commands (and the token file writer) run there instead of through
        ``exec_prefix``, which is then ignored. A host that cannot be reached (ssh exit 255 with a
        connection error) is skipped for ``ssh_failover_cooldown`` seconds and the next one is
        tried; a refused login (one user's key or account) is that user's failure: the next host is
        tried but the host is not skipped for anyone; a command that fails on a reachable host is not retried elsewhere.""",
    ).tag(config=True)

    ssh_command = Unicode(
        "ssh",
        help="""The OpenSSH client, split with shell rules (e.g. ``ssh -F /etc/jupyterhub/ssh_config``).""",
    ).tag(config=True)

    ssh_user = Unicode(
        "{username}",
        help="""Remote login name, formatted with {username}; a ``user@`` in a submit_hosts entry wins.""",
    ).tag(config=True)

    ssh_options = List(
        Unicode(),
        help="""Extra ``-o`` options as ``Key=Value`` strings, e.g. ``["UserKnownHostsFile=/etc/jupyterhub/known_hosts"]``.

        They come before the built-in ones, so they override them (ssh keeps the first value
        given for an option): BatchMode=yes, ConnectTimeout, LogLevel=ERROR, ServerAlive*, Control*.""",
    ).tag(config=True)

    ssh_identity_file = Unicode(
        "",
        help="""Private key for the login (``-i``, with IdentitiesOnly=yes), formatted with {username} and
        {homedir}, e.g. ``/etc/jupyterhub/keys/{username}``. Empty: ssh's defaults (the hub user's keys, agent).""",
    ).tag(config=True)

    ssh_connect_timeout = Float(
        5.0,
        help="""Seconds ssh may take to connect and authenticate (ConnectTimeout) before the next host is tried.
        Keep it well below command_timeout, which bounds the whole command.""",
    ).tag(config=True)

    ssh_control_persist = Integer(
        60,
        help="""Seconds an idle shared ssh connection stays open (ControlPersist); 0 turns connection reuse off.
        One connection per user and host carries all of that user's commands.""",
    ).tag(config=True)

    ssh_control_dir = Unicode(
        "",
        help="""Directory for the control sockets, mode 0700, owned by the hub's user. Empty: a new private
        temporary directory per hub process. Keep the path short (sockets are limited to ~100 bytes).""",
    ).tag(config=True)

    ssh_failover_cooldown = Float(
        60.0,
        help="""Seconds a submit host that could not be reached is tried only after the others.""",
    ).tag(config=True)

    ssh_env_method = Enum(
        ["stdin", "sendenv"],
        "stdin",
        help="""How the job's environment variables reach the submit command.

        ``stdin`` (default, works with any sshd): ``NAME=value`` lines before the script on stdin, read and
        exported by a small ``sh`` loop on the submit host. ``sendenv``: ``-o SendEnv=NAME``; needs a matching
        ``AcceptEnv`` in every submit host's sshd_config, or the variables are silently dropped. Either way no
        value (the API token included) appears in a command line or a file.""",
    ).tag(config=True)

    ssh_env_skip = List(
        Unicode(),
        list(DEFAULT_ENV_SKIP),
        help="""Names (glob patterns) of variables not sent to submit hosts, because they describe the hub
        machine (PATH, HOME...); the remote login sets its own.""",
    ).tag(config=True)

    @validate("submit_hosts")
    def _check_submit_hosts(self, proposal):
        for entry in proposal["value"]:
            try:
                SubmitHost.parse(entry)
            except ValueError as e:
                raise TraitError(f"{type(self).__name__}.submit_hosts: {e}") from None
        return proposal["value"]

    @validate("ssh_options")
    def _check_ssh_options(self, proposal):
        for option in proposal["value"]:
            if not re.match(r"^[A-Za-z]+[ =]", option):
                raise TraitError(f"{type(self).__name__}.ssh_options: {option!r} is not 'Key=Value'")
        return proposal["value"]

    @validate("ssh_control_dir")
    def _check_control_dir(self, proposal):
        # ssh makes "<dir>/<40 hex>.<16 random>" and a Unix socket path has at most 107 bytes
        if len(os.fsencode(proposal["value"])) > MAX_CONTROL_DIR:
            raise TraitError(
                f"{type(self).__name__}.ssh_control_dir is longer than {MAX_CONTROL_DIR} bytes: "
                "ssh's control socket paths would not fit a Unix socket; choose a shorter directory"
            )
        return proposal["value"]

    @validate("ssh_command")
    def _check_ssh_command(self, proposal):
        try:
            if not shlex.split(proposal["value"]):
                raise ValueError("empty")
        except ValueError as e:
            raise TraitError(f"{type(self).__name__}.ssh_command is not a valid command: {e}") from None
        return proposal["value"]

    def make_ssh_runner(self, prefix_vars) -> SshRunner:
        """An SshRunner for this user; ``prefix_vars`` has at least ``username`` and ``homedir``."""
        return SshRunner(
            hosts=list(self.submit_hosts),
            user=self.ssh_user.format(**prefix_vars),
            ssh_command=split_command(self.ssh_command),
            options=list(self.ssh_options),
            connect_timeout=self.ssh_connect_timeout,
            control_persist=self.ssh_control_persist,
            control_dir=self.ssh_control_dir,
            identity_file=self.ssh_identity_file.format(**prefix_vars),
            cooldown=self.ssh_failover_cooldown,
            env_method=self.ssh_env_method,
            env_skip=list(self.ssh_env_skip),
            timeout=getattr(self, "command_timeout", 30.0),
            log=getattr(self, "log", None),
        )


def _remove_if_empty(path):
    try:
        os.rmdir(path)  # sockets of persisting masters are removed by ssh when they exit
    except OSError:
        pass


def _first_line(text):
    return first_line(text)[:200]
