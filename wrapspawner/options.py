"""Typed option fields for ProfilesSpawner: what a user may type, and what reaches the child.

An admin declares fields per profile (see ``ProfilesSpawner.profiles``)::

    "fields": {
        "partition": {"type": "choice", "choices": {"debug": "Debug (1 h)", "long": "Long"}},
        "nprocs":    {"type": "int", "min": 1, "max": 8, "default": 1, "label": "CPU cores"},
        "memory":    {"type": "memory", "min": "1G", "max": "16G", "default": "2G"},
        "runtime":   {"type": "walltime", "max": "1-00:00:00", "default": "01:00:00"},
        "job_name":  {"type": "text", "regex": r"[a-z][a-z0-9-]{0,30}",
                      "rule": "a lower-case letter, then up to 30 letters, digits or '-'", "help": "Name shown in the queue"},
    }

Each field sets one trait of the child spawner: ``req_<name>`` unless the field
names another with ``"trait"``. Only an allowlist can be targets (checked at
startup): ``req_*`` request traits other than the protected template variables
(commands, prologue/epilogue, raw options, identity) and the admin-only ones (accounts,
projects, QoS, reservations, clusters, resource names: see
:func:`batchspawner.core.options.admin_only_vars`), and the resource and
timeout traits in :data:`USER_SETTABLE_TRAITS`. Never ``cmd``, ``ssh_*``,
``exec_prefix``, ``hub_connect_url``, paths, environment or hooks. :meth:`Field.parse` turns whatever a user sent
(form text or a JSON value from the REST API) into exactly one canonical,
shell-safe string, or raises :class:`batchspawner.core.options.OptionError` (HTTP
400) naming the field and the rule. Admin mistakes in a field's spec raise
``ValueError`` at configuration time.
"""

from __future__ import annotations

import re

from batchspawner.core.options import PROTECTED, SAFE_VALUE, OptionError, admin_only_vars

NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
# whitespace, quotes and everything a shell (or a #SBATCH line) treats specially
UNSAFE_TEXT_RE = re.compile(r"[\s;&|`$<>\\\"'(){}\[\]*?!~#^]")
MAX_LEN = 256
# The words a user sees for the usual fields when the admin gives no "label": the same in every
# profile and form ("Wall time", never "Runtime" in one form and "Wall time" in another).
DEFAULT_LABELS = {
    "runtime": "Wall time", "walltime": "Wall time", "nprocs": "CPU cores", "memory": "Memory",
    "partition": "Partition", "ngpus": "GPUs", "account": "Account", "qos": "QOS",
}

# Besides req_* request traits, the only traits a field may set: resource sizes and how long
# the hub waits for the start. None of them runs anything, names a command, file, host,
# account or identity, or changes where the hub or the job connects.
USER_SETTABLE_TRAITS = frozenset({"mem_limit", "mem_guarantee", "cpu_limit", "cpu_guarantee", "start_timeout"})


def field_may_set(trait: str) -> bool:
    """The allowlist: ``req_<var>`` for a template variable not in PROTECTED, or USER_SETTABLE_TRAITS."""
    if trait in USER_SETTABLE_TRAITS:
        return True
    return trait.startswith("req_") and NAME_RE.fullmatch(trait[4:]) is not None and trait[4:] not in PROTECTED


def check_target_trait(field: str, trait: str, child_class, assoc_checked: bool = False) -> None:
    """Refuse (ValueError) a field whose trait is not on the allowlist, unknown, or not one value.

    ``assoc_checked``: an ``account``/``qos`` field (wrapspawner.formfacts), whose values are only the
    user's own Slurm associations, may set its one admin-only trait."""
    if not field_may_set(trait):
        raise ValueError(
            f"field {field!r} may not set {child_class.__name__}.{trait}: fields may set only req_* request "
            f"traits (except {', '.join('req_' + n for n in sorted(PROTECTED))}) and "
            f"{', '.join(sorted(USER_SETTABLE_TRAITS))}"
        )
    if trait.startswith("req_") and trait[4:] in admin_only_vars(child_class) and not assoc_checked:
        raise ValueError(
            f"field {field!r} may not set {child_class.__name__}.{trait}: it is admin only (it names an "
            "account, project, policy or resource); set it in the profile's config, one profile per value"
        )
    traits = child_class.class_traits(config=True)
    if trait not in traits:
        raise ValueError(f"field {field!r} sets {trait!r}, which is not a configurable trait of {child_class.__name__}")
    kind = type(traits[trait]).__name__
    if kind not in ("Unicode", "CUnicode", "Int", "Integer", "CInt", "Float", "CFloat", "ByteSpecification"):
        raise ValueError(f"field {field!r}: {child_class.__name__}.{trait} is a {kind}, not a single value")


def _one(field: str, value):
    """The single scalar a user sent for ``field`` (form lists hold one element)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise OptionError(field, "must be given exactly once")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise OptionError(field, f"must be a string or a whole number, not {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_LEN:
        raise OptionError(field, f"is longer than {MAX_LEN} characters")
    if CONTROL_RE.search(text):
        raise OptionError(field, "must not contain newlines or control characters")
    return text


class Field:
    """One typed option. Subclasses implement :meth:`_parse` and :attr:`rule`."""

    kind = ""
    rule = ""
    input_type = "text"

    def __init__(self, name: str, spec: dict):
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name == "profile":
            raise ValueError(f"field name {name!r} must be a lower-case identifier other than 'profile'")
        self.name = name
        self.label = str(spec.get("label") or DEFAULT_LABELS.get(name) or name.replace("_", " ").capitalize())
        self.help = str(spec.get("help", ""))
        self.trait = str(spec.get("trait") or f"req_{name}")
        known = {"type", "label", "help", "trait", "default", "min", "max", "choices", "regex", "unit", "max_length",
                 "rule"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"field {name!r}: unknown keys {sorted(unknown)}")
        self.default = None
        if spec.get("default") not in (None, ""):
            try:
                self.default = self.parse(spec["default"])
            except OptionError as e:
                raise ValueError(f"field {name!r}: default {spec['default']!r} {e.rule}") from None

    def parse(self, value) -> str:
        """Canonical value for ``value`` or OptionError naming this field and the rule."""
        return self._parse(_one(self.name, value))

    def _parse(self, text: str) -> str:
        raise NotImplementedError

    def fail(self, rule=None):
        raise OptionError(self.name, rule or self.rule)

    def attrs(self) -> dict:
        """HTML input attributes: hints that never block submitting the form.

        No ``pattern``, ``min``/``max``, ``required`` or ``type="number"``: the form shows the
        fields of every profile at once and the browser would check them all, so a value
        in a profile the user did not choose could block submitting the chosen one (without
        JavaScript nothing can disable those inputs). A Python regex is also not a browser
        (JavaScript ``v``-flag) regex. The server checks every value of the chosen profile,
        with or without JavaScript, and names the field and the rule (shown under each input).
        """
        return {}


class ChoiceField(Field):
    kind = "choice"

    def __init__(self, name, spec):
        choices = spec.get("choices")
        if isinstance(choices, (list, tuple)):
            choices = {str(c): str(c) for c in choices}
        if not isinstance(choices, dict) or not choices:
            raise ValueError(f"field {name!r}: a choice field needs 'choices' (a list or a dict value -> label)")
        self.choices = {str(k): str(v) for k, v in choices.items()}
        for key in self.choices:
            if not SAFE_VALUE.fullmatch(key):
                raise ValueError(f"field {name!r}: choice {key!r} is not a plain value (letters, digits, _.:,@%+=/-)")
        self.rule = "must be one of: " + ", ".join(self.choices)
        super().__init__(name, spec)

    def _parse(self, text):
        if text not in self.choices:
            self.fail()
        return text


class IntField(Field):
    kind = "int"

    def __init__(self, name, spec):
        self.min = int(spec["min"]) if spec.get("min") is not None else 0
        self.max = int(spec["max"]) if spec.get("max") is not None else None
        self.rule = f"must be a whole number from {self.min}" + (f" to {self.max}" if self.max is not None else " up")
        super().__init__(name, spec)

    def _parse(self, text):
        if not re.fullmatch(r"[0-9]{1,9}", text):
            self.fail()
        number = int(text)
        if number < self.min or (self.max is not None and number > self.max):
            self.fail()
        return str(number)

    def attrs(self):
        return {"inputmode": "numeric"}  # a numeric keypad on phones; no browser check (see Field.attrs)


_UNITS = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}  # in KiB


def parse_memory(text: str, unit: str = "G") -> int | None:
    """KiB in ``4G``, ``512M``, ``2GB``, ``8GiB`` or a bare number in ``unit``; None if malformed."""
    match = re.fullmatch(r"([0-9]{1,9})([KMGTkmgt])?(?:i?[Bb])?", text)
    if not match:
        return None
    return int(match.group(1)) * _UNITS[(match.group(2) or unit).upper()]


def format_memory(kib: int) -> str:
    for suffix in ("T", "G", "M"):
        if kib % _UNITS[suffix] == 0:
            return f"{kib // _UNITS[suffix]}{suffix}"
    return f"{kib}K"


class MemoryField(Field):
    kind = "memory"

    def __init__(self, name, spec):
        self.unit = str(spec.get("unit", "G")).upper()
        if self.unit not in _UNITS:
            raise ValueError(f"field {name!r}: unit must be one of K, M, G, T")
        self.min = self._bound(name, spec.get("min", "1M"))
        self.max = self._bound(name, spec.get("max")) if spec.get("max") is not None else None
        self.rule = (
            f"must be a whole amount of memory with an optional unit K, M, G or T (default {self.unit}), "
            f"from {format_memory(self.min)}" + (f" to {format_memory(self.max)}" if self.max else "")
        )
        super().__init__(name, spec)

    def _bound(self, name, value):
        kib = parse_memory(str(value), self.unit)
        if kib is None:
            raise ValueError(f"field {name!r}: bound {value!r} is not an amount of memory")
        return kib

    def _parse(self, text):
        kib = parse_memory(text, self.unit)
        if kib is None or kib < self.min or (self.max is not None and kib > self.max):
            self.fail()
        return format_memory(kib)



def parse_walltime(text: str) -> int | None:
    """Seconds in ``HH:MM:SS`` or ``D-HH:MM:SS``; None if malformed."""
    match = re.fullmatch(r"(?:([0-9]{1,3})-)?([0-9]{1,3}):([0-5][0-9]):([0-5][0-9])", text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if match.group(1) and hours > 23:
        return None
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_walltime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hms = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hms}" if days else hms


class WalltimeField(Field):
    kind = "walltime"

    def __init__(self, name, spec):
        self.min = self._bound(name, spec.get("min", "00:01:00"))
        self.max = self._bound(name, spec.get("max")) if spec.get("max") is not None else None
        self.rule = f"must be a time HH:MM:SS or D-HH:MM:SS from {format_walltime(self.min)}" + (
            f" to {format_walltime(self.max)}" if self.max else ""
        )
        super().__init__(name, spec)

    def _bound(self, name, value):
        seconds = parse_walltime(str(value))
        if seconds is None:
            raise ValueError(f"field {name!r}: bound {value!r} is not HH:MM:SS or D-HH:MM:SS")
        return seconds

    def _parse(self, text):
        seconds = parse_walltime(text)
        if seconds is None or seconds < self.min or (self.max is not None and seconds > self.max):
            self.fail()
        return format_walltime(seconds)



class TextField(Field):
    """Free text, only with an admin regex; never spaces, quotes or shell characters.

    A value must match the admin regex *and* the project's plain-value charset
    (``batchspawner.core.options.SAFE_VALUE``: ASCII letters, digits, ``_.:,@%+=/-``, not
    starting with ``-``). The regex is compiled with ``re.ASCII``, so ``\\w``/``\\d`` mean
    ASCII only; the charset check holds even if the regex is too loose (``.*``), so no
    Unicode digit and no leading ``-`` (which a command line would read as an option)
    reaches the script.
    """

    kind = "text"

    def __init__(self, name, spec):
        regex = spec.get("regex")
        if not regex:
            raise ValueError(f"field {name!r}: a text field needs an admin 'regex' saying what is allowed")
        try:
            self.regex = re.compile(regex, re.ASCII)
        except (re.error, ValueError) as e:  # ValueError: e.g. (?u), which contradicts re.ASCII
            raise ValueError(f"field {name!r}: regex {regex!r} does not compile (with re.ASCII): {e}") from None
        self.max_length = int(spec.get("max_length", 64))
        words = str(spec.get("rule") or "").strip()
        if words:  # the admin's words for the regex, e.g. "a project code like proj042"
            self.rule = f"must be {words}, at most {self.max_length} characters, without spaces"
        else:
            self.rule = (
                f"must match {regex!r}, be at most {self.max_length} characters, and contain no spaces, "
                "quotes, shell characters or leading '-' (ASCII letters, digits and _ . : , @ % + = / - only)"
            )
        super().__init__(name, spec)

    def _parse(self, text):
        if (
            not text
            or len(text) > self.max_length
            or UNSAFE_TEXT_RE.search(text)
            or not SAFE_VALUE.fullmatch(text)
            or not self.regex.fullmatch(text)
        ):
            self.fail()
        return text

    def attrs(self):
        return {"maxlength": self.max_length}  # limits typing; never blocks a submission


FIELD_TYPES = {
    "choice": ChoiceField,
    "int": IntField,
    "integer": IntField,
    "memory": MemoryField,
    "walltime": WalltimeField,
    "text": TextField,
}


def make_field(name: str, spec: dict) -> Field:
    if not isinstance(spec, dict):
        raise ValueError(f"field {name!r} must be a dict with a 'type'")
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        raise ValueError(f"field {name!r}: type must be one of {sorted(FIELD_TYPES)}, not {kind!r}")
    return FIELD_TYPES[kind](name, spec)
