"""RemoteUserAuthenticator through the hub's own get_authenticated_user (its checks run too)."""

import logging
import re
from types import SimpleNamespace

import pytest
from tornado import web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from traitlets import TraitError

from authenticators import RemoteUserAuthenticator, RemoteUserLocalAuthenticator

SECRET = "0123456789abcdef-test-secret"


def handler(headers=(), peer="127.0.0.1", xff="192.0.2.10"):
    h = HTTPHeaders({"Host": "hub.example.org"})
    for k, v in headers:
        h.add(k, v)
    if xff is not None:
        h.add("X-Forwarded-For", xff)
    conn = SimpleNamespace(context=SimpleNamespace(address=(peer, 40000), remote_ip=peer))
    return SimpleNamespace(request=HTTPServerRequest(
        start_line=RequestStartLine("GET", "/hub/login", "HTTP/1.1"), headers=h, connection=conn
    ))


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
    ("untrusted-address", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"]},
     {"headers": [("REMOTE_USER", "alice")], "xff": "198.51.100.7"}, "single sign-on"),
    ("client-xff-prefix", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"]},
     {"headers": [("REMOTE_USER", "alice")], "xff": "192.0.2.10, 198.51.100.7"}, "single sign-on"),
    ("direct-to-hub-forged-xff", {"proxy_secret": "", "trusted_proxy_networks": ["192.0.2.10/32"]},
     {"headers": [("REMOTE_USER", "alice")], "peer": "198.51.100.7", "xff": "192.0.2.10"}, "single sign-on"),
    ("secret-ok-address-bad", {"trusted_proxy_networks": ["192.0.2.10/32"]},
     {"headers": ok_headers(), "xff": "198.51.100.7"}, "single sign-on"),
    ("no-user-header", {}, {"headers": [("X-Proxy-Secret", SECRET)]}, "sent no REMOTE_USER header"),
    ("user-header-twice", {}, {"headers": ok_headers("alice", ("REMOTE_USER", "bob"))}, "more than once"),
    ("bad-name", {}, {"headers": ok_headers("alice smith")}, "spaces or control"),
    ("foreign-realm", {"strip_realm": True, "accepted_realms": {"example.org"}},
     {"headers": ok_headers("alice@evil.org")}, "realm 'evil.org'"),
    ("hub-pattern", {"username_pattern": r"^[a-z]+$"}, {"headers": ok_headers("alice1")}, "username_pattern"),
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


async def test_trusted_address_without_secret():
    a = auth(proxy_secret="", trusted_proxy_networks=["192.0.2.0/28"])
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
]


@pytest.mark.parametrize("kw,message", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_name_the_trait(kw, message, monkeypatch):
    monkeypatch.delenv("REMOTE_USER_PROXY_SECRET", raising=False)
    with pytest.raises((ValueError, TraitError), match=re.escape(message)):
        RemoteUserAuthenticator(**kw)


def test_secret_from_environment(monkeypatch):
    monkeypatch.setenv("REMOTE_USER_PROXY_SECRET", SECRET)
    a = RemoteUserAuthenticator()
    assert a.proxy_secret == SECRET and a.auto_login is True


def test_logout_handler_registered():
    a = auth()
    routes = dict(a.get_handlers(None))
    assert routes["/logout"].__name__ == "RemoteUserLogoutHandler"
    assert "/login" in routes


async def test_case_kept_when_asked():
    a = auth(lowercase_username=False)
    model = await a.get_authenticated_user(handler(ok_headers("Alice")), None)
    assert model["name"] == "Alice"


# --------------------------------------------------------------- Local variant
async def test_local_refuses_missing_account_without_create():
    a = auth(RemoteUserLocalAuthenticator)
    with pytest.raises(web.HTTPError, match="403") as err:
        await a.get_authenticated_user(handler(ok_headers("nosuchuser-jhpc")), None)
    assert "no system account 'nosuchuser-jhpc'" in err.value.args[0]


async def test_local_refuses_name_unusable_as_account():
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, strip_realm=False)
    with pytest.raises(web.HTTPError) as err:
        await a.get_authenticated_user(handler(ok_headers("alice@example.org")), None)
    assert "not a valid system account name" in err.value.args[0]


async def test_local_creates_account_when_asked(tmp_path):
    created = tmp_path / "created"
    # a stand-in for adduser: the hub appends the user name as the last argument
    cmd = ["sh", "-c", f'echo "$1" >> {created}', "sh"]
    a = auth(RemoteUserLocalAuthenticator, create_system_users=True, add_user_cmd=cmd)
    model = await a.get_authenticated_user(handler(ok_headers("newuser-jhpc")), None)
    assert model["name"] == "newuser-jhpc"
    await a.add_user(SimpleNamespace(name=model["name"]))
    assert created.read_text().split() == ["newuser-jhpc"]


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
