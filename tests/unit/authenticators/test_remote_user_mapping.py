"""Tables for the pure SSO helpers: user names, groups, trusted address, secret, env."""

import ipaddress
import re

import pytest

from authenticators.env import auth_state_env, auth_state_env_hook
from authenticators.mapping import MappingError, map_username, parse_groups, posix_name_problem
from authenticators.trust import forwarded_client, parse_networks, secret_matches

EXTRACT = re.compile(r"(?P<username>[a-z0-9]+)@(?:example\.org|ex\.org)")
GROUP1 = re.compile(r"uid=([^,]+),ou=people,dc=example,dc=org")

USERNAME_CASES = [
    # id, raw, kwargs, expected
    ("plain", "alice", {}, "alice"),
    ("trimmed", "  alice \t", {}, "alice"),
    ("lowercased", "Alice", {}, "alice"),
    ("case-kept", "Alice", {"lowercase": False}, "Alice"),
    ("realm-kept-by-default", "alice@example.org", {}, "alice@example.org"),
    ("realm-stripped", "alice@example.org", {"strip_realm": True}, "alice"),
    ("last-at-is-realm", "a@b@example.org", {"strip_realm": True}, "a@b"),
    ("windows-domain", "EXAMPLE\\Alice", {"strip_realm": True}, "alice"),
    ("allowed-realm", "alice@EXAMPLE.org", {"strip_realm": True, "accepted_realms": {"example.org"}}, "alice"),
    ("allowed-realm-kept", "alice@example.org", {"accepted_realms": {"example.org"}}, "alice@example.org"),
    ("regex-named-group", "bob@ex.org", {"extract_regex": EXTRACT}, "bob"),
    ("regex-group-1", "uid=Carol,ou=people,dc=example,dc=org", {"extract_regex": GROUP1}, "carol"),
    ("unicode-nfc", "jose\u0301", {}, "jos\u00e9"),
    ("unicode-lowercased", "JOS\u00c9", {}, "jos\u00e9"),
    ("unicode-case-kept", "JOS\u00c9", {"lowercase": False}, "JOS\u00c9"),
    ("unicode-realm-stripped", "jos\u00e9@\u00e9cole.fr", {"strip_realm": True, "accepted_realms": {"\u00c9COLE.fr"}},
     "jos\u00e9"),
]

USERNAME_REJECTS = [
    ("missing", None, {}, "no user name"),
    ("empty", "   ", {}, "no user name"),
    ("inner-space", "alice smith", {}, "spaces or control"),
    ("newline", "alice\nadmin", {}, "spaces or control"),
    ("nul", "alice\x00", {}, "spaces or control"),
    ("no-break-space", "alice\u00a0smith", {}, "spaces or control"),
    ("zero-width-space", "ali\u200bce", {}, "invisible or control character U+200B"),
    ("byte-order-mark", "\ufeffalice", {}, "invisible or control character U+FEFF"),
    ("soft-hyphen", "ali\u00adce", {}, "invisible or control character U+00AD"),
    ("bidi-override", "\u202eecila", {}, "invisible or control character U+202E"),
    ("private-use", "alice\ue000", {}, "invisible or control character U+E000"),
    ("zero-width-in-realm-part", "alice@exa\u200bmple.org", {"strip_realm": True}, "U+200B"),
    ("slash", "../admin", {}, "cannot be used"),
    ("dots", "..", {}, "cannot be used"),
    ("other-realm", "alice@evil.org", {"strip_realm": True, "accepted_realms": {"example.org"}}, "realm 'evil.org'"),
    ("no-realm-when-required", "alice", {"strip_realm": True, "accepted_realms": {"example.org"}}, "has no realm"),
    ("realm-only", "@example.org", {"strip_realm": True}, "no user name left"),
    ("regex-no-match", "bob@evil.org", {"extract_regex": EXTRACT}, "does not match"),
    ("regex-partial-is-not-enough", "bob@ex.org.evil", {"extract_regex": EXTRACT}, "does not match"),
]


@pytest.mark.parametrize("raw,kwargs,expected", [c[1:] for c in USERNAME_CASES], ids=[c[0] for c in USERNAME_CASES])
def test_map_username(raw, kwargs, expected):
    assert map_username(raw, **kwargs) == expected


@pytest.mark.parametrize("raw,kwargs,message", [c[1:] for c in USERNAME_REJECTS], ids=[c[0] for c in USERNAME_REJECTS])
def test_map_username_rejects(raw, kwargs, message):
    with pytest.raises(MappingError, match=re.escape(message)):
        map_username(raw, **kwargs)


LOOSE = re.compile(r"[a-z_][a-z0-9_.-]*\$?")  # e.g. add_user_cmd with --allow-bad-names
POSIX_CASES = [
    # id, name, pattern (None: Debian adduser's default NAME_REGEX), problem (None: creatable)
    ("ok", "alice", None, None),
    ("ok-digits-dash-underscore", "a_1-b", None, None),
    ("exactly-32-bytes", "a" * 32, None, None),
    ("upper", "Alice", None, "adduser's default rule"),
    ("leading-digit", "1alice", None, "adduser's default rule"),
    ("leading-dash", "-alice", None, "not a valid system account"),
    ("at-sign", "alice@example.org", None, "adduser's default rule"),
    ("dot", "john.smith", None, "adduser's default rule"),
    ("leading-underscore", "_alice", None, "adduser's default rule"),
    ("trailing-dollar-machine-account", "host$", None, "adduser's default rule"),
    ("non-ascii", "jos\u00e9", None, "adduser's default rule"),
    ("too-long", "a" * 33, None, "longer than 32"),
    ("too-long-in-bytes", "\u00e9" * 17, LOOSE, "longer than 32 bytes"),
    ("custom-pattern-allows-dot", "john.smith", LOOSE, None),
    ("custom-pattern-refuses", "John", LOOSE, "it must match"),
    ("custom-pattern-never-colon", "a:b", re.compile(".*"), "not a valid system account"),
    ("custom-pattern-never-all-digits", "1234", re.compile(".*"), "not a valid system account"),
    ("custom-pattern-never-leading-plus", "+alice", re.compile(".*"), "not a valid system account"),
]


@pytest.mark.parametrize("name,pattern,problem", [c[1:] for c in POSIX_CASES], ids=[c[0] for c in POSIX_CASES])
def test_posix_name_problem(name, pattern, problem):
    got = posix_name_problem(name, pattern)
    if problem is None:
        assert got is None
    else:
        assert problem in got


MAP = {"cn=hpc,ou=groups,dc=example,dc=org": "hpc", "staff": "jhub-admins"}
GROUP_CASES = [
    ("none", [], {}, []),
    ("semicolons", ["hpc;physics"], {}, ["hpc", "physics"]),
    ("commas", ["hpc, physics ,"], {"separator": ","}, ["hpc", "physics"]),
    ("repeated-header", ["hpc", "physics;hpc"], {}, ["hpc", "physics"]),
    ("empties-and-space", [" ; ;hpc ; "], {}, ["hpc"]),
    ("space-inside-kept", ["HPC Users"], {}, ["HPC Users"]),
    ("mapped", ["cn=hpc,ou=groups,dc=example,dc=org;other"], {"separator": ";", "group_map": MAP}, ["hpc", "other"]),
    ("mapped-only", ["cn=hpc,ou=groups,dc=example,dc=org;other;staff"],
     {"group_map": MAP, "drop_unmapped": True}, ["hpc", "jhub-admins"]),
    ("map-dedupes", ["staff;jhub-admins"], {"group_map": MAP}, ["jhub-admins"]),
    ("control-chars-dropped", ["ok;bad\x07;fine"], {}, ["ok", "fine"]),
    ("zero-width-dropped", ["hpc;jhub-ad\u200bmins"], {}, ["hpc"]),
    ("non-ascii-kept", ["\u00e9cologie;hpc"], {}, ["\u00e9cologie", "hpc"]),
    ("slash-dropped", ["a/b;c"], {}, ["c"]),
]


@pytest.mark.parametrize("values,kwargs,expected", [c[1:] for c in GROUP_CASES], ids=[c[0] for c in GROUP_CASES])
def test_parse_groups(values, kwargs, expected):
    assert parse_groups(values, **kwargs) == expected


LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])
ADDRESS_CASES = [
    # id, peer, X-Forwarded-For lines, expected address (None: untrusted)
    ("chp-appended-last", "127.0.0.1", ["10.0.0.9"], "10.0.0.9"),
    ("client-prefix-ignored", "127.0.0.1", ["10.6.6.6, 10.0.0.9"], "10.0.0.9"),
    ("several-lines", "127.0.0.1", ["10.6.6.6", "10.0.0.9"], "10.0.0.9"),
    ("no-xff-from-chp", "127.0.0.1", [], None),
    ("garbage-last", "127.0.0.1", ["10.0.0.9, evil"], None),
    ("v4-mapped", "127.0.0.1", ["::ffff:10.0.0.9"], "10.0.0.9"),
    ("with-port", "127.0.0.1", ["10.0.0.9:5555"], "10.0.0.9"),
    ("direct-peer-xff-ignored", "10.7.7.7", ["10.0.0.9"], "10.7.7.7"),
    ("ipv6-peer-loopback", "::1", ["2001:db8::1"], "2001:db8::1"),
    ("no-peer", None, ["10.0.0.9"], None),
]


@pytest.mark.parametrize("peer,xff,expected", [c[1:] for c in ADDRESS_CASES], ids=[c[0] for c in ADDRESS_CASES])
def test_forwarded_client(peer, xff, expected):
    addr, why = forwarded_client(peer, xff, LOOPBACK)
    assert addr == (ipaddress.ip_address(expected) if expected else None), why
    assert why


SECRET_CASES = [
    ("match", "s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret", True),
    ("wrong", "s3cret-s3cret-s3creX", "s3cret-s3cret-s3cret", False),
    ("prefix", "s3cret", "s3cret-s3cret-s3cret", False),
    ("missing", None, "s3cret-s3cret-s3cret", False),
    ("empty-expected-never-matches", "", "", False),
    ("non-ascii-given", "s\u00e9cret", "s3cret-s3cret-s3cret", False),
]


@pytest.mark.parametrize("given,expected,ok", [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES])
def test_secret_matches(given, expected, ok):
    assert secret_matches(given, expected) is ok


ENV_CASES = [
    ("copied", {"headers": {"mail": "a@example.org"}}, {"SSO_EMAIL": "mail"}, {"SSO_EMAIL": "a@example.org"}),
    ("header-case-insensitive", {"headers": {"X-Account": "p123"}}, {"ACCOUNT": "x-account"}, {"ACCOUNT": "p123"}),
    ("absent-skipped", {"headers": {}}, {"SSO_EMAIL": "mail"}, {}),
    ("no-auth-state", None, {"SSO_EMAIL": "mail"}, {}),
    ("control-char-refused", {"headers": {"mail": "a\nexport X=1"}}, {"SSO_EMAIL": "mail"}, {}),
    ("too-long-refused", {"headers": {"mail": "a" * 5000}}, {"SSO_EMAIL": "mail"}, {}),
]


@pytest.mark.parametrize("state,mapping,expected", [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_auth_state_env(state, mapping, expected):
    assert auth_state_env(state, mapping) == expected


def test_auth_state_env_hook_updates_spawner_environment():
    class S:
        environment = {"KEEP": "1"}

    s = S()
    auth_state_env_hook({"SSO_EMAIL": "mail"})(s, {"headers": {"mail": "a@example.org"}})
    assert s.environment == {"KEEP": "1", "SSO_EMAIL": "a@example.org"}
    with pytest.raises(ValueError, match="not a valid environment variable"):
        auth_state_env_hook({"BAD-NAME": "mail"})


def test_long_header_value_is_cut_short_in_messages():
    with pytest.raises(MappingError) as err:
        map_username("x" * 5000 + "@evil.org", strip_realm=True, accepted_realms={"example.org"})
    assert len(str(err.value)) < 200
    with pytest.raises(MappingError) as err:
        map_username("y" * 5000, extract_regex=EXTRACT)
    assert "(5000 chars)" in str(err.value) and len(str(err.value)) < 200
