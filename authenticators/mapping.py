"""Pure functions that turn SSO header values into hub names and groups.

No tornado, no traitlets: the authenticator passes its settings in, so these are
tested as plain tables (tests/unit/test_remote_user_mapping.py).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MappingError", "brief", "map_username", "parse_groups", "posix_name_problem"]


class MappingError(ValueError):
    """A header value the hub cannot turn into a user; the message is shown to the user."""


# C0/C1 control characters and whitespace never belong in a hub or system user name.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# what useradd/adduser accept on Debian (NAME_REGEX default, without the upper-case extension)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_POSIX_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$")


def brief(value: str, limit: int = 64) -> str:
    """repr() for messages and logs, cut short: header values can be long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"...({len(value)} chars)"


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

    Order: trim, reject control characters, then either ``extract_regex`` (a full
    match; group ``username`` or group 1 is the name) or realm stripping, then
    lower-casing. Raises MappingError with a message for the user.
    """
    if raw is None or not raw.strip():
        raise MappingError("the front proxy sent no user name")
    value = unicodedata.normalize("NFC", raw.strip())
    if _BAD_CHARS.search(value):
        raise MappingError("the user name from the front proxy contains spaces or control characters")
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


def posix_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a system account (for the Local authenticator), or None."""
    if len(name) > 32:
        return f"{brief(name)} is longer than 32 characters, too long for a system account"
    if not _POSIX_NAME.match(name):
        return (f"{brief(name)} is not a valid system account name "
                "(lower-case letters, digits, '_', '-', '.'; starting with a letter or '_')")
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
    and items with control characters or '/' are ignored.
    """
    group_map = group_map or {}
    groups: list[str] = []
    for raw in raw_values or ():
        for item in raw.split(separator) if separator else [raw]:
            item = item.strip()
            if not item or _CONTROL.search(item):
                continue
            if item in group_map:
                item = group_map[item]
            elif drop_unmapped:
                continue
            if not item or "/" in item or item in groups:
                continue
            groups.append(item)
    return groups
