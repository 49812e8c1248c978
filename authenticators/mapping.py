"""Pure functions that turn SSO header values into hub names and groups.

No tornado, no traitlets: the authenticator passes its settings in, so these are
tested as plain tables (tests/unit/authenticators/test_remote_user_mapping.py).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MappingError", "brief", "invisible_char", "map_username", "parse_groups", "posix_name_problem"]


class MappingError(ValueError):
    """A header value the hub cannot turn into a user; the message is shown to the user."""


# C0/C1 control characters and whitespace never belong in a hub or system user name.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# Debian adduser's default NAME_REGEX (adduser.conf(5); adduser 3.134 has ^[a-z][-a-z0-9_]*\$?$):
# the rule `adduser` (LocalAuthenticator's default add_user_cmd on Linux) applies to a new
# ordinary account unless run with --allow-bad-names. So no '.', no leading '_' (system
# accounts only). Its optional trailing '$' (Samba machine accounts) is left out: a machine
# account is not a hub user, and '$' in a name is a hazard in the batch scripts it ends up in.
DEBIAN_NAME_REGEX = r"[a-z][a-z0-9_-]*"
_POSIX_NAME = re.compile(DEBIAN_NAME_REGEX)
# checks adduser makes even with --allow-bad-names (and useradd's own)
_POSIX_NEVER = re.compile(r"^[-+~]|[:,/\s]")


def brief(value: str, limit: int = 64) -> str:
    """repr() for messages and logs, cut short: header values can be long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"...({len(value)} chars)"


def invisible_char(value: str) -> str | None:
    """The first control, format (e.g. U+200B ZERO WIDTH SPACE), private-use or unassigned
    character in ``value`` as ``U+XXXX``, or None. Such characters make two names look the same."""
    for ch in value:
        if unicodedata.category(ch).startswith("C"):
            return f"U+{ord(ch):04X}"
    return None


def _split_realm(raw: str) -> tuple[str, str | None]:
    """``alice@example.org`` -> (alice, example.org); ``EXAMPLE\\alice`` -> (alice, EXAMPLE)."""
    if "@" in raw:
        name, _, realm = raw.rpartition("@")
        return name, realm
    if "\\" in raw:
        realm, _, name = raw.partition("\\")
        return name, realm
    return raw, None


def map_username(
    raw: str | None,
    *,
    strip_realm: bool = False,
    accepted_realms=(),
    extract_regex: re.Pattern | None = None,
    lowercase: bool = True,
) -> str:
    """Turn the user header's value into the name the hub should use.

    ``raw`` is text (the authenticator has already decoded the header's UTF-8).
    Order: trim, NFC-normalise, reject whitespace, control and other invisible
    characters (Unicode category C: Cc, Cf, Co, Cn), then either ``extract_regex`` (a full
    match; group ``username`` or group 1 is the name) or realm stripping, then
    lower-casing. Raises MappingError with a message for the user.
    """
    if raw is None or not raw.strip():
        raise MappingError("the front proxy sent no user name")
    value = unicodedata.normalize("NFC", raw.strip())
    if _BAD_CHARS.search(value):
        raise MappingError("the user name from the front proxy contains spaces or control characters")
    bad = invisible_char(value)
    if bad:
        raise MappingError(
            f"the user name from the front proxy contains the invisible or control character {bad}"
        )
    if extract_regex is not None:
        match = extract_regex.fullmatch(value)
        if not match:
            raise MappingError(f"the user name {brief(value)} does not match this hub's username pattern")
        name = match.groupdict().get("username") if "username" in extract_regex.groupindex else match.group(1)
        if not name:
            raise MappingError(f"the username pattern matched {brief(value)} but captured no name")
    else:
        name, realm = _split_realm(value) if (strip_realm or accepted_realms) else (value, None)
        if accepted_realms:
            wanted = {r.lower() for r in accepted_realms}
            if realm is None or realm.lower() not in wanted:
                raise MappingError(
                    f"accounts from realm {brief(realm)} cannot use this hub" if realm else
                    f"the user name {brief(value)} has no realm; this hub expects one of {sorted(wanted)}"
                )
        if not strip_realm and realm is not None:
            name = value
        if not name:
            raise MappingError(f"no user name left in {brief(value)} after removing the realm")
    if lowercase:
        name = name.lower()
    if "/" in name or set(name) <= {"."}:
        raise MappingError(f"{brief(name)} cannot be used as a hub user name")
    return name


def posix_name_problem(name: str, pattern: re.Pattern | None = None) -> str | None:
    """Why ``name`` cannot be created as a system account (for the Local authenticator), or None.

    ``pattern`` must match the whole name; default: Debian adduser's default NAME_REGEX
    (``DEBIAN_NAME_REGEX``). The 32-byte limit, all-digit names and the characters no
    tool accepts (leading ``-+~``; ``:``, ``,``, ``/``, whitespace) are refused whatever the pattern.
    """
    if len(name.encode("utf-8")) > 32:
        return f"{brief(name)} is longer than 32 bytes, too long for a system account"
    if name.isdigit() or _POSIX_NEVER.search(name):
        return f"{brief(name)} is not a valid system account name"
    if pattern is None:
        if not _POSIX_NAME.fullmatch(name):
            return (f"{brief(name)} is not a valid system account name (adduser's default rule: "
                    "lower-case letters, digits, '_' and '-', starting with a letter)")
    elif not pattern.fullmatch(name):
        return f"{brief(name)} is not a valid system account name on this hub (it must match {pattern.pattern!r})"
    return None


def parse_groups(
    raw_values,
    *,
    separator: str = ";",
    group_map: dict | None = None,
    drop_unmapped: bool = False,
) -> list[str]:
    """Split group header values into hub group names.

    ``raw_values`` is a list (a header may arrive more than once). Each value is
    split on ``separator``, items trimmed, empties dropped. ``group_map`` renames
    an external group (``cn=hpc,ou=groups,dc=example,dc=org`` -> ``hpc``); with
    ``drop_unmapped`` only mapped groups are kept. Order is kept, duplicates dropped,
    and items with control or other invisible characters (as in ``invisible_char``) or '/'
    are ignored. Size limits are the caller's (the authenticator refuses, naming its setting).
    """
    group_map = group_map or {}
    groups: list[str] = []
    for raw in raw_values or ():
        for item in raw.split(separator) if separator else [raw]:
            item = item.strip()
            if not item or invisible_char(item):
                continue
            if item in group_map:
                item = group_map[item]
            elif drop_unmapped:
                continue
            if not item or "/" in item or item in groups:
                continue
            groups.append(item)
    return groups
