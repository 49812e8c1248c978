"""Checks on options that users send (form fields, ``user_options`` via the REST API).

BatchSpawnerBase on its own accepts a user option only when it names a
request template variable (``req_<name>``) or a key the site declared (its own
form produced it, or ``allowed_user_options`` lists it), is not on the protected list
(commands, prologue, raw scheduler options...), is in ``allowed_user_options``
when the admin set that list, and its value is a plain scalar made of safe
characters. Without a list (the batchspawner 1.3 behaviour) any user may pick
e.g. the partition, QOS or cluster through the REST API. Richer typed fields
(choices, ranges, memory, walltime) are the ProfilesSpawner's job; they arrive
here already validated.
"""

from __future__ import annotations

import re

from tornado import web

# Template variables a user may never set: they are commands, whole script
# sections or identity, not resource requests.
PROTECTED = frozenset(
    {
        "cmd",
        "prologue",
        "epilogue",
        "options",
        "srun",
        "keepvars",
        "keepvars_extra",
        "username",
        "homedir",
        "log_path",
        "job_id",
    }
)

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:,@%+=/-]*$")


class OptionError(web.HTTPError):
    """A user option was refused: HTTP 400 naming the field and the rule."""

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        message = f"Invalid option {field!r}: {rule}"
        super().__init__(400, message, reason="Invalid option")
        # shown on the hub's spawn page
        self.jupyterhub_message = message

    def __str__(self):
        return self.log_message


def check_scalar(field: str, value, pattern: re.Pattern = SAFE_VALUE) -> str:
    """Return ``value`` as a string if it is a safe scalar, else raise OptionError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise OptionError(field, f"must be a string or a number, not {type(value).__name__}")
    text = str(value)
    if len(text) > 256:
        raise OptionError(field, "is longer than 256 characters")
    if text and not pattern.fullmatch(text):  # fullmatch: "$" alone would accept a final newline
        raise OptionError(
            field,
            "may contain only letters, digits and _ . : , @ % + = / - "
            "(no spaces, quotes, newlines or shell characters, and no leading '-')",
        )
    return text


def admin_only_vars(spawner_or_class) -> frozenset[str]:
    """Request variables (``req_<name>`` without ``req_``) that only administrators may set.

    The one place that reads the marker: a request trait tagged ``admin_only=True``
    (``_req(..., admin_only=True)`` in the scheduler modules) names an account,
    project, QoS, reservation, cluster, batch server or resource (e.g. Grid Engine's
    ``memory_resource``), so a user who set it could charge someone else, bypass a
    policy or turn one limit into another. user_options, ``allowed_user_options`` and
    ProfilesSpawner fields all ask here.
    """
    cls = spawner_or_class if isinstance(spawner_or_class, type) else type(spawner_or_class)
    if not hasattr(cls, "class_traits"):
        return frozenset()
    return frozenset(
        name[4:] for name, trait in cls.class_traits().items() if name.startswith("req_") and trait.metadata.get("admin_only")
    )


def forget_user_options(spawner, error=None) -> None:
    """Drop refused ``user_options`` from the spawner and its database row.

    JupyterHub saves the options of every start request and reuses them when a later
    start names none (home page Start, REST with ``{}``): a refused option would refuse
    every later start too. Called whenever options are refused (HTTP 400).

    The refusal is kept on the request itself (``spawner.handler``): JupyterHub's spawn
    page retries a refused ``/hub/spawn?...`` at once with the saved options, in the same
    request; :func:`refused_in_this_request` makes that retry answer the same 400
    instead of silently starting without what the user asked for.
    """
    handler = getattr(spawner, "handler", None)
    if handler is not None and error is not None:
        handler.jhpc_refused_options = error
    spawner.user_options = {}
    orm = getattr(spawner, "orm_spawner", None)
    if orm is None or not getattr(orm, "user_options", None):
        return
    orm.user_options = {}
    try:
        from sqlalchemy import inspect

        session = inspect(orm).session
    except Exception:  # not a mapped object (unit tests' stand-ins)
        return
    if session is not None:
        session.commit()


def refused_in_this_request(spawner):
    """The error that refused this request's options before (see :func:`forget_user_options`), or None."""
    return getattr(getattr(spawner, "handler", None), "jhpc_refused_options", None)


def record_form_options(spawner, options):
    """Remember which ``user_options`` keys the site's own form produced; return ``options``.

    Called with what ``run_options_from_form`` returned. Only the site's own ``options_from_form``
    (a subclass override or a callable in the config) declares keys: JupyterHub's default
    ('passthrough') keeps every posted field, whose names the user picks. Those keys are the site's
    contract, as batchspawner 1.3 merged every key into the script's variables: they are
    accepted at the next start even when they name no ``req_*`` trait (values are still
    checked one by one). Keys sent only through the REST API are not recorded, so an
    undeclared REST key stays refused. JupyterHub's form token (``_xsrf``) is never a key.
    Kept in memory with the spawner: after a hub restart a start that reuses saved options
    needs the keys in ``allowed_user_options`` (or the form again)."""
    if isinstance(options, dict):
        options.pop("_xsrf", None)
        if _site_options_from_form(spawner):
            spawner.__dict__["_jhpc_form_keys"] = frozenset(k for k in options if isinstance(k, str))
        else:
            spawner.__dict__.pop("_jhpc_form_keys", None)
    return options


def _site_options_from_form(spawner) -> bool:
    """True unless ``options_from_form`` is JupyterHub's own ('passthrough', 'simple'): those keep
    every posted field name, which the user chooses, so they declare nothing."""
    from jupyterhub.spawner import Spawner

    builtin = {getattr(Spawner, n, None) for n in ("_passthrough_options_from_form", "_simple_options_from_form")}
    return getattr(spawner, "options_from_form", None) not in builtin


def form_keys(spawner) -> frozenset:
    """The keys the site's form produced for this spawner (see :func:`record_form_options`)."""
    return spawner.__dict__.get("_jhpc_form_keys", frozenset())


def validate_user_options(
    user_options: dict, request_vars: set[str], allowed=None, admin_only=frozenset(), site_keys=frozenset()
) -> dict[str, str]:
    """Validate raw ``user_options`` against the declared request variables.

    ``allowed``: the keys the admin lets users set (``allowed_user_options``);
    any other key is refused. ``None`` keeps the old rule (every declared request
    variable not protected) for callers that do not pass an allowlist yet; use
    :func:`validate_spawner_user_options`, which reads the spawner's allowlist.
    A key in ``allowed`` need not name a request variable: the admin declared it (a
    site's own template variable, as in 1.3). ``site_keys``: keys the site's own form
    produced (:func:`record_form_options`), accepted likewise. Protected and admin-only
    names are refused whoever sends them; every value is checked (:func:`check_scalar`;
    a form's one-element list is its value).

    Returns the template values to use. Raises :class:`OptionError` (HTTP 400)
    on the first bad field, before anything is submitted.
    """
    if user_options is None:
        return {}
    if not isinstance(user_options, dict):
        raise OptionError("user_options", "must be a JSON object")
    allowed = None if allowed is None else set(allowed)
    values = {}
    for key, value in user_options.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise OptionError(str(key)[:40], "is not a valid option name")
        if key in PROTECTED:
            raise OptionError(key, "cannot be set by users")
        if key in admin_only:
            raise OptionError(key, "is set by the site's administrators, not by users")
        declared = key in site_keys or (allowed is not None and key in allowed)
        if allowed is not None and key not in allowed and key not in site_keys:
            offered = ", ".join(sorted(allowed - PROTECTED)) or "none"
            raise OptionError(
                key, f"is not an option this server accepts (options users may set: {offered}; allowed_user_options)"
            )
        if key not in request_vars and not declared:
            raise OptionError(key, "is not an option this server accepts")
        if key in site_keys and isinstance(value, list) and len(value) == 1:
            value = value[0]  # a form field as JupyterHub's default options_from_form passes it
        values[key] = check_scalar(key, value)
    return values


def validate_spawner_user_options(spawner) -> dict[str, str]:
    """:func:`validate_user_options` for a batch spawner, with its ``allowed_user_options``.

    ``None`` (the default) keeps batchspawner 1.3's rule: every declared request
    variable that is not protected.
    """
    allowed = getattr(spawner, "allowed_user_options", None)
    return validate_user_options(
        spawner.user_options, spawner.request_vars(), allowed, admin_only_vars(spawner), form_keys(spawner)
    )
