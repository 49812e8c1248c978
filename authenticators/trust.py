"""Did this request come through the front proxy? Pure helpers, tested as tables.

Which address is checked, and why
---------------------------------
The path is ``client -> front proxy (Apache) -> configurable-http-proxy (CHP) -> hub``.

* The TCP peer of the hub's connection is CHP itself (loopback on one host), so it
  says nothing about the client.
* ``request.remote_ip`` is what tornado derives (the hub runs ``xheaders=True``):
  it honours a client-sent ``X-Real-Ip`` and walks ``X-Forwarded-For`` entries
  that the client may have written. It is not evidence.
* CHP (``xfwd``) *appends* the address of whoever connected to it to
  ``X-Forwarded-For``. So when the hub's TCP peer is CHP, the **last** entry is
  the one address in the header a client cannot choose: the front proxy if the
  request went through it, the client itself if it went to CHP directly.

So: if the TCP peer is in ``hub_proxy_networks`` (where CHP connects from), the
checked address is the last ``X-Forwarded-For`` entry (none at all means CHP did
not relay it: untrusted). Otherwise the request reached the hub port directly
and the checked address is the TCP peer; its ``X-Forwarded-For`` is ignored.

Limit: a local user who can open the hub port from inside ``hub_proxy_networks``
can write that last entry. On a shared host use the shared secret (or both).
"""

from __future__ import annotations

import hmac
import ipaddress

__all__ = ["parse_networks", "forwarded_client", "address_in", "secret_matches", "parse_fib_trie_local",
           "parse_if_inet6", "interface_addresses"]


def parse_networks(values) -> list:
    """CIDR strings -> ip_network objects; ValueError names the bad entry."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"{value!r} is not an IP network in CIDR form (e.g. 10.0.0.5/32): {e}") from None
    return nets


def _address(value):
    if value is None:
        return None
    value = str(value).strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":")[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    # IPv4-mapped IPv6 (::ffff:127.0.0.1, as node reports on dual-stack sockets)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr


def forwarded_client(peer, forwarded_for_values, hub_proxy_networks):
    """The address to check against the trusted networks, or (None, why).

    ``peer``: the hub connection's TCP peer address; ``forwarded_for_values``:
    every ``X-Forwarded-For`` header line as received; ``hub_proxy_networks``:
    parsed networks that CHP connects to the hub from.
    Returns ``(ipaddress or None, explanation)``.
    """
    peer_addr = _address(peer)
    if peer_addr is None:
        return None, f"unknown peer address {peer!r}"
    if not address_in(peer_addr, hub_proxy_networks):
        return peer_addr, f"direct connection from {peer_addr}"
    entries = [e.strip() for v in forwarded_for_values or () for e in v.split(",") if e.strip()]
    if not entries:
        return None, f"no X-Forwarded-For from the hub's proxy (peer {peer_addr})"
    last = _address(entries[-1])
    if last is None:
        return None, f"unparseable last X-Forwarded-For entry {entries[-1][:64]!r}"
    return last, f"via the hub's proxy from {last}"


def address_in(addr, networks) -> bool:
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret never matches."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


# ------------------------------------------------------------------ this host's own addresses
# Every address a local process can connect from (issue 21): every interface's addresses,
# not only the ones the host name resolves to. Read from the kernel's tables of the hub's own
# network namespace (no command, no network):
#   /proc/net/fib_trie   IPv4: the "/32 host LOCAL" leaves of the Local table
#   /proc/net/if_inet6   IPv6: one address per line (32 hex digits first)


def parse_fib_trie_local(text: str) -> set:
    """IPv4 addresses that /proc/net/fib_trie marks as this host's own ("/32 host LOCAL")."""
    found, last = set(), None
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif "/32 host LOCAL" in stripped and last:
            try:
                found.add(ipaddress.IPv4Address(last))
            except ValueError:
                pass
    return found


def parse_if_inet6(text: str) -> set:
    """IPv6 addresses listed in /proc/net/if_inet6."""
    found = set()
    for line in (text or "").splitlines():
        words = line.split()
        if words and len(words[0]) == 32:
            try:
                found.add(ipaddress.IPv6Address(int(words[0], 16)))
            except ValueError:
                pass
    return found


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def interface_addresses(fib_trie="/proc/net/fib_trie", if_inet6="/proc/net/if_inet6") -> tuple[set, list]:
    """(every IPv4 and IPv6 address of this host's interfaces, the tables that could not be read)."""
    v4, v6 = _read(fib_trie), _read(if_inet6)
    missing = [p for p, t in ((fib_trie, v4), (if_inet6, v6)) if t is None]
    return parse_fib_trie_local(v4) | parse_if_inet6(v6), missing
