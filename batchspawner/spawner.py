"""BatchSpawnerBase: the composition point of a batch spawner (issue 23).

This module knows no scheduler and holds no flow of its own: it puts together the parts that
each own one concern, and registers the hub's side of the package.

The core (``batchspawner/core``), one mixin per concern, each with its contract in its docstring:

- :class:`~batchspawner.core.start.StartPhases`: ``start()`` and its phases;
- :class:`~batchspawner.core.lifecycle.PollAndStop`: ``poll()``, requeue, end reports, ``stop()``, ``progress()``;
- :class:`~batchspawner.core.address.JobAddress`: the node's address, the port report, proof, tunnel;
- :class:`~batchspawner.core.jobcalls.JobCalls`: submit, query, confirm, cancel, the job's log;
- :class:`~batchspawner.core.script.JobScript`: request variables, environment, the rendered script;
- :class:`~batchspawner.core.state.SavedState`: what the hub database keeps;
- :class:`~batchspawner.core.traits.BatchTraits` and the traits of :mod:`~batchspawner.core.parsing`,
  :mod:`~batchspawner.core.shared_status`, :mod:`~batchspawner.core.leftovers` and
  :mod:`~batchspawner.commands.ssh`: the configuration (``c.SlurmSpawner.req_runtime``...).

Objects the spawner owns and calls with the job id (never a pointer back to a private method):
``self.job_watch`` (:class:`~batchspawner.core.shared_status.JobWatch`: what state is this job in)
and ``self.leftovers`` (:class:`~batchspawner.core.leftovers.Leftovers`: nothing is forgotten
without a cancel).

On top of the core: :class:`~batchspawner.hub.cards.SessionCards` (the session card's facts and the
usage log, fed by the core's ``_session_*`` hooks). Importing this module registers the hub's
routes (the port API, the pages, the body limit), as batchspawner 1.3's import did, so a 1.3
configuration that only names a spawner class gets them. A scheduler module
(``batchspawner/schedulers``) subclasses :class:`BatchSpawnerBase` with its commands, template
and parsers; batchspawner 1.3's names sit on top of it all in ``batchspawner/compat``.
"""

from __future__ import annotations

import asyncio
import logging

from jupyterhub.spawner import Spawner

from batchspawner.core.leftovers import Leftovers, LeftoverTraits
from batchspawner.core.hublog import warn_once
from batchspawner.core.parsing import QueryParsingMixin, overridden_predicates
from batchspawner.commands.runner import has_shell_syntax
from batchspawner.core.shared_status import JobWatch, SharedStatusTraits, shared_status_fits
from batchspawner.commands.ssh import SubmitHostsMixin

from batchspawner.core.traits import BatchTraits
from batchspawner.hub.cards import SessionCards
from batchspawner.core.jobcalls import JobCalls
from batchspawner.core.script import JobScript
from batchspawner.core.state import SavedState
from batchspawner.core.address import JobAddress
from batchspawner.core.start import StartPhases
from batchspawner.core.lifecycle import PollAndStop

# the names other modules and sites import from here (this module's 0.1 contents)
from batchspawner.core.errors import (  # noqa: F401
    AccountRefused, JobDidNotStart, SpawnFailed, SubmitRefused, clean_scheduler_message,
)
from batchspawner.core.state import save_spawner_state  # noqa: F401
from batchspawner.core.traits import _req  # noqa: F401

# the hub's side, registered on import (as 1.3's ``import batchspawner`` registered its API)
from batchspawner.hub import api  # noqa: F401  (POST /hub/api/batchspawner)
from batchspawner.hub import bodylimit  # noqa: F401  (issue 21: oversized user_options get 413 first)
from batchspawner.hub import web  # noqa: F401  (/hub/hpc/log, /hub/hpc/sessions and the page templates)
from batchspawner.hub.services import services_take_sigint

services_take_sigint()  # the hub's managed services end on SIGINT even if the hub was started ignoring it


class BatchSpawnerBase(
    StartPhases, PollAndStop, JobAddress, JobCalls, JobScript, SavedState, SessionCards,
    BatchTraits, QueryParsingMixin, SharedStatusTraits, LeftoverTraits, SubmitHostsMixin, Spawner,
):
    """Base class for spawners that submit the single-user server as a batch job.

    Subclasses set ``batch_script``, ``batch_submit_cmd``, ``batch_query_cmd``,
    ``batch_cancel_cmd`` and the state regexes (all configurable), and may
    override :meth:`parse_job_id` and :meth:`parse_query_output`.
    """

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
