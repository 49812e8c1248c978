"""The one shared-poller base: a registry per kind keyed by endpoint, an injectable clock,
backoff on failure, and a shutdown that ends every background task.

A *shared poller* asks one scheduler endpoint (one command line, cluster, submit host and
identity) about many things at once, in a background task, so that many spawners and pages read
one cache instead of each running its own command. Four kinds use this base: the job status
poller (:mod:`batchspawner.polling.status`), the session-card details poller
(:mod:`batchspawner.hub.sessions`), the cluster facts for the spawn form (:mod:`batchspawner.polling.cluster`)
and the container image catalog (:mod:`wrapspawner.containers`).

What the base guarantees, for every kind:

- **One poller per endpoint and event loop.** :meth:`SharedPoller.for_key` returns the registered
  poller of a key, or makes one. A poller whose background task belonged to an event loop that
  is now closed (a script that ran ``asyncio.run()`` before) is dropped and a fresh one is made
  with the same arguments: nothing of a closed loop (task, future, event) is ever reused.
- **A background loop that sleeps first.** The loop runs a round only when the kind says one is
  due (:meth:`SharedPoller.due_in`) and otherwise sleeps on the poller's clock. Rounds a caller
  waits for run in the caller's own ``await``. So a program that ends its event loop
  (``asyncio.run()`` of any public coroutine returns) finds the task asleep, not half way
  through starting a command (CPython 3.11 cannot cancel a half-started subprocess while
  ``asyncio.run()`` shuts down: it waits forever).
- **An injectable clock.** ``clock`` (class attribute or constructor argument) gives ``now()``
  and ``sleep()``. :class:`ManualClock` moves only when a test says so: background rounds then
  happen exactly when a test steps the clock, never because the machine was slow.
- **Backoff on failure.** :meth:`SharedPoller.backoff` doubles an interval per failed round in a
  row, up to ``max_interval``; each kind decides which rounds count as failed.
- **Shutdown.** :func:`stop_all` (async) cancels and awaits every background task of every kind
  and empties the registries; :func:`stop_all_nowait` does the same without awaiting (for
  ``atexit`` and code that cannot await). The first background task registers
  :func:`stop_all_nowait` with :mod:`atexit` and, in a JupyterHub process, makes the hub's
  ``cleanup()`` (SIGTERM, SIGINT, the shutdown API) await :func:`stop_all` first, while the loop
  still runs; JupyterHub then cancels what is left of its loop's tasks.

This package imports nothing from the spawner or the compatibility layer.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time

log = logging.getLogger("batchspawner.polling")


class Clock:
    """Monotonic seconds and sleeping, as the pollers use them (the default: real time)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float):
        await asyncio.sleep(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that moves only when :meth:`advance` is called (for tests).

    ``sleep(s)`` returns once the clock has been advanced ``s`` seconds past the moment it was
    called; ``sleep(0)`` (or less) only yields to the loop."""

    def __init__(self, start: float = 1000.0):
        self.t = float(start)
        self._sleepers: list = []  # [deadline, future]

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float):
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = [self.t + seconds, asyncio.get_running_loop().create_future()]
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return sum(not f.done() for _, f in self._sleepers)

    async def advance(self, seconds: float, settle: int = 20):
        """Move the clock ``seconds`` on, wake every sleep that is due, and let woken tasks run
        (``settle`` turns of the event loop: enough for a round answered by an in-process fake)."""
        self.t += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self.t and not future.done():
                future.set_result(None)
        for _ in range(settle):
            await asyncio.sleep(0)


REAL_CLOCK = Clock()

_kinds: list = []  # every SharedPoller subclass (their registries), for stop_all
_atexit_registered = False


class SharedPoller:
    """Base of the shared pollers (see the module docstring).

    A kind sets ``name`` (for logs) and implements :meth:`due_in` (seconds until its next
    background round; 0 = now) and :meth:`background_round`; :meth:`wanted` says whether the
    background loop should keep running (default: always). It calls :meth:`start` when there is
    something to poll. Settings given to the kind's getter again (a newer configuration of the same
    endpoint) are set on the registered poller: the newest configuration wins.
    """

    name = "shared poller"
    log = log  # a kind may set its own logger (class or instance attribute)
    clock: Clock = REAL_CLOCK
    max_interval = 300.0
    _registry: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "_registry" not in cls.__dict__:
            cls._registry = {}  # one registry per kind: a status key never finds a details poller
        _kinds.append(cls)

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self._made_with = (args, kwargs)  # to make a fresh one when this one's loop has closed
        return self

    def __init__(self, *, clock: Clock | None = None):
        if clock is not None:
            self.clock = clock
        self.failures = 0  # failed rounds in a row
        self._task: asyncio.Task | None = None
        self._loop = None  # the event loop of the background task (a poller serves one loop)

    # ------------------------------------------------------------------ registry
    @classmethod
    def for_key(cls, key, *args, **kwargs):
        """The registered poller of ``key``, or a new one made with ``cls(*args, **kwargs)``.

        A registered poller whose loop is closed is dropped and replaced by a new one made with
        the arguments it was made with (its settings are not carried over otherwise)."""
        poller = cls._registry.get(key)
        if poller is not None and poller.loop_closed():
            cls._registry.pop(key, None)
            poller._forget_task()
            args, kwargs = poller._made_with
            poller = None
        if poller is None:
            poller = cls._registry[key] = cls(*args, **kwargs)
        return poller

    def registered(self) -> bool:
        return any(p is self for p in type(self)._registry.values())

    def loop_closed(self) -> bool:
        """True when this poller's background task belonged to an event loop that is closed now."""
        return self._loop is not None and self._loop.is_closed()

    # ------------------------------------------------------------------ the background loop
    def wanted(self) -> bool:
        """Whether the background loop should go on (e.g. while jobs are watched)."""
        return True

    def due_in(self) -> float:
        """Seconds until the next background round is due (0 or less: now)."""
        raise NotImplementedError

    async def background_round(self):
        """One background round (exceptions are logged; the loop goes on)."""
        raise NotImplementedError

    def backoff(self, interval: float, failures: int | None = None, cap: float | None = None) -> float:
        """``interval`` doubled per failure in a row (``failures``, default ``self.failures``),
        at most ``cap`` (default ``max_interval``, never below ``interval``)."""
        failures = self.failures if failures is None else failures
        cap = max(interval, self.max_interval if cap is None else cap)
        return min(interval * 2 ** min(max(failures, 0), 30), cap)

    def start(self) -> asyncio.Task | None:
        """Start the background loop on the running event loop if it is not running there.

        Outside an event loop this does nothing (the next call from inside one starts it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._task is not None and not self._task.done() and self._loop is loop:
            return self._task
        if self._loop is not None and self._loop is not loop:
            self._forget_task()  # a task of another (ended) loop is never awaited here
        self._loop = loop
        self._task = loop.create_task(self._run())
        _register_atexit()
        return self._task

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self):
        while self.wanted():
            delay = self.due_in()
            if delay > 0:
                await self.clock.sleep(delay)
                continue  # a round someone else ran may have moved what is due: look again
            try:
                await self.background_round()
            except Exception:  # never let the loop die
                self.log.exception("%s round failed", self.name)

    def _forget_task(self):
        tasks = [self._task, *self.other_tasks()]
        self._task = None
        for task in tasks:
            if task is not None and not task.done():
                try:
                    task.cancel()
                except RuntimeError:  # its loop is closed: nothing runs it any more
                    pass

    def other_tasks(self) -> list:
        """Tasks besides the background loop that stopping must end (a round in flight)."""
        return []

    async def close(self):
        """Cancel the background task and any round in flight, and wait until they have ended
        (when they belong to the running loop; a closed loop's tasks are only forgotten)."""
        tasks = [t for t in [self._task, *self.other_tasks()] if t is not None and not t.done()]
        self._task = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for task in tasks:
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed
                continue
            if task.get_loop() is loop:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    # ------------------------------------------------------------------ shutdown
    @classmethod
    async def stop_all(cls):
        """Stop every poller of this kind (and of its subkinds) and empty their registries."""
        for kind in _kinds_of(cls):
            registry = kind.__dict__.get("_registry", {})
            for poller in list(registry.values()):
                await poller.close()
            registry.clear()

    @classmethod
    def stop_all_nowait(cls):
        """Cancel every background task of this kind without waiting, and empty the registries."""
        for kind in _kinds_of(cls):
            registry = kind.__dict__.get("_registry", {})
            for poller in list(registry.values()):
                poller._forget_task()
            registry.clear()


def _kinds_of(cls) -> list:
    return [cls] + [k for k in _kinds if k is not cls and issubclass(k, cls)]


async def stop_all():
    """Stop every shared poller of every kind (status, details, cluster facts, images).

    Await it before a program's event loop ends, or from hub shutdown code; the pollers made
    afterwards start afresh."""
    await SharedPoller.stop_all()


def stop_all_nowait():
    """:func:`stop_all` for code that cannot await (``atexit``, a signal handler)."""
    SharedPoller.stop_all_nowait()


def _register_atexit():
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(stop_all_nowait)
    _hook_hub_cleanup()


def running_hub_app():
    """This process's JupyterHub application once it exists, else None (nothing is imported that
    the process has not imported already)."""
    app_module = sys.modules.get("jupyterhub.app")
    hub_class = getattr(app_module, "JupyterHub", None)
    try:
        if hub_class is None or not hub_class.initialized():
            return None
        return hub_class.instance()
    except Exception:  # not a hub process after all
        return None


def _hook_hub_cleanup():
    """In a JupyterHub process, :func:`hook_hub_cleanup` the running hub (once)."""
    app = running_hub_app()
    if app is not None:
        hook_hub_cleanup(app)


def hook_hub_cleanup(app):
    """Make ``app.cleanup()`` (JupyterHub runs it on SIGTERM, SIGINT and the shutdown API, before
    it cancels every task of its loop) stop the shared pollers first. Idempotent.

    Stopped there, on a loop that still runs, a round in flight ends cleanly (its command is
    killed); cancelled together with every other task instead, a round that is just starting its
    command would never finish (CPython 3.11) and the hub would not exit."""
    original = app.cleanup
    if getattr(original, "stops_shared_pollers", False):
        return

    async def cleanup(*args, **kwargs):
        running = sum(p.running() for kind in _kinds for p in list(kind.__dict__.get("_registry", {}).values()))
        try:
            await asyncio.wait_for(stop_all(), 10)
            log.info("hub shutdown: stopped the shared pollers (%d running)", running)
        except Exception:
            log.exception("hub shutdown: stopping the shared pollers failed")
        return await original(*args, **kwargs)

    cleanup.stops_shared_pollers = True
    app.cleanup = cleanup
