"""Where the job's server is and whether it is the job's own: node address, port report, proof, tunnel.

:class:`JobAddress` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. The hub routes only to a
numeric address of the node the scheduler named, never to its own loopback (unless ``local_executor``),
never to an address another server of this hub holds, and (``server_proof``) only to a server that proves
it holds this server's token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import weakref

from tornado import web

from batchspawner.job import proof as _proof
from batchspawner.core.hosts import usable_host
from batchspawner.commands.tunnel import SshTunnel, TunnelError
from batchspawner.core.errors import SpawnFailed


# issue 21 (8): every spawner that reported a port, to refuse a report of another server's address
_REPORTED = weakref.WeakSet()

# (host, family) -> (address, monotonic expiry) of recent successful lookups (connect_address)
ADDRESS_TTL = 60.0
_ADDRESSES: dict = {}


class JobAddress:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    @property
    def tunnel(self) -> SshTunnel | None:
        """The spawner's ssh tunnel (batchspawner/commands/tunnel.py), or None without tunnel_login_host."""
        if not self.tunnel_login_host:
            return None
        if getattr(self, "_tunnel", None) is None:
            self._tunnel = SshTunnel(parent=self, login_host=self.tunnel_login_host, log=self.log)
        return self._tunnel

    def _job_endpoint(self):
        """(numeric node address, port) of this spawner's job server, or None."""
        if not self.job_id:
            return None
        claimed = getattr(self, "_endpoint", None)  # (job id, address, port) set by this hub's start()
        if claimed:
            if claimed[0] == self.job_id:
                return claimed[1:]
            self._endpoint = None  # an earlier job's
        if self.tunnel is not None and self.tunnel.remote_port:
            return (_proof.normalize(self.tunnel.remote_host), self.tunnel.remote_port)
        try:
            server = self.server
            if server is not None and server.port and self.tunnel is None:
                return (_proof.normalize(server.ip), int(server.port))
        except Exception:  # no database row (tests, a half-built spawner)
            pass
        return None

    def _claim_address(self, address, port):
        """Refuse a reported address and port that another running or starting server of this hub uses."""
        endpoint = (_proof.normalize(address), int(port))
        for other in list(_REPORTED):
            if other is self or other._job_endpoint() != endpoint:
                continue
            self.log.error(
                "%s: job %s reported port %d on %s, which is already the address of %s's server (job %s); "
                "refused: a job may only report its own server's port",
                self._log_name, self.job_id, port, endpoint[0], getattr(other, "_log_name", "another"), other.job_id,
            )
            raise SpawnFailed(
                f"Your job {self.job_id} reported a port on {endpoint[0]} that another server of this hub "
                "already uses, so the hub will not connect you there. If you did not change the job's "
                "start command, please try again and tell your site's support."
            )
        self._endpoint = (self.job_id, *endpoint)
        _REPORTED.add(self)

    async def _prove_server(self, ip, port, expect, restored=False):
        """Issue 21: the server answering on ip:port proves it holds this server's token
        (batchspawner/job/proof.py), when ``server_proof`` asks for it."""
        mode = self.server_proof.lower()
        claimed = getattr(self, "_proof_claimed", False) or restored
        if mode == "off" or (mode == "auto" and not claimed):
            if mode == "auto":
                self.log.warning(
                    "%s: job %s's server on %s:%s is not verified: its wrapper does not offer the "
                    "batchspawner proof (set server_proof = 'required' once every job runs "
                    "batchspawner-singleuser with Jupyter Server)", self._log_name, self.job_id, expect[0], expect[1])
            return
        if getattr(self, "internal_ssl", False):
            raise SpawnFailed(
                "The hub cannot check your server (server_proof with internal_ssl is not supported). "
                "Tell your site's support: set server_proof to 'auto' or 'off' with internal_ssl."
            )
        base_url = getattr(self.server, "base_url", None) or self.user.url
        try:
            await _proof.probe(ip, port, base_url, self.api_token or "", expect)
        except _proof.ProofError as e:
            self.log.error("%s: job %s: the server on %s:%s could not prove it is this job's server: %s",
                           self._log_name, self.job_id, expect[0], expect[1], e)
            raise SpawnFailed(
                f"The hub could not prove that the server answering on the port your job {self.job_id} "
                f"reported is yours ({e}), so it does not connect you to it. Please try again; if it keeps "
                "happening, tell your site's support."
            ) from None
        if self.tunnel is not None:
            self.tunnel.proved = True
        self.log.info("%s: job %s's server proved its token on %s:%s", self._log_name, self.job_id, *expect)

    async def get_url(self):
        """JupyterHub asks this after a hub restart: a tunnel may have had to move to another
        local port (its old one taken meanwhile), and the route must follow it."""
        task = self._rerun_task
        if task is not None and getattr(self, "_adopting", False):
            # issue 24: JupyterHub asks this while it checks a restored server, then waits
            # http_timeout for it to answer: let that check wait for the adopted start instead
            await asyncio.wait({task})
        url = await super().get_url()
        if self.tunnel is None or not self.tunnel.is_open or not self.tunnel.local_port:
            return url
        from urllib.parse import urlparse, urlunparse

        parts = urlparse(url)
        host = self.tunnel.local_host
        return urlunparse(parts._replace(netloc=f"{host}:{self.tunnel.local_port}"))

    async def _reopen_tunnel(self):
        """poll(): keep the forward; after a move, prove again and move the route. False: end the server."""
        tunnel = self.tunnel
        was_open = tunnel.is_open
        if not await tunnel.reopen():
            return False
        if was_open:
            return True
        restored = tunnel.get_state().get("proved") or getattr(self, "_proof_claimed", False)
        if not tunnel.proved and (restored or self.server_proof.lower() == "required"):
            try:
                await self._prove_server(tunnel.local_host, tunnel.local_port,
                                         (tunnel.remote_host, tunnel.remote_port), restored=True)
            except SpawnFailed:
                return False
            tunnel.proved = True
        self._save_state_now()
        if tunnel.moved:
            await self._move_route()
        return True

    async def _move_route(self):
        """While the hub runs: point the server's address and the proxy route at the new local port.
        (At a hub start JupyterHub does this itself from get_url() and its route check.)"""
        try:
            server = self.server
            if server is None or server.port == self.tunnel.local_port:
                return
            server.ip, server.port = self.tunnel.local_host, self.tunnel.local_port
            if getattr(self, "db", None) is not None:
                self.db.commit()
            proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
            if proxy is not None and self.ready:
                await proxy.add_user(self.user, self.name)
        except Exception:
            self.log.exception("%s: could not move the route to the tunnel's new port", self._log_name)

    async def _open_tunnel(self, node, port):
        try:
            local = await self.tunnel.open(node, port)
        except TunnelError as e:
            raise SpawnFailed(
                f"The hub could not reach your server on {node} through the login node "
                f"{self.tunnel_login_host}: {e}. Ask your site's support to check the tunnel."
            ) from e
        self._save_state_now()  # a hub restart from here reopens the tunnel on the same port
        self._event(80, f"Connected to {node}:{port} through {self.tunnel_login_host}.")
        return local

    def resolve_host(self, host):
        """The address the hub connects to; ``state_exechost_exp`` already mapped names.

        No host is never loopback, unless the admin declared ``local_executor``.
        """
        host = usable_host(host)
        if host:
            return host
        if self.local_executor:
            return "127.0.0.1"
        raise SpawnFailed(
            f"The batch system did not say on which host job {self.job_id} runs, so the hub cannot "
            "connect to it. Please try again; if it keeps happening, tell your site's support."
        )

    async def connect_address(self, host):
        """``host`` as a literal address in the family the server binds (``ip``).

        The server binds one family (IPv4 for the default ``0.0.0.0``). A host name may
        resolve to the other one first (``localhost`` -> ``::1``), where another user on the
        node can listen on the same port number: the hub then connects, and the proxy routes,
        only to the address of the server's own family.
        """
        bind = self._bind_ip if self._bind_ip is not None else self.ip  # self.ip: the node's, after a start
        family = socket.AF_INET6 if ":" in (bind or "") else socket.AF_INET
        try:
            if ipaddress.ip_address(host).version == (6 if family == socket.AF_INET6 else 4):
                return host
        except ValueError:
            pass
        cached = _ADDRESSES.get((host, family))
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM)
        except OSError as e:
            infos, reason = [], getattr(e, "strerror", None) or str(e)
        else:
            reason = "no address"
        if infos:
            # a storm of spawns on a few nodes resolves each node once a minute (a resolver thread
            # per spawn otherwise); only successful answers are kept
            if len(_ADDRESSES) > 10_000:
                _ADDRESSES.clear()
            _ADDRESSES[(host, family)] = (infos[0][4][0], time.monotonic() + ADDRESS_TTL)
        if not infos:
            name = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise SpawnFailed(
                f"The job {self.job_id} runs on {host}, but the hub cannot find an {name} address for "
                f"that host ({reason}). Ask your site's support to check the node's name resolution."
            )
        return infos[0][4][0]

    def report_port(self, port: int, proof: bool = False):
        """Called by the hub's API handler when the job reports its port (``proof``: the wrapper
        says its server answers the hub's proof, see server_proof)."""
        fut = self._port_future
        if fut is None or fut.done():
            raise web.HTTPError(403, "This server is not waiting for a port (already reported, or not starting).")
        self._proof_claimed = bool(proof)
        fut.set_result(port)
        self.log.info("%s: job %s reported port %d", self._log_name, self.job_id, port)
