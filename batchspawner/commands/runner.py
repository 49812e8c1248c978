"""The one place where jupyterhub-hpc runs scheduler commands.

Scheduler modules decide *what* to run (an argv list, maybe a script for stdin);
:class:`CommandRunner` decides *how*: locally, behind a prefix such as
``sudo -E -u alice``, or over ssh to a submit host. Every call has a timeout,
an explicit environment and never goes through a shell on this machine.
Failures raise :class:`CommandError`, which carries everything needed to
explain the failure: argv, exit code, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shlex
import string
import signal
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from batchspawner.core import metrics

__all__ = [
    "CommandError",
    "CommandTimeout",
    "CommandResult",
    "CommandRunner",
    "split_command",
]

# Environment variables whose values must never be printed.
SECRET_ENV_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY")

# Variables that describe the hub machine: never sent to a command that runs on another machine
# (an ssh exec_prefix or submit_hosts); the remote login sets its own.
DEFAULT_ENV_SKIP = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "TERM", "MAIL",
    "TMPDIR", "_", "SSH_*", "XDG_*", "SUDO_*", "LD_*", "DISPLAY",
)  # fmt: skip
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Run on the far side of ssh: read NAME=value lines from stdin up to an empty line, export them
# verbatim (no expansion), then exec the command, which reads the rest of stdin (the script).
REMOTE_ENV_SH = 'while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; exec "$@"'
# What the local ssh client itself needs from the hub's environment.
LOCAL_SSH_ENV = ("PATH", "HOME", "SSH_AUTH_SOCK", "LANG", "LC_ALL")


def env_to_send(env: Mapping[str, str] | None, skip: Sequence[str] = DEFAULT_ENV_SKIP) -> dict[str, str]:
    """The variables of ``env`` to send to a remote command (names checked, no line breaks)."""
    send = {}
    for name, value in (env or {}).items():
        if any(fnmatch.fnmatchcase(name, pat) for pat in skip):
            continue
        if not ENV_NAME_RE.match(name):
            raise CommandError([], reason=f"environment variable name {name!r} cannot be sent over ssh")
        value = str(value)
        if "\n" in value or "\r" in value or "\0" in value:
            raise CommandError([], reason=f"environment variable {name} has a line break; cannot be sent over ssh")
        send[name] = value
    return send


_SHELL_OPERATOR = re.compile(r"[;&|<>()]")
_SHELL_EXPANSION = re.compile(r"`|\$[({A-Za-z_]")


def has_shell_syntax(template) -> bool:
    """True when an admin's command template uses the shell: ``;``, ``|``, ``&&``, ``>``, ``$(...)``...

    Operators count only outside quotes (``squeue -o '%T|%B'`` is a plain argv).
    """
    if not isinstance(template, str):
        return False
    try:
        lexer = shlex.shlex(template, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return False
    if any(_SHELL_OPERATOR.fullmatch(tok[0]) and set(tok) <= set(";&|<>()") for tok in tokens if tok):
        return True
    unquoted = re.sub(r"'[^']*'", "", template)
    return bool(_SHELL_EXPANSION.search(unquoted))


def _shell_quoted(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


class RemoteWord(str):
    """A command word that also knows how batchspawner 1.3 sent it through an ssh prefix.

    1.3 ran ``exec_prefix + command`` through the hub's shell, and ssh joined the words
    it got for the remote shell, which parsed them once more. A template word written for
    that second parse (``-o '%T\\ %B'``, ``-o "'%T %B'"``) therefore reached the remote
    command as ``%T %B``. ``remote`` is that word as the remote shell must see it: the
    template's text after one parse, with every substituted value shell-quoted, so a
    value never reaches the remote shell unquoted. Used by :class:`CommandRunner` only
    when its prefix runs the command elsewhere (``remote_shell``)."""

    remote: str

    def __new__(cls, value: str, remote: str):
        word = super().__new__(cls, value)
        word.remote = remote
        return word


_FORMATTER = string.Formatter()


def _remote_form(token: str, subvars) -> str | None:
    """The 1.3 remote-shell text of one template word (see :class:`RemoteWord`), or None.

    Only for a word with the shell's quote characters left after the first parse (a word
    without them means the same to the remote shell whether quoted or not), that the remote
    shell would read as exactly one word, with no ``$`` or backquote (1.3 expanded those on the
    hub), and where every ``{value}`` stands outside the word's own quotes (shlex.quote keeps
    a value one word only there). Otherwise None: the word is sent quoted, as one word."""
    if not any(c in token for c in "\\'\""):
        return None
    try:
        parts = list(_FORMATTER.parse(token)) if subvars else [(token, None, None, None)]
    except ValueError:
        return None
    text, probe = "", ""
    for literal, name, spec, conv in parts:
        text += literal
        probe += literal
        if name is None:
            continue
        try:
            shlex.split(probe)  # the text before the value must be complete: the value is unquoted here
        except ValueError:
            return None
        if probe.endswith("\\"):
            return None
        try:
            value = _FORMATTER.format_field(
                _FORMATTER.convert_field(_FORMATTER.get_field(name, (), subvars)[0], conv), spec or ""
            )
        except (KeyError, IndexError, AttributeError, ValueError, TypeError):
            return None
        text += shlex.quote(value)
        probe += "x"
    if "$" in probe or "`" in probe:
        return None
    try:
        if len(shlex.split(text)) != 1 or len(shlex.split(probe)) != 1:
            return None
    except ValueError:
        return None
    return text


def remote_command(argv: Sequence[str]) -> str:
    """The one string ssh hands the remote shell: each word quoted, except a
    :class:`RemoteWord`, sent as 1.3 sent it (its values quoted)."""
    return " ".join(a.remote if isinstance(a, RemoteWord) else shlex.quote(str(a)) for a in argv)


def split_command(template: str | Sequence[str], **subvars) -> list[str]:
    """Turn a configured command into an argv list.

    A string is split with :func:`shlex.split` first and *then* each token is
    formatted with ``subvars``, so a value containing spaces or shell
    metacharacters stays one argument and is never interpreted by a shell.
    A list is formatted token by token. A token that is exactly ``{name}``
    where ``name`` is a list (e.g. ``{job_id_args}``) expands to one argument
    per item.

    An admin's template with shell syntax (``;``, ``|``, ``>``, ``&&``, ``$(...)``, as
    batchspawner 1.3 allowed: it ran every command through a shell) becomes
    ``["/bin/sh", "-c", text]``, where every substituted value is shell-quoted first, so
    the admin's operators stay operators and a value stays one word.
    """
    if isinstance(template, str) and has_shell_syntax(template):
        text = template.format(**{k: _shell_quoted(v) for k, v in subvars.items()}) if subvars else template
        return ["/bin/sh", "-c", text]
    if isinstance(template, str):
        tokens = shlex.split(template)
    else:
        tokens = list(template)
    argv = []
    for token in tokens:
        whole = re.fullmatch(r"\{(\w+)\}", token)
        if whole and isinstance(subvars.get(whole.group(1)), (list, tuple)):
            # a token that is exactly one list-valued variable becomes one argument per item
            argv.extend(str(item) for item in subvars[whole.group(1)])
            continue
        formatted = token.format(**subvars) if subvars else token
        remote = _remote_form(token, subvars) if isinstance(template, str) else None
        argv.append(RemoteWord(formatted, remote) if remote is not None and formatted != "" else formatted)
    return [a for a in argv if a != ""]


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


class CommandError(Exception):
    """A scheduler command failed: non-zero exit, timeout or could not start."""

    def __init__(self, argv, returncode=None, stdout="", stderr="", reason=""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        self.reason = reason
        super().__init__(self._message())

    def _message(self):
        cmd = shlex.join(self.argv)
        if self.reason:
            head = f"{self.reason}: {cmd}"
        else:
            head = f"command exited with {self.returncode}: {cmd}"
        parts = [head]
        if self.stderr.strip():
            parts.append("stderr: " + _tail(self.stderr))
        if self.stdout.strip():
            parts.append("stdout: " + _tail(self.stdout))
        return "\n".join(parts)

    @property
    def brief(self) -> str:
        """One line saying why it failed (first stderr line, else the reason, else the exit code)."""
        return first_line(self.stderr) or self.reason or f"exit code {self.returncode}"

    @property
    def output(self):
        """stdout and stderr together, for pattern matching."""
        return (self.stdout or "") + "\n" + (self.stderr or "")


class CommandTimeout(CommandError):
    """The command did not finish within its timeout and was killed."""


def first_line(text) -> str:
    """The first non-blank line of a command's output (at most 300 characters), for messages."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def _tail(text: str, lines: int = 10, chars: int = 2000) -> str:
    text = text.strip()
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-chars:]


@dataclass
class CommandRunner:
    """Runs argv lists asynchronously.

    ``prefix`` is an argv list put in front of every command (``sudo -E -u
    alice``, ``ssh -o BatchMode=yes alice@login1``). When the prefix is an ssh
    command (``remote_shell=True``) the command is joined for the remote shell
    with :func:`remote_command` (each word quoted; a 1.3 template word written for
    the remote shell's parse as 1.3 sent it, values quoted), because ssh passes one
    string to a shell on the far side.
    """

    prefix: list[str] = field(default_factory=list)
    timeout: float = 30.0
    remote_shell: bool = False
    log: object = None

    def build_argv(self, argv: Sequence[str]) -> list[str]:
        if self.remote_shell:
            return list(self.prefix) + [remote_command(argv)]
        return list(self.prefix) + [str(a) for a in argv]

    def _remote_env(self, argv, env, stdin):
        """With an ssh prefix the command runs on another machine, where the local process
        environment does not reach: the variables to send (the job's, at submit) travel as
        ``NAME=value`` lines in front of stdin, inside ssh's channel (never in an argv or a
        file), and the local ssh client gets only what it needs itself."""
        send = env_to_send(env)
        local = {k: v for k, v in os.environ.items() if k in LOCAL_SSH_ENV}
        local.setdefault("PATH", os.defpath)
        if not send:
            return argv, local, stdin
        header = "".join(f"{k}={v}\n" for k, v in send.items()) + "\n"
        return ["sh", "-c", REMOTE_ENV_SH, "jhpc-env"] + list(argv), local, header + (stdin or "")

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        cwd: str | None = None,
    ) -> CommandResult:
        label = metrics.command_name(argv)
        if self.remote_shell:
            argv, env, stdin = self._remote_env(argv, env, stdin)
        full = self.build_argv(argv)
        if not full:
            raise CommandError(full, reason="empty command")
        try:
            result = await self._run(full, env, stdin, timeout, cwd)
        except CommandTimeout:
            metrics.COMMAND_FAILURES.labels(command=label, kind="timeout").inc()
            raise
        except CommandError:
            metrics.COMMAND_FAILURES.labels(command=label, kind="start").inc()
            raise
        metrics.COMMAND_SECONDS.labels(command=label).observe(result.seconds)
        if self.log is not None:
            self.log.debug(
                "ran %s -> %s in %.3f s", shlex.join(full), result.returncode, result.seconds
            )
        if result.returncode != 0:
            metrics.COMMAND_FAILURES.labels(command=label, kind="exit").inc()
        if check and result.returncode != 0:
            raise CommandError(full, result.returncode, result.stdout, result.stderr)
        return result

    async def _run(self, full, env, stdin, timeout, cwd) -> CommandResult:
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise CommandError(full, reason=f"could not start ({e.strerror or e})") from e
        data = stdin.encode() if stdin is not None else None
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except asyncio.TimeoutError:
            await _kill(proc)
            raise CommandTimeout(full, reason=f"timed out after {timeout:g} s") from None
        except asyncio.CancelledError:
            await _kill(proc)
            raise
        return CommandResult(
            full,
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - t0,
        )


async def _kill(proc):
    """Kill a process group we started and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except asyncio.TimeoutError:
        pass


class CallableRunner:
    """Runs commands through an async function ``run_command(cmd, input=None, env=None)``.

    The spawner uses it when a subclass overrides ``run_command`` (batchspawner 1.3's way for
    a hub that reaches the scheduler only through its own code, e.g. ssh to a login node).
    The words (prefix + command) are joined shell-quoted (:func:`shlex.join`), so a value is one
    word to the function. What the function returns is stdout; any exception it raises is a
    failed command (a RuntimeError's first argument is taken for stderr, as 1.3's was).
    """

    remote_shell = False

    def __init__(self, run_command, prefix=(), timeout=30.0):
        self.run_command = run_command
        self.prefix = list(prefix)
        self.timeout = timeout

    def build_argv(self, argv):
        return self.prefix + [str(a) for a in argv]

    async def run(self, argv, *, env=None, stdin=None, timeout=None, check=True, cwd=None):
        full = self.build_argv(argv)
        cmd = shlex.join(full)
        try:
            out = await asyncio.wait_for(
                self.run_command(cmd, input=stdin, env=dict(env) if env is not None else None),
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
