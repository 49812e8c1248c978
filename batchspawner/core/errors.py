"""What a failed spawn raises, and the scheduler's words made fit for a user to read."""

from __future__ import annotations

import re

from tornado import web


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
