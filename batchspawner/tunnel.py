"""An ssh tunnel from the hub to a job's server, through a login node.

Some sites let the hub reach only a login node, never the compute nodes. With
``c.SlurmSpawner.tunnel_login_host = "login1"`` (any batch spawner), the spawner owns
an :class:`SshTunnel`: once the job reports its port, the tunnel runs

    ssh -N -o ExitOnForwardFailure=yes -L 127.0.0.1:LOCAL:NODE:PORT login1

(as the hub's user, with ``c.SshTunnel.*`` options) and the hub then talks to
``127.0.0.1:LOCAL``. The tunnel is

- opened in ``start()`` after the job reported its port and before the hub's HTTP check;
- closed when the server stops or its job is seen ended;
- reopened on the same local port after a hub restart (the hub's proxy route and its saved
  server URL point there): the spawner keeps ``{node, port, local_port}`` in its state and
  the first ``poll()`` of a running job reopens it, and so does every later poll if ssh died.

The local end is bound to 127.0.0.1 only. Anyone on the hub host who can connect there
reaches the server's login page, exactly as on the node: the single-user server checks the
hub's OAuth token itself.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import time

from traitlets import Float, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .runner import first_line


def _free_local_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _die_with_parent():
    """In the ssh child: SIGTERM when the hub process ends (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class TunnelError(RuntimeError):
    pass


class SshTunnel(LoggingConfigurable):
    """One ``ssh -N -L`` process: a local port on the hub forwarded to node:port via a login node."""

    login_host = Unicode(
        "",
        help="""The login node ssh connects to (``host``, ``user@host`` or ``host:port``); empty: no tunnel.

        Set through the spawner's ``tunnel_login_host``. The connection is made as the hub's
        own user with its keys (``ssh_options`` can name another identity file); the login
        node must allow TCP forwarding to the compute nodes.""",
    ).tag(config=True)

    ssh_command = Unicode("ssh", help="The ssh client (split with shell rules).").tag(config=True)

    ssh_options = List(
        Unicode(),
        ["BatchMode=yes", "ServerAliveInterval=15", "ServerAliveCountMax=3", "ConnectTimeout=10"],
        help="""``-o`` options for the tunnel's ssh, e.g. ``IdentityFile=/etc/jupyterhub/tunnel_key``,
        ``UserKnownHostsFile=...``. ``ExitOnForwardFailure=yes`` is always added, so a local port
        that cannot be bound fails the tunnel at once instead of leaving a useless ssh.""",
    ).tag(config=True)

    local_host = Unicode("127.0.0.1", help="Address of the tunnel's local end on the hub host.").tag(config=True)

    open_timeout = Float(
        20.0, help="Seconds ssh may take to log in and listen on the local port before the spawn fails."
    ).tag(config=True)

    @validate("ssh_options")
    def _check_options(self, proposal):
        for option in proposal["value"]:
            if "=" not in option or any(c in option for c in "\n\r\0"):
                raise ValueError(f"SshTunnel.ssh_options: {option!r} is not a Name=value ssh option")
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.remote_host = ""
        self.remote_port = 0
        self.local_port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ state
    def get_state(self) -> dict:
        if not self.remote_port:
            return {}
        return {"node": self.remote_host, "port": self.remote_port, "local_port": self.local_port}

    def load_state(self, state: dict):
        if isinstance(state, dict) and state.get("port") and state.get("local_port"):
            self.remote_host = str(state.get("node", ""))
            self.remote_port = int(state["port"])
            self.local_port = int(state["local_port"])

    @property
    def is_open(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    # ------------------------------------------------------------ ssh
    def argv(self) -> list[str]:
        host, _, port = self.login_host.rpartition(":") if self.login_host.count(":") == 1 else ("", "", "")
        target = host or self.login_host
        words = shlex.split(self.ssh_command) + ["-N", "-T", "-o", "ExitOnForwardFailure=yes"]
        for option in self.ssh_options:
            words += ["-o", option]
        if port:
            words += ["-p", port]
        forward = f"{self.local_host}:{self.local_port}:{self.remote_host}:{self.remote_port}"
        return [*words, "-L", forward, "--", target]

    async def open(self, node: str, port: int) -> tuple[str, int]:
        """Forward a new local port to ``node:port``; returns the (ip, port) the hub should use."""
        async with self._lock:
            await self._close()
            self.remote_host, self.remote_port = node, int(port)
            self.local_port = _free_local_port(self.local_host)
            await self._start()
            return self.local_host, self.local_port

    async def reopen(self) -> bool:
        """After a hub restart (or if ssh died): the saved forward again, on the same local port."""
        if not self.remote_port or self.is_open:
            return self.is_open
        async with self._lock:
            if self.is_open:
                return True
            try:
                await self._start()
            except TunnelError as e:
                self.log.error("ssh tunnel to %s:%s via %s could not be reopened: %s",
                               self.remote_host, self.remote_port, self.login_host, e)
                return False
            self.log.info("ssh tunnel to %s:%s via %s reopened on %s:%s",
                          self.remote_host, self.remote_port, self.login_host, self.local_host, self.local_port)
            return True

    async def _start(self):
        if not _port_free(self.local_host, self.local_port):
            raise TunnelError(f"local port {self.local_host}:{self.local_port} is already in use")
        argv = self.argv()
        self.log.info("opening ssh tunnel: %s", shlex.join(argv))
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a hub's Ctrl-C must not kill it before stop() does
            preexec_fn=_die_with_parent,  # ...but a hub that ends takes its tunnels along (restart reopens)
            env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "USER", "LANG", "SSH_AUTH_SOCK")},
        )
        deadline = time.monotonic() + self.open_timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                err = (await self._proc.stderr.read()).decode(errors="replace")
                self._proc = None
                raise TunnelError(f"ssh to {self.login_host} ended: {first_line(err) or 'no message'}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.local_host, self.local_port), 1)
                writer.close()
                return
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
        await self._close()
        raise TunnelError(f"ssh to {self.login_host} did not listen on the local port within {self.open_timeout:g} s")

    async def close(self):
        async with self._lock:
            await self._close()
            self.remote_host, self.remote_port, self.local_port = "", 0, 0

    async def _close(self):
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        self.log.info("ssh tunnel to %s:%s closed", self.remote_host, self.remote_port)
