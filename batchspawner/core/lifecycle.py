"""A running server's life: ``poll()``, a job back in the queue (requeue, hold, node failure), the end
report, ``stop()`` and ``progress()``.

:class:`PollAndStop` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. A server ends only on
positive evidence that its job ended; a job id is never forgotten without a cancel.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

from batchspawner.core.states import JobState, JobStatus


class PollAndStop:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    def _event(self, progress, message):
        self._events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self._log_name, message)
        self._wake_progress()

    def _wake_progress(self):
        """Wake every progress() stream waiting for a new event."""
        changed, self._events_changed = self._events_changed, asyncio.Event()
        changed.set()

    async def poll(self):
        """Whether the server's job still lives: None while it does, an exit status once it ended.

        JupyterHub calls this on every server every ``poll_interval``, and once for each restored
        server at hub start. Contract:

        - **None** (alive) while the job runs, pends, is suspended, or its state is *unknown*: a
          failed, empty, garbled or hung scheduler answer is never an end. The answer comes from
          the shared status poller (one query per cluster per ``status_interval`` for every
          server), so a poll normally runs no command of its own.
        - **An exit status** (never 0) only on positive evidence that *this* job ended: a terminal
          state, or "no such job" confirmed by a second source. The job is cancelled (idempotent)
          before it is forgotten, and how it ended is recorded for the user's pages.
        - A ready server whose job went back to the queue (requeue, hold, node failure) is
          unrouted at once and followed as a pending start (issue 24); with ``follow_requeue``
          off it ends (1).
        - A start that was under way when the hub restarted is adopted and followed.
        - A tunnel that can no longer be rebuilt ends the server (its job cancelled): a route
          never points at a local port the hub does not hold (issue 21).
        - **1** when no job is known (batchspawner 1.3's meaning: a stopped server).
        """
        # no _resolve_homedir() here: start() did it for this spawner; only the first poll of a
        # spawner restored at hub startup (before the hub serves requests) looks it up inline,
        # and an await here would split one shared status round of many polls into two
        if not self.job_id:
            return 1
        if self.leftovers.may_forget(self.job_id):
            return self._forget_settled_job()
        self._track_session()  # issue 14: session card facts (idempotent)
        status = await self.job_status_now()
        if status.state is JobState.FINISHED:
            return await self._job_finished(status)
        if self._rerun_failed:
            return 1  # issue 24: the requeued job's rerun cannot be followed; stop() cancels it
        if self._restored_starting and self._rerun_task is None and not getattr(self, "_spawn_pending", False):
            return self._adopt_restored_start()
        if self._left_running(status):
            await self._job_back_in_queue(status)
            return 1 if self._rerun_failed else None
        if self.tunnel is not None and status.state is JobState.RUNNING:
            return await self._keep_tunnel()
        return None

    def _forget_settled_job(self):
        """The job was seen ended (or cancelled and seen gone) before: forgotten, as 1.3 did."""
        self.clear_state()
        self._save_state_now()  # saved at submit, so forgotten in the database too
        return 1

    async def _job_finished(self, status):
        """The scheduler showed the job ended: record how, cancel it (as its user) before the hub
        forgets it, close its tunnel, forget and save; the exit status for JupyterHub."""
        # issue 14: the pages say how and when the job ended (scancel, wall time, node failure)
        self._session_ended(status.native, status.exit_code, served=not (self._starting or self._restored_starting),
                            reason=status.describe())
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

    def _adopt_restored_start(self):
        """Issue 24: the hub restarted while this start waited: go on waiting, as a pending start."""
        self._restored_starting = False
        self._follow(f"The hub restarted while your server was starting; it goes on following your "
                     f"job {self.job_id}.", adopt=True)
        return None

    def _left_running(self, status) -> bool:
        """Issue 24: a ready server's job is pending again (requeue, hold, node failure), and
        nothing else is already dealing with it (a follow, a Cancel, a spawn, a stop, a suspend)."""
        return (status.state is JobState.PENDING and self._rerun_task is None
                and self._follow_cancelled != self.job_id  # Cancel pressed: the hub's stop follows
                and not getattr(self, "_spawn_pending", False) and not self.job_is_suspended(status)
                and not getattr(self._hub_spawner(), "_stop_pending", False))  # a stop cancels it anyway

    async def _keep_tunnel(self):
        """After a hub restart, or if the relay died, rebuild the tunnel; when no forward can be
        rebuilt, the server ends and its job is cancelled (issue 21). None while it holds."""
        if await self._reopen_tunnel():
            return None
        reason = f"its ssh tunnel through {self.tunnel_login_host} could not be rebuilt (see the errors above)"
        self.log.error("%s: ending the server of job %s: %s. The user can start a new one.",
                       self._log_name, self.job_id, reason)
        await self.leftovers.cancel_before_forget(self.job_id, reason)
        await self.tunnel.close()
        self._endpoint = None
        self._forget_job()
        return 1

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
            self._session_ended("REQUEUED", None)
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

        Phases: stop following a requeued job and close the tunnel; cancel (retried unless
        ``now``); wait until the job is seen gone (``cancel_wait_timeout``; no wait with
        ``now``); forget it, or keep it for the next start with the admin's manual command in
        the log.
        """
        await self._stop_following()
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
            status = await self._wait_until_gone(0 if now else self.cancel_wait_timeout)
            if status is None:
                return  # seen gone: forgotten
            self._keep_alive_after_cancel(status, 0 if now else self.cancel_wait_timeout)
        else:
            self._keep_uncancelled(error)
        self._forget_job()

    async def _stop_following(self):
        """Stop following a requeued job (issue 24), give the hub its timeout back, close the tunnel."""
        if self._rerun_task is not None:
            self._rerun_task.cancel()
        if getattr(self, "_saved_http_timeout", None) is not None:
            self._hub_spawner().http_timeout = self._saved_http_timeout
            self._saved_http_timeout = None
        if self.tunnel is not None:
            await self.tunnel.close()

    async def _wait_until_gone(self, timeout):
        """None once the scheduler shows the cancelled job ended (it is then forgotten); else the
        last status seen when ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.job_status_now(max_age=self.startup_poll_interval)
            if status.state is JobState.FINISHED:
                self.leftovers.cancelled.add(self.job_id)
                self._forget_job()
                return None
            if time.monotonic() >= deadline:
                return status
            await asyncio.sleep(self.startup_poll_interval)

    def _keep_alive_after_cancel(self, status, waited):
        self.leftovers.keep()
        self.log.warning(
            "%s: job %s still %s %.0f s after its cancel was accepted; it is kept in the server's "
            "state and checked (and cancelled again if alive) at the next start. If it stays, "
            "cancel it by hand: %s",
            self._log_name, self.job_id, status.describe(), waited, self.leftovers.manual_cancel_cmd(self.job_id),
        )  # fmt: skip

    def _keep_uncancelled(self, error):
        self.leftovers.keep()
        self.log.error(
            "%s: could not cancel job %s: %s. The job may still be running and holding its "
            "allocation. The hub stops the server anyway (proxy route and token removed); the job "
            "is kept in the server's state and cancelled before the user's next start. Admin: check "
            "that the scheduler answers, then cancel it by hand: %s",
            self._log_name, self.job_id, error, self.leftovers.manual_cancel_cmd(self.job_id),
        )  # fmt: skip

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
            # asyncio.wait, not wait_for: Python 3.11's wait_for swallows a cancel that comes in the
            # turn the event is set, and JupyterHub's iterate_until then got StopAsyncIteration
            # instead of CancelledError (a traceback on /progress; tests/unit/core/test_progress_cancel.py)
            waiter = asyncio.ensure_future(changed.wait())
            try:
                await asyncio.wait({waiter}, timeout=5)
            finally:
                waiter.cancel()
