"""``start()`` and its phases: check, submit, wait for the job to run, wait for its server, prove and route.

:class:`StartPhases` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`; see :meth:`StartPhases.start`
for the contract.
"""

from __future__ import annotations

import asyncio
from html import escape
import time

from batchspawner.core import joblogs, metrics
from batchspawner.core.hosts import usable_host
from batchspawner.core.options import OptionError, forget_user_options, refused_in_this_request, validate_spawner_user_options
from batchspawner.core.hublog import warn_once
from batchspawner.core.states import JobState
from batchspawner.core.errors import JobDidNotStart, SpawnFailed


class StartPhases:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

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

        Contract:

        - Before any command runs: a system account gets HTTP 403 (:class:`AccountRefused`),
          options that break a rule get HTTP 400 naming the field (:class:`OptionError`); nothing
          is submitted then.
        - A job of an earlier run the hub still holds is cancelled and seen gone first.
        - From the moment ``sbatch`` (or its kind) answers, the job id is in the hub's database: a
          hub restart from then on adopts the start (issue 24), never loses the job.
        - A job the scheduler refuses because of the user's own values: HTTP 400 with the
          scheduler's reason (:class:`SubmitRefused`). A job that ends or cannot run before its
          server is up: :class:`JobDidNotStart` (a ``RuntimeError``, as in 1.3) with how it ended,
          its log's tail and what to do; the job is cancelled and forgotten.
        - Cancelled (the user's Cancel, ``start_timeout``): the hub's ``stop()`` follows and
          cancels the job; nothing here forgets it.
        - Returns the address the hub routes to: the node's numeric address (or the tunnel's
          local end), never the hub's loopback unless ``local_executor``.
        """
        user_values = await self._check_request()  # 403/400 before any command runs
        self._reset_for_start()
        if self.job_id or self.uncancelled_jobs:
            await self.leftovers.settle_all()  # an earlier job is never forgotten without a cancel
        self._port_future = asyncio.get_running_loop().create_future()
        try:
            await self._submit(user_values)  # 1. submit
            host = await self._wait_until_running()  # 2. running
            self._phase("running")
            self._session_running()  # issue 14
            self._event(60, f"Job {self.job_id} is running on {host}; waiting for the server to start.")
            if hasattr(self, "mock_port"):  # batchspawner 1.3's test hook (sites' own tests set it)
                return self._mock_started(host)
            port = await self._wait_for_port()  # 3. port
            self._phase("port")
            ip, port = await self._reach_server(host, port)  # 4. listening, proven
            self._phase("listening")
            self._event(90, f"Server is listening on {ip}:{port}.")
        except BaseException as e:
            await self._start_failed(e)
            raise
        finally:
            self._port_future = None
        return self._started(ip, port)  # 5. ready: JupyterHub's HTTP check follows

    async def _check_request(self) -> dict:
        """Who may run (403) and what they asked for (400), before any command: the validated values."""
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
        return user_values

    def _reset_for_start(self):
        """Forget what an earlier start or run left in memory (the saved job is settled first)."""
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
        self.port = 0
        self._token_file = None

    async def _submit(self, user_values):
        """Phase 1: write the token file if asked, submit; the job id is saved at once."""
        if self.token_via_file:
            await self._write_token_file()
        await joblogs.prepare_log_dir(self)  # issue 14: private log folder, pruned
        self.job_id = await self.submit_batch_script(user_values)
        self._starting = True  # issue 24: saved now; a hub restart adopts the start
        self._session_submitted()  # issue 14: log file, card, usage log
        self._save_state_now()
        self._phase("submit")
        self._event(10, f"Job {self.job_id} submitted to the batch system.")

    async def _reach_server(self, host, port):
        """Phase 4: the node's numeric address, claimed for this server, maybe tunnelled; the server
        listens there and (``server_proof``) proves it holds this server's token. Returns what the
        hub routes to."""
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
        return ip, port

    async def _start_failed(self, error):
        """A start that raised (refused, failed, cancelled): undo what it set up; a job the
        scheduler showed ended is cancelled (idempotent) and forgotten, as 1.3 cleared it."""
        await self._remove_token_file()
        self._endpoint = None
        if self.tunnel is not None:
            await self.tunnel.close()
        self._session_failed(error)  # issue 14: usage log
        if self._ended_in_start == self.job_id and self.job_id:
            # the hub's stop() that follows has nothing left to do
            await self.leftovers.cancel_before_forget(self.job_id, "ended before its server started")
            self.clear_state()
            self._save_state_now()

    def _started(self, ip, port):
        """Phase 5: the server is the job's own and listens; the hub routes to ``(ip, port)``."""
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

    async def _job_ended(self, status):
        self._ended_in_start = self.job_id  # start() forgets it (see there)
        # how it ended, for the home page's note ("did not start, nothing lost"): start() forgets
        # the job, so poll() will not see the end (issue 26)
        self._session_ended(status.native, status.exit_code, served=False)
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
                desc += await self._queue_note()
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
