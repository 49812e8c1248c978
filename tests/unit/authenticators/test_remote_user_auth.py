"""RemoteUserAuthenticator through the hub's own get_authenticated_user (its checks run too)."""

import asyncio
import ipaddress
import logging
import re
from types import SimpleNamespace

import pytest
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.log import log_request
from tornado import web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from traitlets import TraitError

from authenticators import RemoteUserAuthenticator, RemoteUserLocalAuthenticator
from authenticators.login import RemoteUserLoginHandler
from authenticators.logout import RemoteUserLogoutHandler

SECRET = "0123456789abcdef-test-secret"
LOGIN = RequestStartLine("GET", "/hub/login", "HTTP/1.1")


def wire_headers(headers):
    """HTTPHeaders as tornado builds them from the bytes on the wire.

    A str value is sent as UTF-8 (as Apache passes an SSO attribute), bytes as they are;
    tornado then decodes the header block as latin-1 (http1connection), so "é" arrives as "Ã©".
    """
    block = b"".join(k.encode("ascii") + b": " + (v if isinstance(v, bytes) else v.encode("utf-8")) + b"\r\n"
                     for k, v in headers)
    return HTTPHeaders.parse(block.decode("latin-1"))


def handler(headers=(), peer="127.0.0.1", xff="192.0.2.10", remote_ip=None):
    """remote_ip: what tornado (xheaders=True) would derive from client-sent X-Real-Ip/X-Forwarded-For."""
    h = wire_headers([("Host", "hub.example.org"), *headers, *([("X-Forwarded-For", xff)] if xff is not None else [])])
    conn = SimpleNamespace(context=SimpleNamespace(address=(peer, 40000), remote_ip=remote_ip or peer))
    return SimpleNamespace(request=HTTPServerRequest(
        start_line=LOGIN, headers=h, connection=conn
    ))


def test_wire_headers_present_utf8_as_tornado_does():
    # the premise of the UTF-8 re-decoding: tornado's own parser, latin-1
    assert wire_headers([("REMOTE_USER", "jos\u00e9")])["REMOTE_USER"] == "jos\u00c3\u00a9"


def auth(cls=RemoteUserAuthenticator, **kw):
    kw.setdefault("proxy_secret", SECRET)
    kw.setdefault("allow_all", True)
    return cls(**kw)


def ok_headers(user="alice", *extra):
    return [("REMOTE_USER", user), ("X-Proxy-Secret", SECRET), *extra]


async def test_good_login_returns_model():
    a = auth(groups_header="X-Groups", manage_groups=True, admin_groups={"jhub-admins"},
             auth_state_headers=["mail"])
    h = handler(ok_headers("Alice", ("X-Groups", "hpc;jhub-admins"), ("mail", "alice@example.org")))
    model = await a.get_authenticated_user(h, None)
    assert model["name"] == "alice"
    assert model["admin"] is True
    assert model["groups"] == ["hpc", "jhub-admins"]
    assert model["auth_state"]["headers"] == {"mail": "alice@example.org"}
    assert model["auth_state"]["remote_user"] == "Alice"


async def test_secret_header_removed_from_request_once_read():
    h = handler(ok_headers())
    await auth().get_authenticated_user(h, None)
    assert "X-Proxy-Secret" not in h.request.headers
    assert h.request.headers["REMOTE_USER"] == "alice"


async def test_groups_only_sent_with_manage_groups_and_admin_follows_sso():
    a = auth(groups_header="X-Groups", admin_groups={"jhub-admins"})
    model = await a.get_authenticated_user(handler(ok_headers("bob", ("X-Groups", "hpc"))), None)
    assert "groups" not in model
    assert model["admin"] is False  # admin_groups set, not a member: admin is revoked
    a2 = auth(admin_users={"bob"}, admin_groups={"jhub-admins"})
    assert (await a2.get_authenticated_user(handler(ok_headers("bob")), None))["admin"] is True
    a3 = auth()
    assert (await a3.get_authenticated_user(handler(ok_headers("bob")), None))["admin"] is None


@pytest.mark.parametrize(
    "kw,user,allowed",
    [
        ({"allow_all": False, "allowed_users": {"alice"}}, "alice", True),
        ({"allow_all": False, "allowed_users": {"alice"}}, "bob", False),
        ({"blocked_users": {"bob"}}, "bob", False),
        ({"username_pattern": r"^[a-z]+$"}, "alice", True),
        ({"username_map": {"alice": "al"}, "allow_all": False, "allowed_users": {"al"}}, "Alice", True),
        ({"allow_all": False, "allowed_remote_groups": {"hpc"}}, "carol", True),
        ({"allow_all": False, "allowed_remote_groups": {"physics"}}, "carol", False),
        ({"allow_all": False, "allowed_remote_groups": {"hpc"}, "blocked_users": {"carol"}}, "carol", False),
    ],
    ids=["allowed", "not-allowed", "blocked", "pattern-ok", "username_map-then-allowed",
         "remote-group-allowed", "remote-group-not-allowed", "blocked-beats-remote-group"],
)
async def test_hub_checks_still_run(kw, user, allowed):
    a = auth(groups_header="X-Groups", **kw)
    model = await a.get_authenticated_user(handler(ok_headers(user, ("X-Groups", "hpc"))), None)
    assert (model is not None) is allowed


async def test_post_auth_hook_runs():
    def hook(authenticator, handler, model):
        model["auth_state"]["hooked"] = True
        return model

    a = auth(post_auth_hook=hook)
    model = await a.get_authenticated_user(handler(ok_headers()), None)
    assert model["auth_state"]["hooked"] is True


REFUSED = [
    # id, authenticator kwargs, handler kwargs, part of the 403 message
    ("no-secret", {}, {"headers": [("REMOTE_USER", "alice")]}, "single sign-on front end"),
    ("wrong-secret", {}, {"headers": [("REMOTE_USER", "alice"), ("X-Proxy-Secret", SECRET + "x")]}, "single sign-on"),
    ("untrusted-address", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"], "unsafe_trust_local_users": True},
     {"headers": [("REMOTE_USER", "alice")], "xff": "198.51.100.7"}, "single sign-on"),
    ("client-xff-prefix", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"], "unsafe_trust_local_users": True},
     {"headers": [("REMOTE_USER", "alice")], "xff": "192.0.2.10, 198.51.100.7"}, "single sign-on"),
    ("direct-to-hub-forged-xff", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"], "unsafe_trust_local_users": True},
     {"headers": [("REMOTE_USER", "alice")], "peer": "198.51.100.7", "xff": "192.0.2.10"}, "single sign-on"),
    ("secret-ok-address-bad", {"trusted_proxy_networks": ["192.0.2.10/32"]},
     {"headers": ok_headers(), "xff": "198.51.100.7"}, "single sign-on"),
    ("no-user-header", {}, {"headers": [("X-Proxy-Secret", SECRET)]}, "sent no REMOTE_USER header"),
    ("user-header-twice", {}, {"headers": ok_headers("alice", ("REMOTE_USER", "bob"))}, "more than once"),
    ("secret-twice", {}, {"headers": ok_headers("alice", ("X-Proxy-Secret", SECRET))}, "single sign-on"),
    ("empty-user-value", {}, {"headers": ok_headers("")}, "sent no user name"),
    ("blank-user-value", {}, {"headers": ok_headers("   ")}, "sent no user name"),
    ("upper-and-lower-spelling-is-twice", {}, {"headers": ok_headers("alice", ("remote_user", "bob"))},
     "more than once"),
    ("mixed-case-spelling-is-twice", {}, {"headers": ok_headers("alice", ("Remote_User", "alice"))}, "more than once"),
    ("bad-name", {}, {"headers": ok_headers("alice smith")}, "spaces or control"),
    ("foreign-realm", {"strip_realm": True, "accepted_realms": {"example.org"}},
     {"headers": ok_headers("alice@evil.org")}, "realm 'evil.org'"),
    ("hub-pattern", {"username_pattern": r"^[a-z]+$"}, {"headers": ok_headers("alice1")}, "username_pattern"),
    # UTF-8 (item: header values re-decoded) and invisible characters
    ("user-not-utf8", {}, {"headers": ok_headers(b"jos\xe9")}, "REMOTE_USER header that is not valid UTF-8"),
    ("user-truncated-utf8", {}, {"headers": ok_headers(b"jos\xc3")}, "REMOTE_USER header that is not valid UTF-8"),
    ("groups-not-utf8", {"groups_header": "X-Groups"}, {"headers": ok_headers("alice", ("X-Groups", b"\xe9cologie"))},
     "X-Groups header that is not valid UTF-8"),
    ("auth-state-header-not-utf8", {"auth_state_headers": ["mail"]},
     {"headers": ok_headers("alice", ("mail", b"jos\xe9@example.org"))}, "mail header that is not valid UTF-8"),
    ("zero-width-space", {}, {"headers": ok_headers("ali\u200bce")}, "invisible or control character U+200B"),
    ("bidi-override", {}, {"headers": ok_headers("\u202eecila")}, "invisible or control character U+202E"),
    # size limits
    ("name-over-255", {}, {"headers": ok_headers("a" * 256)},
     "256 characters long; this hub accepts at most 255 (RemoteUserAuthenticator.max_username_length)"),
    ("name-over-configured-limit", {"max_username_length": 8}, {"headers": ok_headers("alice-smith")},
     "at most 8 (RemoteUserAuthenticator.max_username_length)"),
    ("name-limit-counts-characters-not-bytes", {"max_username_length": 4}, {"headers": ok_headers("jos\u00e9x")},
     "5 characters long"),
    ("too-many-groups", {"groups_header": "X-Groups"},
     {"headers": ok_headers("alice", ("X-Groups", ";".join(f"g{i}" for i in range(257))))},
     "257 groups; this hub accepts at most 256 (RemoteUserAuthenticator.max_groups)"),
    ("too-many-groups-configured", {"groups_header": "X-Groups", "max_groups": 2},
     {"headers": ok_headers("alice", ("X-Groups", "a;b;c"))}, "at most 2 (RemoteUserAuthenticator.max_groups)"),
    ("group-over-255", {"groups_header": "X-Groups"}, {"headers": ok_headers("alice", ("X-Groups", "hpc;" + "x" * 256))},
     "256 characters long; this hub accepts at most 255 (RemoteUserAuthenticator.max_group_length)"),
]


@pytest.mark.parametrize("akw,hkw,message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_refused_with_clear_403(akw, hkw, message, caplog):
    a = auth(**akw)
    with caplog.at_level(logging.WARNING), pytest.raises(web.HTTPError) as err:
        await a.get_authenticated_user(handler(**hkw), None)
    assert err.value.status_code == 403
    assert message in err.value.log_message % err.value.args
    assert "Refused" in caplog.text
    assert SECRET not in caplog.text


ACCEPTED = [
    # id, authenticator kwargs, request headers (besides the secret), model field, expected
    ("utf8-name", {}, [("REMOTE_USER", "jos\u00e9")], "name", "jos\u00e9"),
    ("utf8-name-lowercased", {}, [("REMOTE_USER", "JOS\u00c9")], "name", "jos\u00e9"),
    ("utf8-name-case-kept", {"lowercase_username": False}, [("REMOTE_USER", "JOS\u00c9")], "name", "JOS\u00c9"),
    ("utf8-decomposed-becomes-nfc", {}, [("REMOTE_USER", "jose\u0301")], "name", "jos\u00e9"),
    ("utf8-realm-stripped", {"strip_realm": True, "accepted_realms": {"\u00e9cole.fr"}},
     [("REMOTE_USER", "Jos\u00e9@\u00c9cole.fr")], "name", "jos\u00e9"),
    ("utf8-cjk", {}, [("REMOTE_USER", "\u5c71\u7530")], "name", "\u5c71\u7530"),
    ("utf8-remote-user-in-auth-state", {}, [("REMOTE_USER", "Jos\u00e9")], "remote_user", "Jos\u00e9"),
    ("utf8-groups", {"groups_header": "X-Groups", "manage_groups": True},
     [("REMOTE_USER", "alice"), ("X-Groups", "physique;\u00e9cologie")], "groups", ["physique", "\u00e9cologie"]),
    ("utf8-auth-state-header", {"auth_state_headers": ["mail"]},
     [("REMOTE_USER", "alice"), ("mail", "jos\u00e9@ex\u00e4mple.org")], "headers", {"mail": "jos\u00e9@ex\u00e4mple.org"}),
    ("lower-case-header-name", {}, [("remote_user", "alice")], "name", "alice"),
    ("mixed-case-header-name", {}, [("Remote_User", "alice")], "name", "alice"),
    ("configured-name-other-case", {"header_name": "x-remote-user"}, [("X-REMOTE-USER", "alice")], "name", "alice"),
    ("name-at-255", {"username_pattern": ".*"}, [("REMOTE_USER", "a" * 255)], "name", "a" * 255),
    ("groups-at-256", {"groups_header": "X-Groups", "manage_groups": True},
     [("REMOTE_USER", "alice"), ("X-Groups", ";".join(f"g{i}" for i in range(256)))], "groups",
     [f"g{i}" for i in range(256)]),
    ("group-limit-counts-after-drop-unmapped", {"groups_header": "X-Groups", "manage_groups": True, "max_groups": 1,
                                                "group_map": {"cn=hpc": "hpc"}, "drop_unmapped_groups": True},
     [("REMOTE_USER", "alice"), ("X-Groups", "cn=hpc;a;b;c")], "groups", ["hpc"]),
]


@pytest.mark.parametrize("akw,headers,field,expected", [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
async def test_accepted_headers(akw, headers, field, expected):
    model = await auth(**akw).get_authenticated_user(handler([*headers, ("X-Proxy-Secret", SECRET)]), None)
    assert model is not None
    got = {"name": model["name"], "groups": model.get("groups"), "remote_user": model["auth_state"]["remote_user"],
           "headers": model["auth_state"]["headers"]}[field]
    assert got == expected


REFUSAL_LOGS = [
    # id, authenticator kwargs, handler kwargs, in the log, never in the log
    ("wrong-secret-spoofed-remote-ip", {},
     {"headers": [("REMOTE_USER", "alice"), ("X-Proxy-Secret", "x" * 20)], "remote_ip": "203.0.113.66"},
     ["TCP peer: 127.0.0.1", "forwarded client (the address trusted_proxy_networks is checked against): 192.0.2.10"], ["203.0.113.66"]),
    ("untrusted-address", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"], "unsafe_trust_local_users": True},
     {"headers": [("REMOTE_USER", "alice")], "xff": "192.0.2.10, 198.51.100.7", "remote_ip": "192.0.2.10"},
     ["TCP peer: 127.0.0.1", "checked against): 198.51.100.7", "via the hub's proxy from 198.51.100.7"], ["192.0.2.10"]),
    ("direct-connection", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"], "unsafe_trust_local_users": True},
     {"headers": [("REMOTE_USER", "alice")], "peer": "198.51.100.9", "xff": "192.0.2.10", "remote_ip": "192.0.2.10"},
     ["TCP peer: 198.51.100.9", "checked against): 198.51.100.9", "direct connection"], ["192.0.2.10"]),
    ("later-refusal-too", {}, {"headers": ok_headers("alice smith"), "remote_ip": "203.0.113.66"},
     ["spaces or control", "TCP peer: 127.0.0.1", "checked against): 192.0.2.10"], ["203.0.113.66"]),
]


@pytest.mark.parametrize("akw,hkw,present,absent", [c[1:] for c in REFUSAL_LOGS], ids=[c[0] for c in REFUSAL_LOGS])
async def test_refusal_log_names_peer_and_checked_address(akw, hkw, present, absent, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(web.HTTPError):
        await auth(**akw).get_authenticated_user(handler(**hkw), None)
    for text in present:
        assert text in caplog.text
    for text in absent:
        assert text not in caplog.text


async def test_trusted_address_without_secret():
    a = auth(proxy_secret="", trusted_proxy_networks=["192.0.2.0/28"], unsafe_trust_local_users=True)
    model = await a.get_authenticated_user(handler([("REMOTE_USER", "alice")], xff="203.0.113.9, 192.0.2.10"), None)
    assert model["name"] == "alice"


async def test_unsafe_opt_out_trusts_anyone(caplog):
    with caplog.at_level(logging.WARNING):
        a = RemoteUserAuthenticator(unsafe_trust_any_client=True, allow_all=True)
    assert "unsafe_trust_any_client is on" in caplog.text
    model = await a.get_authenticated_user(handler([("REMOTE_USER", "alice")], xff=None), None)
    assert model["name"] == "alice"


CONFIG_ERRORS = [
    ("no-trust", {}, "RemoteUserAuthenticator.proxy_secret"),
    ("short-secret", {"proxy_secret": "short"}, "RemoteUserAuthenticator.proxy_secret is 5 characters"),
    ("bad-cidr", {"trusted_proxy_networks": ["10.0.0.0/33"]}, "RemoteUserAuthenticator.trusted_proxy_networks"),
    ("bad-hub-cidr", {"proxy_secret": SECRET, "hub_proxy_networks": ["nope"]}, "RemoteUserAuthenticator.hub_proxy_networks"),
    ("bad-header", {"proxy_secret": SECRET, "header_name": "Remote User"}, "RemoteUserAuthenticator.header_name"),
    ("empty-header", {"proxy_secret": SECRET, "header_name": ""}, "RemoteUserAuthenticator.header_name must not be empty"),
    ("bad-regex", {"proxy_secret": SECRET, "username_extract_pattern": "(["}, "RemoteUserAuthenticator.username_extract_pattern"),
    ("regex-no-group", {"proxy_secret": SECRET, "username_extract_pattern": "[a-z]+"}, "needs a group"),
    ("bad-logout", {"proxy_secret": SECRET, "logout_redirect_url": "javascript:alert(1)"},
     "RemoteUserAuthenticator.logout_redirect_url"),
    ("protocol-relative-logout", {"proxy_secret": SECRET, "logout_redirect_url": "//evil.org/"}, "logout_redirect_url"),
    ("secret-header-is-user-header", {"proxy_secret": SECRET, "proxy_secret_header": "remote_user"},
     "RemoteUserAuthenticator.header_name and RemoteUserAuthenticator.proxy_secret_header"),
    ("secret-header-is-groups-header", {"proxy_secret": SECRET, "groups_header": "x-proxy-secret"},
     "RemoteUserAuthenticator.groups_header and RemoteUserAuthenticator.proxy_secret_header"),
    ("zero-username-limit", {"proxy_secret": SECRET, "max_username_length": 0},
     "RemoteUserAuthenticator.max_username_length = 0 must be at least 1"),
    ("zero-groups-limit", {"proxy_secret": SECRET, "max_groups": 0}, "RemoteUserAuthenticator.max_groups"),
    ("zero-group-length", {"proxy_secret": SECRET, "max_group_length": 0}, "RemoteUserAuthenticator.max_group_length"),
    # issue 11: networks without a secret where local users can write the trusted address refuse to start
    ("networks-without-secret-loopback-chp", {"proxy_secret": "", "trusted_proxy_networks": ["10.1.2.3/32"]},
     "RemoteUserAuthenticator.proxy_secret (or $REMOTE_USER_PROXY_SECRET) is not set"),
    ("networks-without-secret-v6-loopback", {"proxy_secret": "", "trusted_proxy_networks": ["10.1.2.3/32"],
                                             "hub_proxy_networks": ["::1/128"]},
     "RemoteUserAuthenticator.unsafe_trust_local_users"),
    ("loopback-trusted-without-secret", {"proxy_secret": "", "trusted_proxy_networks": ["127.0.0.1/32"],
                                         "hub_proxy_networks": ["10.1.2.4/32"]}, "any local user"),
    ("example-config-without-its-secret", {"proxy_secret": "", "trusted_proxy_networks": ["127.0.0.1/32"]},
     "REMOTE_USER_PROXY_SECRET"),
]


@pytest.mark.parametrize("kw,message", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_name_the_trait(kw, message, monkeypatch):
    monkeypatch.delenv("REMOTE_USER_PROXY_SECRET", raising=False)
    with pytest.raises((ValueError, TraitError), match=re.escape(message)):
        RemoteUserAuthenticator(**kw)


CONFIG_WARNINGS = [
    # id, kwargs, part of the startup warning (None: no warning at all)
    ("secret-and-networks-quiet", {"trusted_proxy_networks": ["127.0.0.1/32"]}, None),
    ("secret-only-quiet", {}, None),
    ("networks-without-secret-loopback-chp-opted-in", {"proxy_secret": "", "trusted_proxy_networks": ["10.1.2.3/32"],
                                                       "unsafe_trust_local_users": True},
     "RemoteUserAuthenticator.unsafe_trust_local_users is on"),
    ("networks-without-secret-remote-chp-quiet", {"proxy_secret": "", "trusted_proxy_networks": ["10.1.2.3/32"],
                                                  "hub_proxy_networks": ["10.1.2.4/32"]}, None),
    ("strip-realm-any-realm", {"strip_realm": True}, "RemoteUserAuthenticator.strip_realm is on without"),
    ("strip-realm-with-realms-quiet", {"strip_realm": True, "accepted_realms": {"example.org"}}, None),
    ("strip-realm-with-pattern-quiet", {"strip_realm": True, "username_extract_pattern": "(?P<username>[a-z]+)@x"}, None),
    ("manage-groups-no-header", {"manage_groups": True}, "RemoteUserAuthenticator.groups_header is empty"),
    ("manage-groups-with-header-quiet", {"manage_groups": True, "groups_header": "X-Groups"}, None),
    ("secret-in-auth-state", {"auth_state_headers": ["mail", "x-proxy-secret"]},
     "RemoteUserAuthenticator.auth_state_headers lists X-Proxy-Secret"),
]


@pytest.mark.parametrize("kw,message", [c[1:] for c in CONFIG_WARNINGS], ids=[c[0] for c in CONFIG_WARNINGS])
def test_risky_config_warns_at_startup(kw, message, caplog, monkeypatch):
    monkeypatch.delenv("REMOTE_USER_PROXY_SECRET", raising=False)
    with caplog.at_level(logging.WARNING):
        auth(**kw)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if message is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and message in warnings[0], warnings
        assert SECRET not in warnings[0]


def test_secret_from_environment(monkeypatch):
    monkeypatch.setenv("REMOTE_USER_PROXY_SECRET", SECRET)
    a = RemoteUserAuthenticator()
    assert a.proxy_secret == SECRET and a.auto_login is True


def test_login_and_logout_handlers_registered():
    a = auth()
    routes = dict(a.get_handlers(None))
    assert routes["/logout"] is RemoteUserLogoutHandler
    assert routes["/login"] is RemoteUserLoginHandler and issubclass(RemoteUserLoginHandler, LoginHandler)


# ------------------------------------------- the secret never reaches the hub's 5xx log
class FakeConnection:
    """Just enough of tornado's HTTP1Connection for a handler to run and finish."""

    def __init__(self, peer="127.0.0.1"):
        self.context = SimpleNamespace(address=(peer, 40000), remote_ip=peer, protocol="http")
        self.status = None
        self.done = asyncio.Event()

    def set_close_callback(self, callback):
        pass

    def _done_future(self):
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f

    def write_headers(self, start_line, headers, chunk=None):
        self.status = start_line.code
        return self._done_future()

    def write(self, chunk):
        return self._done_future()

    def finish(self):
        self.done.set()


def _failing(base):
    class Failing(base):
        """The hub's own code failing first thing (e.g. its database) with a 500."""

        async def prepare(self):
            raise RuntimeError("simulated hub failure")

        def write_error(self, status_code, **kwargs):
            self.finish("error")

    return Failing


def hub_settings():
    """The tornado settings a hub handler reads while it is built and finished."""
    return {"authenticator": auth(), "hub": SimpleNamespace(base_url="/hub/"),
            "db": SimpleNamespace(dirty=False, rollback=lambda: None)}


LEAK_CASES = [
    # id, login handler class, does the secret reach the hub's log?
    ("hub-login-handler-would-log-it", LoginHandler, True),
    ("remote-user-login-handler", RemoteUserLoginHandler, False),
]


@pytest.mark.parametrize("cls,leaks", [c[1:] for c in LEAK_CASES], ids=[c[0] for c in LEAK_CASES])
async def test_secret_not_in_hub_log_when_login_fails_with_5xx(cls, leaks, caplog):
    """jupyterhub.log.log_request dumps request headers on a 5xx (hiding Authorization/Cookie only)."""
    app = web.Application([("/hub/login", _failing(cls))], log_function=log_request, **hub_settings())
    conn = FakeConnection()
    request = HTTPServerRequest(start_line=LOGIN, connection=conn,
                                headers=wire_headers([("Host", "hub.example.org"), *ok_headers()]))
    with caplog.at_level(logging.DEBUG):
        app(request)
        await asyncio.wait_for(conn.done.wait(), 10)
    assert conn.status == 500
    assert '"Remote_user": "alice"' in caplog.text  # the header dump happened
    assert (SECRET in caplog.text) is leaks


async def test_login_handler_takes_secret_before_hub_code_and_trust_check_uses_it():
    app = web.Application([], **hub_settings())
    request = HTTPServerRequest(start_line=LOGIN, connection=FakeConnection(),
                                headers=wire_headers([("Host", "hub.example.org"), *ok_headers(),
                                                      ("X-Forwarded-For", "192.0.2.10")]))
    h = RemoteUserLoginHandler(app, request)
    assert "X-Proxy-Secret" not in request.headers
    assert h.proxy_secret_values == [SECRET]
    model = await h.authenticator.get_authenticated_user(h, None)
    assert model["name"] == "alice"


async def test_case_kept_when_asked():
    a = auth(lowercase_username=False)
    model = await a.get_authenticated_user(handler(ok_headers("Alice")), None)
    assert model["name"] == "Alice"


# --------------------------------------------------------------- Local variant
def adduser_stand_in(tmp_path, fail=None):
    """A stand-in for adduser: the hub appends the user name as the last argument."""
    created = tmp_path / "created"
    if fail:
        return created, ["sh", "-c", f'echo "{fail}" >&2; exit 1', "sh"]
    return created, ["sh", "-c", f'echo "$1" >> {created}', "sh"]


async def test_local_refuses_missing_account_without_create():
    a = auth(RemoteUserLocalAuthenticator)
    with pytest.raises(web.HTTPError, match="403") as err:
        await a.get_authenticated_user(handler(ok_headers("nosuchuser-jhpc")), None)
    assert "no system account 'nosuchuser-jhpc'" in err.value.args[0]


LOCAL_REFUSED = [
    # id, authenticator kwargs, user, part of the 403 message
    ("realm-in-name", {}, "alice@example.org", "not a valid system account name"),
    ("dot-not-in-adduser-default", {}, "john.smith", "adduser's default rule"),
    ("leading-underscore", {}, "_alice", "adduser's default rule"),
    ("non-ascii", {}, "jos\u00e9", "adduser's default rule"),
    ("too-long-for-account", {}, "a" * 33, "longer than 32 bytes"),
    ("custom-pattern", {"system_username_pattern": "[a-z]+"}, "alice-1", "it must match '[a-z]+'"),
]


@pytest.mark.parametrize("akw,user,message", [c[1:] for c in LOCAL_REFUSED], ids=[c[0] for c in LOCAL_REFUSED])
async def test_local_refuses_name_adduser_would_refuse(akw, user, message, tmp_path):
    created, cmd = adduser_stand_in(tmp_path)
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=cmd, **akw)
    with pytest.raises(web.HTTPError) as err:
        await a.get_authenticated_user(handler(ok_headers(user)), None)
    assert err.value.status_code == 403
    assert message in err.value.args[0]
    assert not created.exists()  # adduser never ran


LOCAL_CREATED = [
    # id, authenticator kwargs, user
    ("adduser-default-name", {}, "newuser-jhpc"),
    ("custom-pattern-allows-dot", {"system_username_pattern": r"[a-z][a-z0-9._-]*"}, "john.smith"),
]


@pytest.mark.parametrize("akw,user", [c[1:] for c in LOCAL_CREATED], ids=[c[0] for c in LOCAL_CREATED])
async def test_local_creates_account_after_hub_checks(akw, user, tmp_path):
    created, cmd = adduser_stand_in(tmp_path)
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=cmd, **akw)
    model = await a.get_authenticated_user(handler(ok_headers(user)), None)
    assert model["name"] == user
    assert created.read_text().split() == [user]


async def test_local_does_not_create_account_for_refused_user(tmp_path):
    created, cmd = adduser_stand_in(tmp_path)
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=cmd, blocked_users={"newuser-jhpc"})
    assert await a.get_authenticated_user(handler(ok_headers("newuser-jhpc")), None) is None
    assert not created.exists()


async def test_local_add_user_cmd_failure_is_a_clear_403(tmp_path, caplog):
    _, cmd = adduser_stand_in(tmp_path, fail="adduser: Please enter a username matching NAME_REGEX")
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=cmd)
    with caplog.at_level(logging.WARNING), pytest.raises(web.HTTPError) as err:
        await a.get_authenticated_user(handler(ok_headers("newuser-jhpc")), None)
    assert err.value.status_code == 403
    assert "the system account 'newuser-jhpc' could not be created" in err.value.args[0]
    assert "matching NAME_REGEX" in err.value.args[0]
    assert "Creating the system account for 'newuser-jhpc' failed" in caplog.text


async def test_local_existing_account_ok_whatever_its_name(monkeypatch):
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=["false"])
    monkeypatch.setattr(a, "_getpwnam", lambda name: SimpleNamespace(pw_name=name))  # e.g. an LDAP account
    model = await a.get_authenticated_user(handler(ok_headers("john.smith")), None)
    assert model["name"] == "john.smith"


async def test_local_existing_account_ok():
    a = auth(RemoteUserLocalAuthenticator)
    model = await a.get_authenticated_user(handler(ok_headers("root")), None)
    assert model["name"] == "root"


async def test_local_variant_keeps_unix_allowed_groups_separate():
    a = auth(RemoteUserLocalAuthenticator, allow_all=False, groups_header="X-Groups", allowed_remote_groups={"hpc"})
    assert a.allowed_groups == set()  # LocalAuthenticator's UNIX groups, untouched
    model = await a.get_authenticated_user(handler(ok_headers("root", ("X-Groups", "hpc"))), None)
    assert model["name"] == "root"
    assert await a.get_authenticated_user(handler(ok_headers("root", ("X-Groups", "other"))), None) is None


# ---------------------------------------------------------------- issue 21 (4): every local address
FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.21.0.0/24 2 0 2
        |-- 10.21.0.0
           /24 link UNICAST
        |-- 10.21.0.5
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.168.77.9
        /32 host LOCAL
     |-- 10.21.0.255
        /32 link BROADCAST
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fd00002100000000000000000000000a 03 40 00 80   cluster0
fe8000000000000000000000000000ff 03 40 20 80   cluster0
"""


def test_interface_tables_parsed():
    from authenticators.trust import parse_fib_trie_local, parse_if_inet6

    assert {str(a) for a in parse_fib_trie_local(FIB_TRIE)} == {"10.21.0.5", "127.0.0.1", "192.168.77.9"}
    assert {str(a) for a in parse_if_inet6(IF_INET6)} == {"::1", "fd00:21::a", "fe80::ff"}


def test_real_host_tables_list_loopback():
    from authenticators.remote_user import local_addresses

    addresses, missing = local_addresses()
    assert missing == [] and ipaddress.ip_address("127.0.0.1") in addresses


def host(*addresses, missing=()):
    return lambda: ([ipaddress.ip_address(a) for a in addresses], list(missing))


# the issue's configuration: hub, its proxy and the trusted front end on the host's cluster
# address, which the host name does not resolve to; no secret
CLUSTER_ADDRESS_CASES = [
    ("trusted-is-an-interface-address", {"trusted_proxy_networks": ["10.21.0.5/32"], "hub_proxy_networks": ["10.21.0.7/32"]},
     "trusted_proxy_networks entry 10.21.0.5/32 includes 10.21.0.5"),
    ("hub-proxy-is-an-interface-address", {"trusted_proxy_networks": ["10.21.0.9/32"], "hub_proxy_networks": ["10.21.0.5/32"]},
     "hub_proxy_networks entry 10.21.0.5/32 includes 10.21.0.5"),
    ("subnet-with-an-interface-address", {"trusted_proxy_networks": ["10.21.0.0/24"], "hub_proxy_networks": ["10.22.0.1/32"]},
     "includes 10.21.0.5"),
    ("ipv6-interface-address", {"trusted_proxy_networks": ["fd00:21::/64"], "hub_proxy_networks": ["10.22.0.1/32"]},
     "includes fd00:21::a"),
    ("tables-unreadable", {"trusted_proxy_networks": ["10.99.0.1/32"], "hub_proxy_networks": ["10.99.0.2/32"]},
     "could not be listed"),
]


@pytest.mark.parametrize("kw,message", [c[1:] for c in CLUSTER_ADDRESS_CASES], ids=[c[0] for c in CLUSTER_ADDRESS_CASES])
def test_no_secret_with_an_interface_address_refuses_to_start(kw, message, monkeypatch):
    monkeypatch.delenv("REMOTE_USER_PROXY_SECRET", raising=False)
    lister = host("127.0.0.1", "10.21.0.5", "::1", "fd00:21::a",
                  missing=["/proc/net/fib_trie"] if "99" in kw["trusted_proxy_networks"][0] else [])
    with pytest.raises(ValueError) as err:
        RemoteUserAuthenticator(proxy_secret="", local_address_lister=lister, **kw)
    text = str(err.value)
    assert message in text and "RemoteUserAuthenticator.proxy_secret" in text and "unsafe_trust_local_users" in text


def test_other_hosts_networks_without_secret_still_start(monkeypatch):
    monkeypatch.delenv("REMOTE_USER_PROXY_SECRET", raising=False)
    a = RemoteUserAuthenticator(proxy_secret="", trusted_proxy_networks=["10.21.0.9/32"],
                                hub_proxy_networks=["10.21.0.7/32"], local_address_lister=host("127.0.0.1", "10.21.0.5"))
    assert a.local_users_can_send_trusted_address() == ""
    # with the secret the interface address is fine: a local user cannot produce the secret
    RemoteUserAuthenticator(proxy_secret=SECRET, trusted_proxy_networks=["10.21.0.5/32"],
                            hub_proxy_networks=["10.21.0.5/32"], local_address_lister=host("10.21.0.5"))
