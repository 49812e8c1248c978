"""WrapSpawner: a spawner that holds a child spawner and proxies the whole Spawner API to it.

What reaches the child, in increasing precedence:

1. the child class's own defaults;
2. configuration for the child's own classes (``c.Spawner.*``, ``c.SlurmSpawner.*``...),
   through the shared ``config`` object, exactly as if the child were the hub's spawner;
3. what the admin set *on the wrapper*: traits configured in a wrapper section
   (``c.WrapSpawner.*``, ``c.ProfilesSpawner.*``), traits changed on the wrapper
   after it was made (``group_overrides``, ``apply_user_options``, ``pre_spawn_hook``)
   and containers filled in place;
4. ``child_config`` (for ProfilesSpawner: the chosen profile's config);
5. validated user values (ProfilesSpawner option fields).

Nothing else is copied: unlike wrapspawner 1.0.1, which linked every shared trait
and so replaced e.g. the child's ``start_timeout``/``ip`` with the Spawner
defaults, the child keeps its own defaults. The timeouts and address the hub
reads on the wrapper (``start_timeout``, ``http_timeout``, ``poll_interval``,
``ip``, ``port``) are mirrored *from* the child: the child's values win.

The child gets only the ``user_options`` keys listed in ``allowed_user_options``
(default none; any other key is refused with HTTP 400 naming it). ProfilesSpawner
gives it none: validated field values go on its traits instead.

The child is built in :meth:`run_pre_spawn_hook`, which the hub calls right
before ``start()`` and before it reads ``start_timeout``; or by
:meth:`load_state` after a hub restart, from the state
``{child_class, child_state, child_values}`` (ProfilesSpawner adds ``profile``);
``get_url`` is then the child's. The hub calls ``rename`` and ``delete_forever``
on stopped servers, whose child ``clear_state`` dropped: a temporary child like
the one the server had (never started) gets them. A saved child that cannot be
rebuilt is never dropped (see ``fallback_child_class``).
"""

from __future__ import annotations

import asyncio

from jupyterhub.spawner import LocalProcessSpawner, Spawner
from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import All, Container, Dict, Instance, List, Type, Unicode, import_item, observe

from batchspawner.core.options import OptionError, forget_user_options, refused_in_this_request
from batchspawner.spawner import save_spawner_state

# set on the child from the wrapper right before each start (the hub sets them on the wrapper)
RUNTIME_TRAITS = ("api_token", "admin_access", "cert_paths", "handler", "oauth_client_id", "oauth_roles")
# read by the hub on the wrapper; the child's values win
MIRRORED_TRAITS = ("start_timeout", "http_timeout", "poll_interval", "poll_jitter", "ip", "port")
# never passed from wrapper to child: the wrapper's own form and options
WRAPPER_ONLY = frozenset({"options_form", "options_from_form", "user_options", "apply_user_options", "group_overrides"})


class _OptionalType(Type):
    """A Type trait whose default may be None (traitlets cannot print that in --generate-config)."""

    def default_value_repr(self):
        return "None" if self.default_value is None else super().default_value_repr()


def qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class WrapSpawner(Spawner):
    """Runs the server with a child spawner (``child_class`` + ``child_config``)."""

    child_class = Type(
        LocalProcessSpawner,
        klass=Spawner,
        help="""The spawner class that really starts the server (a class or its import string).

        ProfilesSpawner sets it from the chosen profile.""",
    ).tag(config=True)

    child_config = Dict(
        {},
        help="""Trait values given to the child spawner, e.g. ``{"req_partition": "debug"}``.

        They win over configuration set on the wrapper; validated user values win over them.""",
    ).tag(config=True)

    allowed_user_options = List(
        Unicode(),
        help="""Keys of ``user_options`` (REST API or the child's own form) passed to the child.

        Default: none. Any other key is refused with HTTP 400 naming it before anything starts,
        because many children trust their ``user_options``: a batch spawner fills its job
        script's ``req_*`` variables from them, so an unlisted key could pick a partition,
        QOS, reservation, account or cluster the admin did not offer. List only keys you would
        let every user choose, e.g. ``["runtime"]``; the child still checks the values. The
        list is also given to a child that has a trait of this name (batch spawners).
        ProfilesSpawner ignores it: there, the profile fields are the allowlist.""",
    ).tag(config=True)

    fallback_child_class = _OptionalType(
        None,
        klass=Spawner,
        allow_none=True,
        help="""Class that rebuilds a running server whose own child class cannot be found again.

        That happens after a hub restart when a ProfilesSpawner profile was removed from the
        config while its server ran and the state names no child class (state written by
        wrapspawner 1.0.1), or when the saved child class no longer imports. This class gets
        ``child_config`` and the saved child state, so e.g. ``batchspawner.SlurmSpawner``
        finds the job again and can stop it.

        None (default): the job is never dropped. The saved state is kept as it is (also
        through stop), the server is reported running (the hub then checks its URL), an error
        naming the profile or class is logged, and starting a new server is refused until an
        admin restores the profile or sets this and restarts the hub.""",
    ).tag(config=True)

    child_spawner = Instance(Spawner, allow_none=True, help="The running child (batchspawner's port API follows it).")
    child_state = Dict(help="The child's state loaded before the child exists.")
    child_values = Dict(help="Validated user values set on the child's traits.")
    child_leftover = Dict(
        help="""What a stopped child kept through clear_state ({child_class, child_state}), e.g. a
        batch child's jobs that could not be cancelled; the next child of that class takes it over."""
    )

    def __init__(self, **kwargs):
        # what the hub gave us (user, hub, orm_spawner, ...): the child gets the same
        self._hub_kwargs = {k: v for k, v in kwargs.items() if k not in ("config", "user_options")}
        self._explicit = set()
        self._mirroring = False
        self._wrap_spawn_pending = False
        self.last_ended = None  # how the last child's job ended under its server (batchspawner.hub.sessions)
        super().__init__(**kwargs)
        self._explicit |= self._configured_on_wrapper()
        self._watching = True

    # ------------------------------------------------------------ what passes to the child
    def _configured_on_wrapper(self) -> set[str]:
        names = set()
        for cls in type(self).mro():
            if isinstance(cls, type) and issubclass(cls, WrapSpawner) and cls.__name__ in self.config:
                names |= set(self.config[cls.__name__].keys())
        return names

    @observe(All)
    def _record_explicit(self, change):
        if getattr(self, "_watching", False) and not self._mirroring:
            self._explicit.add(change["name"])

    def wrapper_settings(self, child_class) -> dict:
        """Trait values the admin set on the wrapper that the child class also has."""
        own = set(type(self).class_trait_names()) - set(Spawner.class_trait_names())
        child_traits = child_class.class_traits(config=True)
        settings = {}
        for name, trait in self.traits(config=True).items():
            if name in WRAPPER_ONLY or name in RUNTIME_TRAITS or name in own or name not in child_traits:
                continue
            explicit = name in self._explicit
            filled = isinstance(trait, (Container, Dict)) and getattr(self, name) != trait.default()
            if explicit or filled:
                settings[name] = getattr(self, name)
        return settings

    def child_kwargs(self, child_class, child_config, values) -> dict:
        kwargs = {k: v for k, v in self._hub_kwargs.items() if child_class.class_traits().get(k) is not None}
        kwargs.update(self.wrapper_settings(child_class))
        if child_class.class_traits().get("allowed_user_options") is not None:
            # the wrapper filtered already; the child's own check agrees with it
            kwargs["allowed_user_options"] = list(self.allowed_user_options)
        for key, value in dict(child_config).items():
            if child_class.class_traits().get(key) is None:
                self.log.warning("%s: %s has no trait %r; ignoring it", self._log_name, child_class.__name__, key)
                continue
            kwargs[key] = value
        kwargs.update(values)
        kwargs["config"] = self.config
        kwargs["user_options"] = self.child_user_options()
        return kwargs

    def check_user_options(self, options) -> None:
        """Refuse (OptionError, HTTP 400) user_options keys not in ``allowed_user_options``."""
        if options is None:
            return
        if not isinstance(options, dict):
            raise OptionError("user_options", "must be a JSON object")
        allowed = set(self.allowed_user_options)
        for key in options:
            if key not in allowed:
                offered = ", ".join(sorted(allowed)) if allowed else "none"
                raise OptionError(
                    str(key)[:40],
                    f"is not an option this server accepts (options users may set: {offered}; "
                    f"{type(self).__name__}.allowed_user_options)",
                )

    def child_user_options(self) -> dict:
        """user_options the child sees: only the keys in ``allowed_user_options``."""
        options = self.user_options if isinstance(self.user_options, dict) else {}
        allowed = set(self.allowed_user_options)
        return {k: v for k, v in options.items() if k in allowed}

    def build_child(self, child_class=None, child_config=None, values=None, state=None):
        """Make ``child_spawner`` (replacing any previous one) and mirror its hub-read traits."""
        child_class = child_class or self.child_class
        child_config = self.child_config if child_config is None else child_config
        self.child_values = dict(values or {})
        child = child_class(**self.child_kwargs(child_class, child_config, self.child_values))
        child.clear_state()  # it must not see our state
        if child.has_trait("chosen_by_user"):
            # the user's own values: a scheduler refusing them is the user's 400, not a 500
            child.chosen_by_user = dict(self.child_values)
        leftover = self.child_leftover
        if not state and leftover:
            # a previous child's leftovers (jobs it could not cancel): the same class takes them
            # over and cancels them at start; another class cannot, so they are logged for the admin
            if leftover.get("child_class") == qualname(child_class):
                state = leftover.get("child_state") or {}
            else:
                self.log.error(
                    "%s: a previous %s child left state the new %s child cannot take over: %s; "
                    "cancel its jobs by hand",
                    self.user.name, leftover.get("child_class"), qualname(child_class), leftover.get("child_state"),
                )
            self.child_leftover = {}
        if state:
            child.load_state(state)
        if child.has_trait("state_saver"):
            # BatchSpawnerBase saves the job id at once; save *our* state (profile + child) instead
            child.state_saver = self._save_state_now
        child._spawn_pending = self._wrap_spawn_pending
        child.wrapper_spawner = self  # issue 24: a requeued child job unroutes and re-routes the hub's spawner
        self.child_spawner = child
        self.child_state = {}
        self._sync_runtime()
        self._mirror_child()
        return child

    def _sync_runtime(self):
        for name in RUNTIME_TRAITS:
            if self.child_spawner.has_trait(name) and name in self._trait_values:
                setattr(self.child_spawner, name, getattr(self, name))

    def _mirror_child(self):
        self._mirroring = True
        try:
            for name in MIRRORED_TRAITS:
                setattr(self, name, getattr(self.child_spawner, name))
        finally:
            self._mirroring = False

    def _save_state_now(self):
        save_spawner_state(self)

    async def select_child(self):
        """Choose class, config and validated values for a new child (ProfilesSpawner overrides)."""
        self.check_user_options(self.user_options)
        return self.child_class, self.child_config, {}

    @property
    def holds_untracked_job(self) -> bool:
        """True if the state holds a child's state (a job) that no child class could be rebuilt for."""
        return self.child_spawner is None and bool(self.child_state)

    def _untracked_message(self):
        return (
            f"{self._log_name}: the state {self.child_state!r} of this server's child is kept, but no class "
            "can track or stop it"
        )

    async def prepare_child(self):
        """Build a fresh child for the coming start (validates user options first)."""
        if self.holds_untracked_job:
            self.log.error("%s; refusing to start a new server over it", self._untracked_message())
            error = web.HTTPError(409, "untracked job in state", reason="Previous server not tracked")
            error.jupyterhub_message = (
                "Your previous server may still be running but can no longer be tracked (its profile was "
                "removed). Please ask your site's administrators."
            )
            raise error
        child_class, child_config, values = await self.select_child()
        self.child_spawner = None  # a fresh child for this start (as build_child always made)
        return self._construct(child_class, child_config, values)

    def _construct(self, child_class, child_config, values, state=None):
        """Build the child through :meth:`construct_child` (the hook subclasses override)."""
        self._pending_child = (child_class, child_config, values, state, self.child_class, self.child_config)
        try:
            return self.construct_child()
        finally:
            self._pending_child = None

    def construct_child(self):
        """wrapspawner 1.0's hook: make ``child_spawner`` if there is none, and return it.

        A subclass may override it to pick or adjust the child, as 1.0 documented: set
        ``self.child_class``/``self.child_config`` and call ``super().construct_child()``,
        and/or change the returned child. It runs before every start (after the choice
        :meth:`select_child` made, e.g. a profile) and when :meth:`load_state` rebuilds
        the child after a hub restart; a class or config the override set wins over that
        choice. Unlike 1.0 no traits are linked between wrapper and child (see the module
        docstring for what passes)."""
        if self.child_spawner is None:
            pending = getattr(self, "_pending_child", None)
            if pending is None:
                pending = (self.child_class, self.child_config, self.child_values, self.child_state or None,
                           self.child_class, self.child_config)  # fmt: skip
            child_class, child_config, values, state, seen_class, seen_config = pending
            if self.child_class is not seen_class:
                child_class = self.child_class  # the override chose the class
            if self.child_config is not seen_config:
                child_config = self.child_config
            self.build_child(child_class, child_config, values, state=state)
        return self.child_spawner

    # ------------------------------------------------------------ hub-pending flags
    @property
    def _spawn_pending(self):
        return self._wrap_spawn_pending

    @_spawn_pending.setter
    def _spawn_pending(self, value):
        self._wrap_spawn_pending = value
        child = self._trait_values.get("child_spawner") if hasattr(self, "_trait_values") else None
        if child is not None:
            child._spawn_pending = value

    # ------------------------------------------------------------ Spawner API
    async def run_pre_spawn_hook(self):
        await maybe_future(super().run_pre_spawn_hook())
        refused = refused_in_this_request(self)
        if refused is not None:  # the hub's same-request retry of refused options
            raise refused
        try:
            await self.prepare_child()
        except OptionError as e:
            forget_user_options(self, e)  # refused options must not come back at the next plain Start
            raise

    async def start(self):
        self.last_ended = None
        if self.child_spawner is None:
            await self.prepare_child()
        child = self.child_spawner
        self._sync_runtime()
        result = await child.start()
        self._mirror_child()
        return result

    async def stop(self, now=False):
        if self.child_spawner is not None:
            await self.child_spawner.stop(now=now)
            self._mirror_child()
        elif self.holds_untracked_job:
            self.log.error("%s; it is not stopped, cancel it by hand", self._untracked_message())

    async def poll(self):
        if self.child_spawner is None:
            # an untracked job may still run: report it running (the hub checks its URL), never "ended"
            return None if self.holds_untracked_job else 0
        return await self.child_spawner.poll()

    async def progress(self):
        if self.child_spawner is None:
            yield {"progress": 1, "message": "Preparing the server..."}
            while self.child_spawner is None and self._spawn_pending:
                await asyncio.sleep(0.2)
        if self.child_spawner is not None:
            async for event in self.child_spawner.progress():
                yield event

    def get_env(self):
        if self.child_spawner is not None:
            return self.child_spawner.get_env()
        return super().get_env()

    async def get_url(self):
        if self.child_spawner is not None:
            return await maybe_future(self.child_spawner.get_url())
        return await maybe_future(super().get_url())

    async def rename(self, old_name, new_name):
        child = await self.child_for_stopped_server("rename")
        if child is not None:
            await maybe_future(child.rename(old_name, new_name))

    async def delete_forever(self):
        child = await self.child_for_stopped_server("delete_forever")
        if child is not None:
            await maybe_future(child.delete_forever())

    async def stopped_child_spec(self):
        """(class, config, values) of the child a stopped server had, or None if unknown.

        The hub calls ``rename``/``delete_forever`` on stopped servers, after
        ``clear_state`` dropped the child; ProfilesSpawner reads the profile from
        the saved ``user_options``.
        """
        return self.child_class, self.child_config, {}

    async def child_for_stopped_server(self, action):
        """The running child, else a temporary child like the one the server had (not started)."""
        if self.child_spawner is not None:
            return self.child_spawner
        if self.holds_untracked_job:
            self.log.error("%s; %s is not forwarded", self._untracked_message(), action)
            return None
        spec = await self.stopped_child_spec()
        if spec is None:
            self.log.warning("%s: %s: no child class is known for this server; nothing to forward to",
                             self._log_name, action)
            return None
        child_class, child_config, values = spec
        child = child_class(**self.child_kwargs(child_class, child_config, values))
        child.clear_state()
        return child

    async def get_options_form(self):
        child = self.child_spawner or self.child_class(**self.child_kwargs(self.child_class, self.child_config, {}))
        return await child.get_options_form()

    async def options_from_form(self, form_data):
        child = self.child_spawner or self.child_class(**self.child_kwargs(self.child_class, self.child_config, {}))
        options = await maybe_future(child.run_options_from_form(form_data))
        if isinstance(options, dict):
            options.pop("_xsrf", None)  # the hub's form token (a default options_from_form keeps it), no option
        self.check_user_options(options)  # refused on the form already, not only at start
        return options

    # ------------------------------------------------------------ state
    def get_state(self):
        state = super().get_state()
        child_state = self.child_spawner.get_state() if self.child_spawner is not None else self.child_state
        if child_state:
            state["child_state"] = child_state
            if self.child_spawner is not None:
                state["child_class"] = qualname(type(self.child_spawner))
            elif getattr(self, "_saved_child_class", None):
                state["child_class"] = self._saved_child_class

            if self.child_values:
                state["child_values"] = dict(self.child_values)
        if self.child_leftover:
            state["child_leftover"] = dict(self.child_leftover)
        if getattr(self, "last_ended", None):
            state["last_ended"] = dict(self.last_ended)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.child_leftover = dict(state.get("child_leftover") or {})
        ended = state.get("last_ended")
        self.last_ended = dict(ended) if isinstance(ended, dict) and ended.get("job_id") else None
        child_state = state.get("child_state") or {}
        if not child_state:
            return
        self.child_state = child_state
        self.child_values = state.get("child_values") or {}
        self._saved_child_class = state.get("child_class")
        try:
            child_class, child_config = self.restored_child(state)
        except (LookupError, ImportError, ValueError) as e:
            child_class, child_config = self.unresolved_child(str(e))
        if child_class is None:
            return  # logged; child_state is kept so get_state() and clear_state() do not lose the job
        self._construct(child_class, child_config, self.child_values, state=child_state)

    def load_child_class(self, state):
        """wrapspawner 1.0's hook: a subclass that chooses ``child_class`` sets it here from the
        saved state (called by load_state before the child is rebuilt). Not needed otherwise:
        the state names the child's class (see restored_child)."""

    def restored_child(self, state):
        """(class, config) of the child that wrote ``state`` (ProfilesSpawner: its profile).

        Raises LookupError/ImportError/ValueError saying why when it cannot be found.
        """
        if type(self).load_child_class is not WrapSpawner.load_child_class:
            self.load_child_class(state)  # a 1.0 subclass decides
            return self.child_class, self.child_config
        name = state.get("child_class")
        if name and name != qualname(self.child_class):
            cls = import_item(name)
            if not (isinstance(cls, type) and issubclass(cls, Spawner)):
                raise ValueError(f"saved child class {name!r} is not a Spawner")
            return cls, self.child_config
        return self.child_class, self.child_config

    def unresolved_child(self, reason):
        """``fallback_child_class`` for a child that cannot be rebuilt, else (None, None): keep the state."""
        setting = f"{type(self).__name__}.fallback_child_class"
        if self.fallback_child_class is not None:
            self.log.error(
                "%s: %s; rebuilding the server's child as %s (%s)",
                self._log_name, reason, qualname(self.fallback_child_class), setting,
            )
            return self.fallback_child_class, self.child_config
        self.log.error(
            "%s: %s. Its job is kept in state (%r) and the server is reported running, but it cannot be "
            "stopped and no new server starts. Put it back in the config or set %s, and restart the hub.",
            self._log_name, reason, self.child_state, setting,
        )
        return None, None

    def clear_state(self):
        untracked = self.holds_untracked_job
        super().clear_state()
        if untracked:
            # the hub clears state after every stop; an untracked job must survive it
            self.log.error("%s; keeping it through clear_state", self._untracked_message())
            return
        if self.child_spawner is not None:
            self.child_spawner.clear_state()
            # what a child keeps through clear_state (a batch child's uncancelled_jobs) stays ours
            leftover = self.child_spawner.get_state()
            # how the child's job ended (for the "your job ended" page) is ours to keep, not a leftover
            ended = leftover.pop("last_ended", None)
            if ended:
                self.last_ended = dict(ended)
            if leftover:
                self.child_leftover = {"child_class": qualname(type(self.child_spawner)), "child_state": leftover}
        self.child_state = {}
        self.child_values = {}
        self.child_spawner = None
        self._saved_child_class = None
