"""Job logs: one private directory per user, files a user can find, pruned by age and count.

The default ``log_path`` of every scheduler module is
``{logdir}/jupyter-{date}-{server}-job{job_id}.log`` with ``log_dir`` defaulting to
``{homedir}/.jupyterhub-hpc/logs`` (a hidden folder, so JupyterLab's file browser
is not filled with logs). Before each submit the hub, as the user (``exec_prefix``),
creates the folder with mode 0700, makes the logs in it 0600, and deletes logs older
than ``log_keep_days`` and all but the newest ``log_keep_count`` (once a minute at most
per user: see ``PREPARED_FOR``). The scheduler creates the job's log with the user's umask;
the Slurm and Grid Engine scripts make it 0600 as the job starts (``batchspawner-singleuser``
too, when its own output is the log); other schedulers' logs get 0600 at the next prepare. A configured
``log_path`` without ``{logdir}`` (batchspawner 1.3 configs) is used as it is and no
folder is touched.

Logs are read as the user too (never as the hub's root): the last lines explain a
failed spawn, and ``GET /hub/hpc/log/<user>/<server>`` shows the log of a server's
current job to its owner or an admin.
"""

from __future__ import annotations

import asyncio
import os
import time

from batchspawner.commands.runner import CommandError

LOG_GLOB = "jupyter-*.log"

# mkdir 0700, chmod existing logs 0600, prune by age then by count; $1 dir, $2 days, $3 count
PREPARE_SH = r"""
set -u
umask 077
mkdir -p -- "$1" || exit 1
chmod 700 -- "$1"
cd -- "$1" || exit 1
for f in jupyter-*.log; do [ -f "$f" ] && chmod 600 -- "$f"; done
if [ "$2" -gt 0 ]; then find . -maxdepth 1 -type f -name 'jupyter-*.log' -mtime +"$2" -delete; fi
if [ "$3" -gt 0 ]; then
  ls -1t -- jupyter-*.log 2>/dev/null | tail -n +"$(( $3 + 1 ))" | while IFS= read -r f; do rm -f -- "$f"; done
fi
exit 0
"""


def log_format_vars(spawner, job_id: str) -> dict:
    """Variables for ``log_path``: homedir, username, job_id, logdir, date, server."""
    base = {"homedir": spawner.req_homedir, "username": spawner.user.name}
    stamp = getattr(spawner, "_log_stamp", "") or time.strftime("%Y%m%d-%H%M%S")
    return base | {
        "job_id": job_id,
        "logdir": spawner.log_dir.format(**base) if uses_private_dir(spawner) else spawner.req_homedir,
        "date": stamp,
        "server": spawner.name or "default",
    }


def uses_log_dir(spawner) -> bool:
    return "{logdir}" in (spawner.log_path or "") and uses_private_dir(spawner)


def uses_private_dir(spawner) -> bool:
    """False for a batchspawner 1.3 subclass that overrides ``run_command`` and sets no ``log_dir``.

    Such a site's ``run_command`` knows submit, query and cancel (often: the hub has no
    scheduler tools and it reaches them its own way); it is sent nothing else. The logs then go
    to the home directory, as 1.3's did, which needs no folder made first, and are not read back
    for the failure page. Setting ``log_dir`` asks for the private folder again (made through
    ``run_command``)."""
    overrides = getattr(spawner, "overrides_run_command", None)
    if overrides is None or not overrides():
        return True
    return spawner.log_dir != spawner.trait_defaults("log_dir")


# A folder this hub prepared less than PREPARED_FOR seconds ago is not prepared again: a
# user's burst of spawns (named servers, a retry) costs one command, not one each (issue 16:
# each command forks the hub, which blocks its event loop until the command has started).
# A failed spawn forgets its user's entries (forget_prepared), so a folder the user removed
# in between is made again by the next try.
PREPARED_FOR = 60.0
_prepared: dict = {}  # (user, folder, runner identity) -> (monotonic time started, task, its loop)


async def prepare_log_dir(spawner):
    """Create/prune the user's log folder as the user; a failure is logged, never fatal."""
    spawner._log_stamp = time.strftime("%Y%m%d-%H%M%S")
    if not uses_log_dir(spawner) or spawner.runner.remote_shell and not spawner.log_dir:
        return
    directory = log_format_vars(spawner, "")["logdir"]
    # where the command runs is part of the key: two clusters (ssh submit hosts, another
    # exec_prefix) may not share the home file system
    from batchspawner.commands.policy import RunnerPolicy

    key = (spawner.user.name, directory, RunnerPolicy.identity_of(spawner.runner))
    loop = asyncio.get_running_loop()
    entry = _prepared.get(key)
    if entry is not None:
        started, future, entry_loop = entry
        if entry_loop is loop and time.monotonic() - started < PREPARED_FOR and not future.cancelled():
            if await asyncio.shield(future):  # done, or under way for another spawn of this user
                return
    future = loop.create_task(_prepare(spawner, directory))
    _prepared[key] = (time.monotonic(), future, loop)
    if not await asyncio.shield(future):
        _prepared.pop(key, None)


async def _prepare(spawner, directory) -> bool:
    argv = ["sh", "-c", PREPARE_SH, "jupyterhub-hpc-logs", directory, str(int(spawner.log_keep_days)),
            str(int(spawner.log_keep_count))]
    try:
        await spawner.runner.run(argv, env=spawner.command_env(), timeout=20)
    except CommandError as e:
        spawner.log.warning("%s: could not prepare the log folder %s: %s", spawner._log_name, directory, e.brief)
        return False
    return True


def forget_prepared(spawner):
    """After a failed spawn: the next start of this user prepares the folder again."""
    for key in [k for k in _prepared if k[0] == spawner.user.name]:
        _prepared.pop(key, None)


# A failed spawn shows the end of the job's log in its error (REST body, spawn page, hub log).
# The log is the user's file (it may be a symlink to anything the user can read, e.g. a huge
# sparse file without a newline), so what is read and what is shown are bounded in bytes and
# lines (issue 21): at most TAIL_MAX_BYTES read, TAIL_MAX_LINES lines of TAIL_MAX_LINE_CHARS.
TAIL_MAX_BYTES = 8 * 1024
TAIL_MAX_LINES = 50
TAIL_MAX_LINE_CHARS = 400


def bounded_tail(text, lines: int, max_chars: int = TAIL_MAX_BYTES) -> str:
    """The last ``lines`` lines of ``text`` (at most TAIL_MAX_LINES), each cut to
    TAIL_MAX_LINE_CHARS, the whole at most ``max_chars``: safe to put in any message."""
    if not text:
        return ""
    text = str(text)[-max_chars:]
    lines = max(0, min(int(lines), TAIL_MAX_LINES))
    kept = text.strip().splitlines()[-lines:] if lines else []
    out = []
    for line in kept:
        line = line.rstrip()
        if len(line) > TAIL_MAX_LINE_CHARS:
            line = "[...] " + line[-TAIL_MAX_LINE_CHARS:]
        out.append(line)
    return "\n".join(out)[-max_chars:]


async def read_tail(spawner, path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` read as the user; "" when there is none to read.

    Bounded: ``tail -c`` reads at most TAIL_MAX_BYTES whatever the file is (a line-based
    ``tail -n`` of a file without newlines returns all of it), then :func:`bounded_tail`.
    Never returns a tool's own error text (``tail: cannot open ...``): a missing or
    unreadable log is simply no log."""
    if not path or not uses_private_dir(spawner):
        return ""
    argv = ["tail", "-c", str(TAIL_MAX_BYTES), "--", path]
    try:
        result = await spawner.runner.run(argv, env=spawner.command_env(), timeout=10)
    except CommandError:
        return ""
    return bounded_tail(result.stdout, lines)


async def read_log(spawner, path, max_bytes=256 * 1024) -> str | None:
    """The end of the log (at most ``max_bytes``) read as the user; None when there is none."""
    if not path or not uses_private_dir(spawner):
        return None
    argv = ["tail", "-c", str(int(max_bytes)), "--", path]
    try:
        result = await spawner.runner.run(argv, env=spawner.command_env(), timeout=20)
    except CommandError:
        return None
    return result.stdout


def log_name(path: str) -> str:
    return os.path.basename(path or "")
