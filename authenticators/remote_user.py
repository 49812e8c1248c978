"""Log users in from the SSO headers a trusted front proxy (Apache + mod_shib,
mod_auth_openidc, mod_auth_mellon, ...) sets.

With ``auto_login`` (on by default here) the hub's own ``/hub/login`` calls
``authenticate(handler, None)``; this returns a user model, so the hub's own
checks still run afterwards: ``normalize_username``, ``username_pattern``,
``blocked_users``, ``allow_all``/``allowed_users``, ``admin_users``, group sync
(``manage_groups``), auth_state and ``post_auth_hook``.

A request counts only if it came through the front proxy: the proxy adds a
shared secret header, and/or the request arrives from ``trusted_proxy_networks``
(see ``authenticators/trust.py`` for which address is checked and why).

Header values are read as UTF-8: tornado hands them over decoded as latin-1 (the
HTTP default for non-ASCII bytes), while SSO modules send UTF-8, so each value is
re-decoded (``josÃ©`` -> ``josé``); a value that is not UTF-8 is refused.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

from jupyterhub.auth import Authenticator, LocalAuthenticator
from tornado import web
from traitlets import Bool, Dict, Integer, List, Set, TraitError, Unicode, default, validate

from .login import RemoteUserLoginHandler
from .logout import RemoteUserLogoutHandler
from .mapping import DEBIAN_NAME_REGEX, MappingError, brief, map_username, parse_groups, posix_name_problem
from .trust import address_in, forwarded_client, parse_networks, secret_matches
from .trustconfig import MIN_SECRET, SECRET_ENV, TrustConfigChecks, local_addresses  # noqa: F401 (0.1 names)

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class RemoteUserAuthenticator(TrustConfigChecks, Authenticator):
    """Trust a user header set by an authenticating front proxy, and nothing else."""

    # ------------------------------------------------------------------ headers
    header_name = Unicode(
        "REMOTE_USER",
        config=True,
        help="""Request header holding the authenticated user, as the front proxy sets it
        (`REMOTE_USER`, `X-Remote-User`, `eppn`, ...). Matched case-insensitively.
        The front proxy must remove any client-sent copy of it (see examples/apache).""",
    )
    groups_header = Unicode(
        "",
        config=True,
        help="""Request header listing the user's groups (`isMemberOf`, `X-Remote-User-Groups`).
        Empty: no groups from headers. Split on `groups_separator`, renamed by `group_map`;
        synced to the hub only with `Authenticator.manage_groups = True`; `admin_groups`
        is checked against the result.""",
    )
    groups_separator = Unicode(
        ";",
        config=True,
        help="Separator between groups in `groups_header` (mod_shib uses `;`, many OIDC setups `,`).",
    )
    group_map = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Rename external groups to hub groups, e.g.
        `{"cn=hpc,ou=groups,dc=example,dc=org": "hpc"}`. Unmapped groups keep their name
        unless `drop_unmapped_groups` is set.""",
    )
    drop_unmapped_groups = Bool(
        False,
        config=True,
        help="Keep only groups named in `group_map` (avoids creating a hub group per SSO group).",
    )
    admin_groups = Set(
        Unicode(),
        config=True,
        help="""Hub group names (after `group_map`) whose members are hub admins. When set,
        a user not in any of them at login loses admin rights (unless in
        `Authenticator.admin_users`): admin follows the SSO.""",
    )
    allowed_remote_groups = Set(
        Unicode(),
        config=True,
        help="""Let in members of these groups (from `groups_header`, after `group_map`), in
        addition to `Authenticator.allowed_users`. Not UNIX groups: those are
        `LocalAuthenticator.allowed_groups`. `blocked_users` still wins.""",
    ).tag(allow_config=True)
    auth_state_headers = List(
        Unicode(),
        config=True,
        help="""Headers to keep in the user's auth_state under `headers` (e.g. `mail`,
        `X-Remote-User-Account`), so a `Spawner.auth_state_hook` can pass them to the job
        (see `authenticators.env.auth_state_env_hook`). auth_state is only stored with
        `Authenticator.enable_auth_state = True` and `JUPYTERHUB_CRYPT_KEY` set.
        Values are read as UTF-8; a value that is not is refused (403).""",
    )
    max_groups = Integer(
        256,
        config=True,
        help="""Most groups accepted from `groups_header`, counted after `group_map`,
        `drop_unmapped_groups` and de-duplication. A login with more is refused (403) rather
        than silently losing some (which could drop an `admin_groups` or
        `allowed_remote_groups` membership).""",
    )
    max_group_length = Integer(
        255,
        config=True,
        help="""Longest group name accepted (characters, after `group_map`). A login with a
        longer group is refused (403): cutting it short could turn it into another group.""",
    )

    # --------------------------------------------------------------- usernames
    strip_realm = Bool(
        False,
        config=True,
        help="Strip a realm or domain from the user header: `alice@example.org` and `EXAMPLE\\alice` -> `alice`.",
    )
    accepted_realms = Set(
        Unicode(),
        config=True,
        help="""Realms accepted in the user header (case-insensitive). When set, a name
        without one of these realms is refused; this stops `alice@other.org` becoming hub
        user `alice` when `strip_realm` is on.""",
    )
    username_extract_pattern = Unicode(
        "",
        config=True,
        help="""Regex that must match the whole user header; its group `username` (or group 1)
        is the hub name, e.g. `(?P<username>[a-z0-9]+)@(example\\.org|ex\\.org)`.
        Replaces `strip_realm`/`accepted_realms` when set; a non-matching header is refused.""",
    )
    lowercase_username = Bool(
        True,
        config=True,
        help="Lower-case names (the hub's default normalisation). False keeps case; `username_map` still applies.",
    )
    max_username_length = Integer(
        255,
        config=True,
        help="""Longest user header value, and hub name after mapping, accepted (characters).
        Longer: refused with a 403, never cut short (a cut name could be someone else's).""",
    )

    # ------------------------------------------------------------------- trust
    proxy_secret_header = Unicode(
        "X-Proxy-Secret",
        config=True,
        help="Request header carrying `proxy_secret`; the front proxy sets it and removes client copies.",
    )
    proxy_secret = Unicode(
        config=True,
        help=f"""Shared secret the front proxy adds in `proxy_secret_header`; compared in constant
        time. Default: the `{SECRET_ENV}` environment variable (keep it out of config files).
        At least {MIN_SECRET} characters. Required unless `trusted_proxy_networks` is set;
        with both set, both must pass.""",
    )
    trusted_proxy_networks = List(
        Unicode(),
        config=True,
        help="""CIDR networks the front proxy connects to configurable-http-proxy from
        (e.g. `["10.1.2.3/32"]`). The checked address is the last X-Forwarded-For entry
        appended by the hub's own proxy, not `request.remote_ip` (client-controllable);
        see `hub_proxy_networks`. With `proxy_secret` also set, both must pass.""",
    )
    hub_proxy_networks = List(
        Unicode(),
        ["127.0.0.0/8", "::1/128"],
        config=True,
        help="""Where configurable-http-proxy connects to the hub from. Only for connections
        from here is the last X-Forwarded-For entry believed; any other connection is
        checked by its own address. Set it to the CHP host's address when CHP runs elsewhere.""",
    )
    unsafe_trust_any_client = Bool(
        False,
        config=True,
        help="""UNSAFE: accept the user header from any client, with neither `proxy_secret` nor
        `trusted_proxy_networks`. Anyone who can reach the hub or its proxy can then log in
        as anyone. Only for a hub reachable solely through the authenticating proxy.""",
    )

    unsafe_trust_local_users = Bool(
        False,
        config=True,
        help="""UNSAFE: run with `trusted_proxy_networks` but no `proxy_secret` although local users
        can send the trusted address: `trusted_proxy_networks` includes loopback or this host's own
        addresses (every local user connects from them), or `hub_proxy_networks` does (every local
        user can connect to the hub port from there and write the X-Forwarded-For entry that is
        checked). Then any local user can log in as anyone, admin included. Without a secret
        the hub refuses to start in that case unless this is True; set `proxy_secret` instead.""",
    )

    # ------------------------------------------------------------------ logout
    logout_redirect_url = Unicode(
        "",
        config=True,
        help="""Where /hub/logout sends the browser after clearing the hub session: the SSO's
        logout URL (e.g. `/Shibboleth.sso/Logout`, `/oidc-redirect?logout=https://...`).
        Empty: the hub's own logout page, and the SSO session stays alive.""",
    )

    @default("auto_login")
    def _auto_login_default(self):
        return True

    @default("proxy_secret")
    def _proxy_secret_default(self):
        return os.environ.get(SECRET_ENV, "")

    # -------------------------------------------------------------- validation
    def _trait_name(self, name):
        return f"{type(self).__name__}.{name}"

    @validate("header_name", "groups_header", "proxy_secret_header")
    def _valid_header(self, proposal):
        value = proposal["value"].strip()
        name = proposal["trait"].name
        if value and not _HEADER_NAME.match(value):
            raise TraitError(f"{self._trait_name(name)} = {value!r} is not a valid HTTP header name")
        if not value and name != "groups_header":
            raise TraitError(f"{self._trait_name(name)} must not be empty")
        return value

    @validate("trusted_proxy_networks", "hub_proxy_networks")
    def _valid_networks(self, proposal):
        try:
            parse_networks(proposal["value"])
        except ValueError as e:
            raise TraitError(f"{self._trait_name(proposal['trait'].name)}: {e}") from None
        return proposal["value"]

    @validate("username_extract_pattern")
    def _valid_pattern(self, proposal):
        value = proposal["value"]
        if value:
            try:
                compiled = re.compile(value)
            except re.error as e:
                raise TraitError(f"{self._trait_name('username_extract_pattern')}: bad regex {value!r}: {e}") from None
            if "username" not in compiled.groupindex and compiled.groups < 1:
                raise TraitError(
                    f"{self._trait_name('username_extract_pattern')} needs a group `(?P<username>...)` or a group 1"
                )
        return value

    @validate("max_username_length", "max_groups", "max_group_length")
    def _valid_limit(self, proposal):
        if proposal["value"] < 1:
            raise TraitError(f"{self._trait_name(proposal['trait'].name)} = {proposal['value']} must be at least 1")
        return proposal["value"]

    @validate("logout_redirect_url")
    def _valid_logout(self, proposal):
        value = proposal["value"].strip()
        if value and not (value.startswith(("https://", "http://")) or (value.startswith("/") and not value.startswith("//"))):
            raise TraitError(
                f"{self._trait_name('logout_redirect_url')} = {value!r}: use an absolute http(s) URL or a path starting with /"
            )
        return value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.check_trust_config()

    # ------------------------------------------------------------------- trust
    def take_proxy_secret(self, request) -> list[str]:
        """Remove every copy of `proxy_secret_header` from the request; return their values.

        Called as early as possible (RemoteUserLoginHandler.initialize): the hub logs every
        request header of a 5xx response.
        """
        values = request.headers.get_list(self.proxy_secret_header)
        if values:
            del request.headers[self.proxy_secret_header]
        return values

    def _addresses(self, request):
        """(TCP peer, forwarded client, how): the addresses the trust check uses, for checks and logs.

        Never ``request.remote_ip``: tornado takes it from a client-writable X-Real-Ip or
        X-Forwarded-For entry."""
        peer = getattr(getattr(request.connection, "context", None), "address", None)
        peer = peer[0] if isinstance(peer, tuple) and peer else None
        checked, how = forwarded_client(
            peer, request.headers.get_list("X-Forwarded-For"), parse_networks(self.hub_proxy_networks)
        )
        return peer, checked, how

    def _log_refusal(self, request, why):
        peer, checked, how = self._addresses(request)
        # never header values here: one of them may be a (wrong) secret
        self.log.warning(
            "Refused %s login: %s [TCP peer: %s; forwarded client (the address trusted_proxy_networks is checked against): %s, %s]",
            type(self).__name__, why, peer, checked, how,
        )

    def check_request_trusted(self, handler):
        """Raise 403 unless the request came through the front proxy."""
        request = handler.request
        failures = []
        given = getattr(handler, "proxy_secret_values", None)
        if given is None:  # not taken by RemoteUserLoginHandler (another handler, or a test)
            given = self.take_proxy_secret(request)
        if self.proxy_secret and not (len(given) == 1 and secret_matches(given[0], self.proxy_secret)):
            failures.append(f"missing, repeated or wrong {self.proxy_secret_header}")
        if self.trusted_proxy_networks:
            _, checked, how = self._addresses(request)
            if not address_in(checked, parse_networks(self.trusted_proxy_networks)):
                failures.append(f"address not in trusted_proxy_networks ({how})")
        if failures:
            self._log_refusal(request, "; ".join(failures))
            raise web.HTTPError(
                403, "%s",
                "This hub accepts sign-ins only through its single sign-on front end; this request did not "
                "come through it. Open the hub's public address instead; if you did, ask the hub's "
                "administrators to check the front proxy configuration.",
            )

    # ----------------------------------------------------------------- authenticate
    def _refuse(self, handler, why):
        self._log_refusal(handler.request, why)
        raise web.HTTPError(403, "%s", f"Sign-in refused: {why}.")

    def header_values(self, handler, name) -> list[str]:
        """Every value of header ``name`` as the text the front proxy sent (UTF-8); 403 if not UTF-8.

        tornado decodes header bytes as latin-1, so ``value.encode('latin-1')`` gives back the
        bytes on the wire. A character above U+00FF cannot come from that decoding: refused too.
        """
        values = []
        for value in handler.request.headers.get_list(name):
            try:
                values.append(value.encode("latin-1").decode("utf-8"))
            except UnicodeError:
                self._refuse(handler, f"the front proxy sent a {name} header that is not valid UTF-8")
        return values

    def user_from_header(self, handler) -> str:
        values = self.header_values(handler, self.header_name)
        if not values:
            self._refuse(handler, f"the front proxy sent no {self.header_name} header; sign in through the SSO front end")
        if len(values) > 1:
            self._refuse(handler, f"the front proxy sent {self.header_name} more than once")
        raw = values[0].strip()
        limit = self.max_username_length
        if len(raw) > limit:
            self._refuse(handler, f"the user name from the front proxy is {len(raw)} characters long; this hub "
                                  f"accepts at most {limit} ({self._trait_name('max_username_length')})")
        try:
            return map_username(
                raw,
                strip_realm=self.strip_realm,
                accepted_realms=self.accepted_realms,
                extract_regex=re.compile(self.username_extract_pattern) if self.username_extract_pattern else None,
                lowercase=self.lowercase_username,
            )
        except MappingError as e:
            self._refuse(handler, f"{e}; ask the hub's administrators if you think this is wrong")

    def normalize_username(self, username):
        if self.lowercase_username:
            return super().normalize_username(username)
        return self.username_map.get(username, username)

    def groups_from_headers(self, handler) -> list[str]:
        if not self.groups_header:
            return []
        groups = parse_groups(
            self.header_values(handler, self.groups_header),
            separator=self.groups_separator,
            group_map=self.group_map,
            drop_unmapped=self.drop_unmapped_groups,
        )
        if len(groups) > self.max_groups:
            self._refuse(handler, f"the front proxy sent {len(groups)} groups; this hub accepts at most "
                                  f"{self.max_groups} ({self._trait_name('max_groups')})")
        for group in groups:
            if len(group) > self.max_group_length:
                self._refuse(handler, f"the group {brief(group)} is {len(group)} characters long; this hub accepts "
                                      f"at most {self.max_group_length} ({self._trait_name('max_group_length')})")
        return groups

    def admin_from_groups(self, name, groups):
        """True if in admin_groups or admin_users; False when admin_groups is set (admin follows the SSO)."""
        if self.admin_groups and set(groups) & self.admin_groups:
            return True
        if name in self.admin_users:
            return True
        return False if self.admin_groups else None

    def check_allowed(self, username, authentication=None):
        groups = ((authentication or {}).get("auth_state") or {}).get("groups") or []
        if self.allowed_remote_groups and set(groups) & self.allowed_remote_groups:
            return True
        return super().check_allowed(username, authentication)

    async def authenticate(self, handler, data=None):
        self.check_request_trusted(handler)
        name = self.user_from_header(handler)
        normalized = self.normalize_username(name)
        if len(normalized) > self.max_username_length:
            self._refuse(handler, f"the user name {brief(normalized)} is {len(normalized)} characters long; this hub "
                                  f"accepts at most {self.max_username_length} ({self._trait_name('max_username_length')})")
        if not self.validate_username(normalized):
            self._refuse(handler, f"{brief(normalized)} is not a user name this hub accepts (Authenticator.username_pattern)")
        self.check_username_usable(handler, normalized)
        groups = self.groups_from_headers(handler)
        kept = {}
        for h in self.auth_state_headers:
            values = self.header_values(handler, h)
            if values:
                kept[h] = ",".join(values)  # as tornado's headers.get() joins a repeated header
        auth_state = {
            "remote_user": self.header_values(handler, self.header_name)[0],
            "groups": groups,
            "headers": kept,
        }
        model = {"name": name, "admin": self.admin_from_groups(normalized, groups), "auth_state": auth_state}
        if self.manage_groups:
            model["groups"] = groups
        return model

    def check_username_usable(self, handler, name):
        """Hook for subclasses (the Local variant checks the system account)."""

    def get_handlers(self, app):
        # in place of the hub's ("/login", LoginHandler): the same page, the secret header removed first
        return [("/login", RemoteUserLoginHandler), ("/logout", RemoteUserLogoutHandler)]


class RemoteUserLocalAuthenticator(LocalAuthenticator, RemoteUserAuthenticator):
    """RemoteUserAuthenticator for hubs that spawn as system users (batch jobs run as the user).

    A user with a system account logs in whatever its name looks like (the account
    proves the name works). Without one: with `LocalAuthenticator.create_system_users
    = True` the account is created at login, once the hub's own checks have passed,
    and a name `add_user_cmd` would refuse (`system_username_pattern`) or a failing
    `add_user_cmd` gives a 403 with the reason; otherwise a clear 403, instead of a
    server error at login or spawn time.
    """

    system_username_pattern = Unicode(
        DEBIAN_NAME_REGEX,
        config=True,
        help=f"""Regex a name must match (whole) for its system account to be created at login
        (`create_system_users`). Default `{DEBIAN_NAME_REGEX}`: Debian adduser's default
        NAME_REGEX, what the default `add_user_cmd` (`adduser`) accepts. Change both together:
        e.g. with `--allow-bad-names` in `add_user_cmd`, or a NAME_REGEX of your own in
        /etc/adduser.conf. Names longer than 32 bytes, all digits, starting with `-+~` or
        containing `:,/` or whitespace are refused whatever this says.""",
    )

    @validate("system_username_pattern")
    def _valid_system_pattern(self, proposal):
        try:
            re.compile(proposal["value"])
        except re.error as e:
            raise TraitError(
                f"{self._trait_name('system_username_pattern')}: bad regex {proposal['value']!r}: {e}"
            ) from None
        return proposal["value"]

    def _account_exists(self, name) -> bool:
        try:
            self._getpwnam(name)
        except (KeyError, ValueError):
            return False
        return True

    def check_username_usable(self, handler, name):
        if self._account_exists(name):
            return
        if not self.create_system_users:
            self._refuse(handler, f"there is no system account {brief(name)} on this hub; ask the administrators to create it")
        pattern = self.system_username_pattern
        problem = posix_name_problem(name, None if pattern == DEBIAN_NAME_REGEX else re.compile(pattern))
        if problem:
            self._refuse(handler, f"{problem}, so no account can be created for it; ask the hub's administrators")

    async def get_authenticated_user(self, handler, data):
        """The hub's checks, then create the missing system account (create_system_users).

        Here rather than in the hub's add_user (which runs it only for a user new to the
        hub's database, and whose failure is a 500 that leaves the user in the database
        without an account): a failure is a 403 with adduser's reason, and the next
        login tries again.
        """
        model = await super().get_authenticated_user(handler, data)
        if model is None or not self.create_system_users:
            return model
        name = model["name"]  # post_auth_hook may have changed it: check again
        if self._account_exists(name):
            return model
        self.check_username_usable(handler, name)
        try:
            self.add_system_user(SimpleNamespace(name=name))
        except (RuntimeError, OSError) as e:
            self.log.error("Creating the system account for %s failed: %s", brief(name), e)
            reason = " ".join(str(e).split())
            self._refuse(handler, f"the system account {brief(name)} could not be created ({reason[:300]}); "
                                  "ask the hub's administrators")
        return model
