"""ProfilesSpawner: the user picks a profile (and fills its fields) on the spawn form.

``profiles`` accepts both forms, mixed freely:

- the wrapspawner 1.0.1 tuple ``(display, key, spawner_class, config)``;
- a dict ``{"key", "display", "class", "config", "description", "fields",
  "groups", "users", "visible", "default", "container"}`` (see :mod:`wrapspawner.options`
  for fields, :mod:`wrapspawner.containers` for container images).

How user values reach the child (the one path, for the form and the REST API):
``options_from_form`` turns the form into ``{"profile": key, field: value}``; the
hub stores that as ``user_options``; right before ``start()`` (in
``run_pre_spawn_hook``) those options are validated again field by field, and a
child is built with each canonical value set on its declared trait
(``req_<field>`` by default) and with **empty** ``user_options``. So
BatchSpawnerBase's own ``user_options`` check in ``start()`` sees nothing, and no
raw user text ever becomes a template variable. Any refusal is
:class:`batchspawner.core.options.OptionError` (HTTP 400 naming the field and the
rule) before anything is submitted.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

from jupyterhub.spawner import Spawner
from jupyterhub.utils import maybe_future
from traitlets import Any, Bool, Float, List, TraitError, Unicode, default, import_item, validate

from batchspawner.core import hublog
from batchspawner.core.options import OptionError

from . import factsource, formfacts, remember
from .containers import ContainerChoice, wants_gpus
from .form import (  # noqa: F401 (also this module's names, as in 0.1)
    PREFILL_TTL, REFUSED_FORM_TTL, REFUSED_FORMS_MAX, ProfileForm, RefusedForm, _prefills, _refused_forms,
    _remember_refused, _take_prefill, _take_refused, prefill_form,
)
from .options import Field, check_target_trait, make_field
from .wrap import WrapSpawner, qualname

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
PROFILE_KEYS = {"key", "display", "class", "spawner_class", "config", "description", "fields", "groups", "users",
                "visible", "default", "container"}
# where forms are remembered when ProfilesSpawner.remember_file is not configured (relative: the
# hub's working directory, where JupyterHub keeps jupyterhub.sqlite by default)
REMEMBER_FILE_DEFAULT = "jupyterhub-hpc-forms.json"

def _no_user_options_left(spawner, user_options):
    """ProfilesSpawner's ``apply_user_options``: the options are applied in ``select_child``."""
    return None


@dataclass
class Profile:
    key: str
    display: str
    spawner_class: type
    config: dict
    description: str = ""
    fields: dict = field(default_factory=dict)  # name -> Field
    groups: frozenset = frozenset()
    users: frozenset = frozenset()
    visible: object = None
    default: bool = False
    container: ContainerChoice | None = None  # image field + label-declared arguments (containers.py)

    async def visible_to(self, spawner) -> bool:
        if not (self.groups or self.users or self.visible):
            return True
        user = spawner.user
        if user.name in self.users:
            return True
        if self.groups & {g.name for g in getattr(user, "groups", [])}:
            return True
        if self.visible is not None:
            return bool(await maybe_future(self.visible(spawner)))
        return False

    def parse_values(self, options: dict, images=None) -> dict:
        """Canonical values of this profile's fields in ``options`` (the key 'profile' excluded).

        With a container, ``images`` (the usable images now) adds the image field and the
        chosen image's declared arguments; any other key is refused.
        """
        values = {}
        known = set(self.fields)
        if self.container is not None:
            name, args = self.container.parse(options, images or {})
            values[self.container.field] = name
            values.update(args)
            known |= {self.container.field, *images[name].args}
        for key in options:
            if key != "profile" and key not in known:
                raise OptionError(str(key)[:40], f"is not an option of profile {self.key!r}")
        for name, fld in self.fields.items():
            raw = options.get(name)
            values[name] = fld.default if raw in (None, "", [""]) else fld.parse(raw)
            if values[name] is None:
                raise OptionError(name, "is required")
        return values


def _load_class(value):
    cls = import_item(value) if isinstance(value, str) else value
    if not (isinstance(cls, type) and issubclass(cls, Spawner)):
        raise ValueError(f"{value!r} is not a Spawner class")
    return cls


def parse_profile(entry) -> Profile:
    """A Profile from a 1.0.1 tuple or a dict; ValueError saying what is wrong."""
    if isinstance(entry, (list, tuple)):
        if len(entry) != 4:
            raise ValueError("a tuple profile is (display, key, spawner_class, config)")
        display, key, cls, config = entry
        entry = {"display": display, "key": key, "class": cls, "config": config}
    if not isinstance(entry, dict):
        raise ValueError("a profile is a (display, key, class, config) tuple or a dict")
    unknown = set(entry) - PROFILE_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    key = entry.get("key")
    if not isinstance(key, str) or not key or any(c in key for c in "\n\r\"'<>&"):
        raise ValueError(f"key {key!r} must be a non-empty plain string")
    cls = _load_class(entry.get("class") or entry.get("spawner_class"))
    config = dict(entry.get("config") or {})
    fields = {}
    for name, spec in (entry.get("fields") or {}).items():
        fld: Field = make_field(name, spec)
        check_target_trait(name, fld.trait, cls, getattr(fld, "assoc_checked", False))
        fields[name] = fld
    visible = entry.get("visible")
    if visible is not None and not callable(visible):
        raise ValueError("'visible' must be a callable taking the spawner")
    container = ContainerChoice(entry["container"], fields) if entry.get("container") is not None else None
    return Profile(
        key=key,
        display=str(entry.get("display") or key),
        spawner_class=cls,
        config=config,
        description=str(entry.get("description", "")),
        fields=fields,
        groups=frozenset(entry.get("groups") or ()),
        users=frozenset(entry.get("users") or ()),
        visible=visible,
        default=bool(entry.get("default", False)),
        container=container,
    )


class ProfilesSpawner(ProfileForm, WrapSpawner):
    """WrapSpawner whose child is chosen by the user from admin-defined profiles."""

    profiles = List(
        [("Local server", "local", "jupyterhub.spawner.LocalProcessSpawner", {})],
        minlen=1,
        help="""The profiles users choose from.

        Each is a wrapspawner 1.0.1 tuple ``(display, key, spawner_class, config)`` or a dict
        with ``key``, ``display``, ``class``, ``config`` and optionally ``description``,
        ``fields`` (typed options, see wrapspawner.options), ``groups``/``users`` (who sees it;
        anyone if neither nor ``visible`` is given), ``visible`` (callable(spawner) -> bool,
        may be async), ``default`` and ``container`` (an image field over an admin's folder of
        Apptainer images, whose labels declare typed arguments; see wrapspawner.containers).
        ``config`` is given to the child as trait values;
        field values win over it. Users never see or start a profile not visible to them.""",
    ).tag(config=True)

    default_profile = Unicode(
        "",
        help="""Key of the profile preselected on a user's first visit and used when user_options
        name none (a REST API spawn). Empty: the profile marked ``default``, else the first visible.
        After a spawn the form preselects the user's last choice instead.""",
    ).tag(config=True)

    template_paths = List(
        Unicode(),
        help="""Folders searched (before the package's own) for ``form_template_name``.

        Copy wrapspawner/templates/profiles_form.html into one to change the form.""",
    ).tag(config=True)

    form_template_name = Unicode(
        "profiles_form.html", help="Jinja2 template of the profile form (found in template_paths first)."
    ).tag(config=True)

    # wrapspawner 1.0.1 names; when form_template is set it is used as in 1.0.1 (no fields)
    form_template = Unicode("", help="Deprecated (wrapspawner 1.0.1): str.format form with {input_template}.").tag(
        config=True
    )
    first_template = Unicode("selected", help="Deprecated (wrapspawner 1.0.1), used with form_template.").tag(
        config=True
    )
    input_template = Unicode(
        '<option value="{key}" {first}>{display}</option>',
        help="Deprecated (wrapspawner 1.0.1), used with form_template.",
    ).tag(config=True)

    cluster_limits = Bool(
        True,
        help="""Know the Slurm cluster on the form: show each partition's free cores and limits next to
        a ``partition`` field, and refuse (HTTP 400 naming the field) cores, memory or wall time above
        the chosen partition's maximum before anything is submitted. The facts come from
        ``batchspawner.polling.cluster.ClusterInfo``, refreshed in the background (``scontrol``/``sinfo``),
        never queried while a form renders; until the first answer nothing is refused. Each profile's
        come from its own cluster, asked as its spawner asks the scheduler (the status query's runner
        and identity: over ssh for an ssh ``exec_prefix`` or ``submit_hosts``, else as the hub's user;
        wrapspawner.factsource).
        Applies to profiles whose class reads them (``cluster_facts = "slurm"``: SlurmSpawner and
        its subclasses).""",
    ).tag(config=True)

    cluster_wait = Float(
        3.0,
        help="""Seconds the first spawn form after a hub start (and the first check of a form) waits for
        the cluster's first answer (``scontrol``/``sinfo``, see ``cluster_limits``), so that form
        already shows the partitions' facts and limits (else it says they are not known yet); the
        user's Slurm associations (account/qos fields) are waited for as long. Later renders use the
        cache. 0: never wait. The live checks in the browser: wrapspawner.formfacts.""",
    ).tag(config=True)

    remember_file = Unicode(
        help="""JSON file where the last values each user submitted for each profile are kept (0600,
        written whole); they are that profile's defaults in the user's next form, on every server of
        that user, across hub restarts. Values are checked again against the profile's fields and the
        cluster's limits when a form uses them; one no longer allowed shows the profile's default.
        A relative path is relative to the hub's working directory. Empty: remember nothing (the
        form then preselects only the server's own last profile and values).""",
    ).tag(config=True)

    @default("remember_file")
    def _default_remember_file(self):
        return REMEMBER_FILE_DEFAULT

    child_profile = Unicode(help="Key of the running child's profile (kept in state).")
    _parsed = Any()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        hublog.install(self.log)  # one line, no traceback, for a refused form (issue 26)
        formfacts.kick_at_start(self, self.parsed_profiles)  # the first form finds the facts

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # the options are the profile's, checked and applied to the child in select_child; without
        # this JupyterHub warns "unhandled user_options" on every spawn
        return _no_user_options_left

    @validate("profiles")
    def _check_profiles(self, proposal):
        parsed, keys = [], set()
        for i, entry in enumerate(proposal["value"]):
            try:
                profile = parse_profile(entry)
            except (ValueError, ImportError) as e:
                raise TraitError(f"ProfilesSpawner.profiles[{i}]: {e}") from None
            if profile.key in keys:
                raise TraitError(f"ProfilesSpawner.profiles[{i}]: key {profile.key!r} is used twice")
            keys.add(profile.key)
            parsed.append(profile)
        self._parsed = parsed
        return proposal["value"]

    @property
    def parsed_profiles(self) -> list[Profile]:
        if self._parsed is None:
            self._check_profiles({"value": self.profiles})
        return self._parsed

    def profile(self, key) -> Profile | None:
        return next((p for p in self.parsed_profiles if p.key == key), None)

    async def visible_profiles(self) -> list[Profile]:
        return [p for p in self.parsed_profiles if await p.visible_to(self)]

    def _default_key(self, visible) -> str:
        keys = [p.key for p in visible]
        if self.default_profile in keys:
            return self.default_profile
        marked = [p.key for p in visible if p.default]
        return marked[0] if marked else (keys[0] if keys else "")

    # ------------------------------------------------------------ validation (form and REST)
    async def validate_options(self, options) -> tuple[Profile, dict]:
        """The visible profile and canonical field values for ``options``, or OptionError."""
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise OptionError("user_options", "must be a JSON object")
        visible = await self.visible_profiles()
        if not visible:
            raise OptionError("profile", "no profile is available to you; ask your site's administrators")
        # only a missing key means "the default": "", null, false, 0 are refused like any other unknown profile
        key = options["profile"] if "profile" in options else self._default_key(visible)
        if not isinstance(key, str) or key not in {p.key for p in visible}:
            raise OptionError("profile", "is not a profile available to you")
        profile = self.profile(key)
        values = profile.parse_values(options, await self._images(profile))
        await formfacts.first_answers([self.cluster_info(profile)], self.cluster_wait)
        self._check_cluster_limits(profile, values)
        await formfacts.check(self, profile, values, self._is_slurm(profile))  # GRES, associations
        return profile, values

    async def _images(self, profile) -> dict:
        """The usable images of a container profile (cached; only the first listing waits)."""
        if profile.container is None:
            return {}
        await profile.container.catalog(self.log).ready()
        return profile.container.usable(self.log)

    def _is_slurm(self, profile) -> bool:
        """Whether the cluster facts (batchspawner.polling.cluster: Slurm's sinfo/sacctmgr) apply to this
        profile: its class says so (``cluster_facts = "slurm"``); the wrapper names no scheduler."""
        return bool(self.cluster_limits) and getattr(profile.spawner_class, "cluster_facts", None) == "slurm"

    def cluster_info(self, profile):
        """The ClusterInfo of ``profile``'s own cluster, asked as its spawner asks the scheduler
        (wrapspawner.factsource: the status query's runner and identity); None: no facts for it."""
        return factsource.cluster_info(self, profile) if self._is_slurm(profile) else None

    def _check_cluster_limits(self, profile, values):
        """OptionError when a value is above the chosen partition's maximum (cached facts only)."""
        info = self.cluster_info(profile)
        if info is None:
            return
        info.kick()
        by_trait = {fld.trait: (name, values.get(name)) for name, fld in profile.fields.items()}

        def value(trait):
            if trait in by_trait and by_trait[trait][1] not in (None, ""):
                return by_trait[trait][1]
            return profile.config.get(trait)

        from .options import parse_memory, parse_walltime

        nprocs, memory, runtime = value("req_nprocs"), value("req_memory"), value("req_runtime")
        problem = info.check(
            str(value("req_partition") or ""),
            nprocs=int(nprocs) if str(nprocs or "").isdigit() else None,
            memory_kib=parse_memory(str(memory)) if memory else None,
            runtime_s=parse_walltime(str(runtime)) if runtime else None,
        )
        if problem:
            trait = "req_" + problem[0]
            field_name = by_trait.get(trait, (problem[0],))[0]
            raise OptionError(field_name, problem[1])

    def options_from_form(self, formdata):
        """wrapspawner 1.0's API, synchronous: form -> ``{"profile": key, field: value}``.

        Inputs are named ``key.field``; only the chosen profile's are kept. Uses what is known
        without waiting (profiles visible by user or group, a sync ``visible`` callable, cached
        container images). What JupyterHub calls is :meth:`run_options_from_form`, which also
        does the asynchronous checks (visibility, cluster limits, image catalog) and canonicalises
        the values; a subclass's override of this method is honoured there."""
        visible = [p for p in self.parsed_profiles if self._visible_now(p)]
        images = {p.key: p.container.usable(self.log) for p in visible if p.container is not None}
        return self._map_form(formdata, visible, images)

    async def run_options_from_form(self, formdata):
        """Form -> ``{"profile": key, field: canonical value}``, checked (JupyterHub calls this).

        A refusal names the field by its label (what the user sees), and the next render of the
        form for this user shows what was entered, with that field marked.
        """
        try:
            if type(self).options_from_form is ProfilesSpawner.options_from_form:
                return await self._options_from_form(formdata)
            # a site's own options_from_form (wrapspawner 1.0 style, sync or async): its answer is
            # checked like REST user_options
            options = await maybe_future(Spawner.run_options_from_form(self, formdata))
            if isinstance(options, dict):
                options.pop("_xsrf", None)
            profile, values = await self.validate_options(options)
            return {"profile": profile.key, **values}
        except OptionError as e:
            raise await self._refused_form(formdata, e) from None

    def _visible_now(self, profile) -> bool:
        """``Profile.visible_to`` without waiting: an async ``visible`` callable counts as not visible."""
        if not (profile.groups or profile.users or profile.visible):
            return True
        user = self.user
        if user.name in profile.users or profile.groups & {g.name for g in getattr(user, "groups", [])}:
            return True
        if profile.visible is not None:
            answer = profile.visible(self)
            if inspect.isawaitable(answer):
                if inspect.iscoroutine(answer):
                    answer.close()
                return False
            return bool(answer)
        return False

    async def _options_from_form(self, formdata):
        visible = await self.visible_profiles()
        images = {p.key: await self._images(p) for p in visible if p.container is not None}
        options = self._map_form(formdata, visible, images)
        profile, values = await self.validate_options(options)
        return {"profile": profile.key, **values}

    def _map_form(self, formdata, visible, images) -> dict:
        """The chosen profile's inputs of the form as options (not yet checked)."""
        fields_by_input = {f"{p.key}.{name}": (p.key, name, None) for p in visible for name in p.fields}
        for p in visible:  # a container profile: the image, then each image's arguments
            if p.container is not None:
                fields_by_input[f"{p.key}.{p.container.field}"] = (p.key, p.container.field, None)
                for image_name, image in images.get(p.key, {}).items():
                    for arg in image.args:
                        fields_by_input[f"{p.key}.{image_name}.{arg}"] = (p.key, arg, image_name)
        chosen = formdata["profile"] if "profile" in formdata else [self._default_key(visible)]
        if not isinstance(chosen, list) or len(chosen) != 1:
            raise OptionError("profile", "must be given exactly once")
        options = {"profile": chosen[0]}
        chosen_profile = self.profile(chosen[0])
        image_input = (
            f"{chosen[0]}.{chosen_profile.container.field}"
            if chosen_profile is not None and chosen_profile.container is not None else None
        )
        chosen_image = (formdata.get(image_input) or [None])[0] if image_input else None
        for input_name, value in formdata.items():
            if input_name in ("profile", "_xsrf"):
                continue
            if input_name not in fields_by_input:
                raise OptionError(input_name[:40], "is not a field of a profile available to you")
            key, name, image_name = fields_by_input[input_name]
            if key == chosen[0] and (image_name is None or image_name == chosen_image):
                options[name] = value
        return options

    async def select_child(self):
        profile, values = await self.validate_options(self.user_options)
        self.child_profile = profile.key
        self._remember(profile, values)
        traits = {
            profile.fields[name].trait: value
            for name, value in values.items()
            if value is not None and name in profile.fields
        }
        if profile.container is not None:
            traits["cmd"] = await self._container_cmd(profile, values)
        return profile.spawner_class, profile.config, _typed(profile.spawner_class, traits)

    async def _container_cmd(self, profile, values) -> list:
        """The child's ``cmd``: its server command run inside the chosen image, with its arguments."""
        container = profile.container
        images = await self._images(profile)
        image = images.get(values[container.field])
        if image is None:  # gone or relabelled since the options were checked
            raise OptionError(container.field, "is no longer offered; choose an image again")
        args = {name: values[name] for name in image.args if name in values}
        base = list(profile.config.get("cmd") or profile.spawner_class.class_traits()["cmd"].default())
        gpus = profile.config.get("req_ngpus", "")
        for name, fld in profile.fields.items():
            if fld.trait == "req_ngpus" and values.get(name) is not None:
                gpus = values[name]
        return container.command(image, args, base, wants_gpus(gpus))

    def child_user_options(self):
        return {}  # validated values are on the child's traits instead

    def _remember(self, profile, values):
        """Keep the values this user sent for ``profile`` (checked, canonical) for the next form."""
        memory = remember.store(self.remember_file)
        if memory is None:
            return
        sent = self.user_options if isinstance(self.user_options, dict) else {}
        kept = {name: value for name, value in values.items() if name in sent and value not in (None, "")}
        try:
            memory.remember(self.user.name, profile.key, kept)
        except Exception:  # never fail a start for a preference
            self.log.warning("%s: could not remember the form values", self._log_name, exc_info=True)

    # ------------------------------------------------------------ wrapspawner 1.0 API
    def select_profile(self, profile):
        """wrapspawner 1.0: set ``child_class``/``child_config`` (and ``child_profile``) to the
        profile with this key; an unknown key leaves them as they are, as in 1.0."""
        found = self.profile(profile)
        if found is not None:
            self.child_profile = found.key
            self.child_class = found.spawner_class
            self.child_config = dict(found.config)

    def construct_child(self):
        """wrapspawner 1.0's hook, also when site code calls it directly (no start under way):
        the child is then built from the profile ``user_options`` name (else the default one),
        with its field values checked, as :meth:`select_child` would, without the checks that
        need to wait (a group-less ``visible`` coroutine, cluster limits, image catalog: the
        start does those). A profile this user may not see is refused (OptionError)."""
        if self.child_spawner is None and getattr(self, "_pending_child", None) is None and not self.child_state:
            options = dict(self.user_options) if isinstance(self.user_options, dict) else {}
            visible = [p for p in self.parsed_profiles if self._visible_now(p)]
            key = options.get("profile") or self._default_key(visible)
            profile = self.profile(key) if isinstance(key, str) else None
            if profile is None or profile not in visible:
                raise OptionError("profile", "is not a profile available to you")
            values = {}
            if profile.container is None:
                parsed = profile.parse_values(options)
                values = _typed(profile.spawner_class, {
                    profile.fields[n].trait: v for n, v in parsed.items() if v is not None and n in profile.fields
                })  # fmt: skip
            self.child_profile = profile.key
            return self._construct(profile.spawner_class, profile.config, values)
        return super().construct_child()

    def build_child(self, *args, **kwargs):
        child = super().build_child(*args, **kwargs)
        child._wrapper_profile = self.child_profile  # the usage log and session card name the profile
        return child

    async def stopped_child_spec(self):
        """The profile of a stopped server: from state if kept, else its saved ``user_options``.

        Visibility is not checked (the server exists already; cleaning it up is not
        choosing a profile). Field values that no longer validate are left out.
        """
        options = self.user_options if isinstance(self.user_options, dict) else {}
        key = self.child_profile or options.get("profile")
        if not isinstance(key, str) or not key:
            key = self._default_key(await self.visible_profiles())
        profile = self.profile(key)
        if profile is None:
            if self.fallback_child_class is not None:
                return self.fallback_child_class, self.child_config, {}
            return None
        traits = {}
        for name, fld in profile.fields.items():
            if options.get(name) not in (None, ""):
                try:
                    traits[fld.trait] = fld.parse(options[name])
                except OptionError:
                    continue
        return profile.spawner_class, profile.config, _typed(profile.spawner_class, traits)

    # ------------------------------------------------------------ state
    def get_state(self):
        state = super().get_state()
        if "child_state" in state and self.child_profile:
            state["profile"] = self.child_profile
        return state

    def restored_child(self, state):
        self.child_profile = state.get("profile", "")
        profile = self.profile(self.child_profile)
        saved = state.get("child_class")
        if profile is not None and (not saved or saved == qualname(profile.spawner_class)):
            return profile.spawner_class, profile.config
        if saved:
            self.log.warning("%s: profile %r changed; rebuilding %s from state", self._log_name, self.child_profile, saved)
            return _load_class(saved), profile.config if profile else {}
        raise LookupError(
            f"saved profile {self.child_profile!r} is no longer in ProfilesSpawner.profiles and its state "
            "(written by wrapspawner 1.0.1) names no child class"
        )

    def clear_state(self):
        untracked = self.holds_untracked_job
        super().clear_state()
        if not untracked:
            self.child_profile = ""


def _typed(child_class, traits: dict) -> dict:
    """Canonical strings converted to the type of the child's trait (Integer, Float...)."""
    out = {}
    all_traits = child_class.class_traits()
    for name, value in traits.items():
        kind = type(all_traits[name]).__name__
        if kind in ("Int", "Integer", "CInt"):
            value = int(value)
        elif kind in ("Float", "CFloat"):
            value = float(value)
        out[name] = value
    return out
