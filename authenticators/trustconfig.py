"""The hub's startup checks of RemoteUserAuthenticator's trust settings: fail closed (issue 21).

A configuration where a local process could send the SSO header without going through the front
proxy (the hub or the proxy reachable on an address a local user can connect from, no
``proxy_secret``) refuses to start, naming the setting. :class:`TrustConfigChecks` is mixed into
:class:`~authenticators.remote_user.RemoteUserAuthenticator`; :func:`local_addresses` lists where
a local user can connect from.
"""

from __future__ import annotations

import ipaddress
import socket

from traitlets import Any, HasTraits

from .trust import interface_addresses, parse_networks

SECRET_ENV = "REMOTE_USER_PROXY_SECRET"
MIN_SECRET = 16
_LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


def local_addresses() -> tuple[list, list]:
    """(every address of this host, what could not be read): where a local user can connect from.

    Loopback, every interface's IPv4 and IPv6 addresses (the kernel's tables, see
    ``trust.interface_addresses``) and whatever the host name resolves to."""
    found, missing = interface_addresses()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    for info in infos:
        try:
            found.add(ipaddress.ip_address(info[4][0].split("%")[0]))
        except ValueError:
            continue
    return sorted(found, key=lambda a: (a.version, a)), missing


def _local_networks(addresses) -> list:
    nets = list(_LOOPBACK)
    for addr in addresses:
        addr = ipaddress.ip_address(addr)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        nets.append(ipaddress.ip_network(addr))
    return nets


class TrustConfigChecks(HasTraits):
    """Part of :class:`~authenticators.remote_user.RemoteUserAuthenticator` (see the module's docstring)."""

    def check_trust_config(self):
        """At startup: refuse a configuration that trusts the header from anyone."""
        secret = self.proxy_secret
        if secret and len(secret) < MIN_SECRET:
            raise ValueError(
                f"{self._trait_name('proxy_secret')} is {len(secret)} characters; use at least {MIN_SECRET}"
                f" (e.g. `openssl rand -hex 32`, passed as ${SECRET_ENV})"
            )
        if not secret and not self.trusted_proxy_networks and not self.unsafe_trust_any_client:
            raise ValueError(
                f"{self._trait_name('header_name')} would be trusted from any client. Set "
                f"{self._trait_name('proxy_secret')} (or ${SECRET_ENV}) and/or "
                f"{self._trait_name('trusted_proxy_networks')}; or, only if the hub is unreachable except "
                f"through the authenticating proxy, {self._trait_name('unsafe_trust_any_client')} = True"
            )
        secret_header = self.proxy_secret_header.lower()
        for trait in ("header_name", "groups_header"):
            if getattr(self, trait).lower() == secret_header:
                raise ValueError(
                    f"{self._trait_name(trait)} and {self._trait_name('proxy_secret_header')} are both "
                    f"{self.proxy_secret_header!r}; the secret would become a user name or group"
                )
        shared = self.local_users_can_send_trusted_address() if not secret and self.trusted_proxy_networks else ""
        if shared and not self.unsafe_trust_local_users:
            raise ValueError(
                f"{self._trait_name('proxy_secret')} (or ${SECRET_ENV}) is not set, and {shared}: any local "
                f"user of this host could send {self.header_name} and log in as anyone, admin included. Set "
                f"{self._trait_name('proxy_secret')} (the same value the front proxy adds as "
                f"{self.proxy_secret_header}, e.g. `openssl rand -hex 32` in ${SECRET_ENV}); or, only if no "
                f"untrusted user can log in to this host, {self._trait_name('unsafe_trust_local_users')} = True"
            )
        if shared:
            self.log.warning(
                "%s is on: %s, so any local user of this host can log in as anyone by sending %s",
                self._trait_name("unsafe_trust_local_users"), shared, self.header_name,
            )
        if self.unsafe_trust_any_client and not secret and not self.trusted_proxy_networks:
            self.log.warning(
                "%s is on: any client that reaches the hub can log in as anyone by sending %s",
                self._trait_name("unsafe_trust_any_client"), self.header_name,
            )
        for warning in self.risky_config_warnings():
            self.log.warning("%s", warning)

    # (addresses, unreadable tables) of this host; a callable so tests can inject a host's addresses
    local_address_lister = Any(local_addresses, help="Returns (this host's addresses, unreadable tables).")

    def local_users_can_send_trusted_address(self) -> str:
        """Why local users of this host could pass the address check ("" when they cannot).

        Local users connect from loopback and from every address of this host's interfaces
        (IPv4 and IPv6, not only those the host name resolves to). They pass it when
        `trusted_proxy_networks` includes one of those, or when `hub_proxy_networks` does
        (from there the hub believes the last X-Forwarded-For entry, which they write).
        When the host's addresses cannot be listed, it is assumed they can (fail closed).
        """
        addresses, missing = self.local_address_lister()
        if missing:
            return (f"this host's addresses could not be listed ({', '.join(map(str, missing))} unreadable), so "
                    f"{self._trait_name('trusted_proxy_networks')} may include one of them")
        local = _local_networks(addresses)
        trusted = parse_networks(self.trusted_proxy_networks)
        hub_proxy = parse_networks(self.hub_proxy_networks)

        def shared(networks):
            for n in networks:
                for lo in local:
                    if n.version == lo.version and n.overlaps(lo):
                        return n, lo.network_address
            return None

        hit = shared(trusted)
        if hit:
            return (f"{self._trait_name('trusted_proxy_networks')} entry {hit[0]} includes {hit[1]}, loopback or "
                    "an address of this host's interfaces (local users connect from it)")
        hit = shared(hub_proxy)
        if hit:
            return (
                f"{self._trait_name('hub_proxy_networks')} entry {hit[0]} includes {hit[1]}, loopback or an "
                "address of this host's interfaces (a local user can connect to the hub port from there and "
                "write a trusted address into X-Forwarded-For)"
            )
        return ""

    def risky_config_warnings(self) -> list[str]:
        """Settings that work but are probably not what the admin wants (logged at startup)."""
        warnings = []
        if self.strip_realm and not self.accepted_realms and not self.username_extract_pattern:
            warnings.append(
                f"{self._trait_name('strip_realm')} is on without {self._trait_name('accepted_realms')}: "
                "alice@any-other-realm also becomes hub user alice. List the realms your SSO vouches for."
            )
        if self.manage_groups and not self.groups_header:
            warnings.append(
                f"Authenticator.manage_groups is on but {self._trait_name('groups_header')} is empty: every "
                "login sets the user's hub groups to none (removing groups an admin gave them)."
            )
        if any(h.lower() == self.proxy_secret_header.lower() for h in self.auth_state_headers):
            warnings.append(
                f"{self._trait_name('auth_state_headers')} lists {self.proxy_secret_header}, the "
                f"{self._trait_name('proxy_secret_header')}: the secret is removed from the request "
                "before auth_state is built, so it is never stored; remove it from the list."
            )
        return warnings
