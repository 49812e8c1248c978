"""Submit hosts for :mod:`batchspawner.commands.ssh`: parsing, failure classification, health.

Kept apart from the runner so the bookkeeping (which host failed when, which
one last worked) can be read and tested on its own.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Sequence

__all__ = ["SubmitHost", "HostHealth", "HEALTH", "classify_ssh_failure"]

# ssh's own messages (exit 255) when it never got to run the command: safe to try another host.
CONNECT_FAILED_RE = re.compile(
    r"ssh: connect to host|Could not resolve hostname|Connection refused|Connection timed out"
    r"|Operation timed out|No route to host|Network is unreachable"
    r"|Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|kex_exchange_identification"
    r"|banner exchange|Connection (?:closed|reset) by \S+ port \d+"
    r"|mux_client_request_session|Session open refused",
    re.I,
)
# ssh's messages when the host answered but refused *this user's* login (their key, their
# account): the command never ran, but the host is fine for everyone else.
AUTH_FAILED_RE = re.compile(
    r"Permission denied \(|Too many authentication failures|Authentication failed"
    r"|no more authentication methods|Account expired|account has expired",
    re.I,
)
# ssh's messages when the connection broke after the command may have started: not retried.
CONNECTION_LOST_RE = re.compile(
    r"closed by remote host|client_loop: send disconnect|Broken pipe|Timeout, server \S+ not responding"
    r"|Connection reset by peer|packet_write_wait",
    re.I,
)

HOST_RE = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*))"
    r"(?::(?P<port>\d{1,5}))?$"
)


@dataclass(frozen=True)
class SubmitHost:
    """One submit host: ``login1``, ``login1:2222``, ``bob@login1``, ``[::1]:2222``."""

    host: str
    port: int | None = None
    user: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SubmitHost":
        match = HOST_RE.match(str(text).strip())
        if not match:
            raise ValueError(f"{text!r} is not a host, host:port, user@host or [ipv6]:port")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"{text!r}: port out of range")
        return cls(match["v6"] or match["name"], port, match["user"])

    @property
    def address(self) -> str:
        """Key for health bookkeeping: the network endpoint, without the user."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host

    def __str__(self):
        return f"{self.user}@{self.address}" if self.user else self.address


class HostHealth:
    """Which submit hosts failed to connect recently, and which one last worked.

    One instance is shared by every runner of the hub process (``HEALTH``), so
    when a login node goes down all users' spawners skip it for the cool-down. Only
    failures of the host count: one user's refused login (``"auth"``) never benches it.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.bad_until: dict[str, float] = {}
        self.last_good: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def order(self, hosts: Sequence[SubmitHost]) -> list[SubmitHost]:
        """Hosts to try, in order.

        Normally the last host that worked comes first, then the other healthy ones in list
        order, then those still cooling down (soonest back first: when all failed recently,
        each is still tried rather than giving up). Once a failed host's cool-down is over,
        list order rules again, so a recovered first host is taken back into use.
        """
        now = self.clock()
        key = tuple(h.address for h in hosts)
        with self._lock:
            last = self.last_good.get(key)
            bad = dict(self.bad_until)
        healthy = [h for h in hosts if bad.get(h.address, 0) <= now]
        cooling = sorted((h for h in hosts if bad.get(h.address, 0) > now), key=lambda h: bad[h.address])
        due_for_retry = any(h.address in bad for h in healthy)
        if not due_for_retry:
            healthy.sort(key=lambda h: h.address != last)  # stable: list order otherwise
        return healthy + cooling

    def failed(self, host: SubmitHost, cooldown: float):
        with self._lock:
            self.bad_until[host.address] = self.clock() + cooldown

    def succeeded(self, hosts: Sequence[SubmitHost], host: SubmitHost):
        with self._lock:
            self.bad_until.pop(host.address, None)
            self.last_good[tuple(h.address for h in hosts)] = host.address


HEALTH = HostHealth()


def classify_ssh_failure(returncode: int, stderr: str) -> str:
    """``"auth"`` (this user's login was refused: never ran, the host is fine), ``"connect"``
    (never ran, the host is unreachable: try elsewhere, cool it down), ``"lost"`` (may have run)
    or ``""`` (the command's own exit)."""
    if returncode != 255:
        return ""
    if AUTH_FAILED_RE.search(stderr or ""):
        return "auth"
    if CONNECT_FAILED_RE.search(stderr or ""):
        return "connect"
    if CONNECTION_LOST_RE.search(stderr or ""):
        return "lost"
    return ""
