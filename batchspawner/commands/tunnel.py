"""An ssh tunnel from the hub to a job's server, through a login node.

Some sites let the hub reach only a login node, never the compute nodes. With
``c.SlurmSpawner.tunnel_login_host = "login1"`` (any batch spawner), the spawner owns
an :class:`SshTunnel`: once the job reports its port, the hub

1. resolves the node's name itself to a *numeric* address of the family the server binds
   (``connect_address``: IPv4 for the default ``0.0.0.0``). The login node never resolves a
   name: it would try ``::1``/IPv6 first on a dual-stack node, where another user can listen
   on the same port number (issue 21);
2. binds a local TCP port itself (``127.0.0.1:LOCAL``) and hands that open socket to a relay
   process (batchspawner/commands/tunnelrelay.py), which runs

       ssh -N -o ExitOnForwardFailure=yes -L DIR/fwd.sock:ADDRESS:PORT login1

   (``[ADDRESS]`` for IPv6; as the hub's user, with ``c.SshTunnel.*`` options) and relays
   ``127.0.0.1:LOCAL`` to that unix socket. DIR is a 0700 directory of the hub's user. So the
   local port is held by the hub's own process from the moment it is chosen, and no other
   local user can ever bind or reach the forward behind it;
3. talks to ``127.0.0.1:LOCAL``; the spawner then has the server prove it holds its own token
   (batchspawner/job/proof.py) before the spawn counts as ready.

The relay outlives a hub restart: the first ``poll()`` of the running job *adopts* it after
checking in /proc that the saved pid is a relay of the hub's user that still holds the saved
local port. If it is gone (host reboot, killed with the hub's service), the spawner binds the
saved port again if it is free, or another one if someone took it meanwhile, and ``get_url()``
gives JupyterHub the new address, so the proxy route never points at a port the hub does not
hold. If no forward can be rebuilt, the spawner ends the server with a message in the log.

Anyone on the hub host can connect to ``127.0.0.1:LOCAL`` and reaches the server's login page,
exactly as on the node: the single-user server checks the hub's OAuth token itself.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time

from traitlets import Float, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from batchspawner.commands import tunnelrelay
from batchspawner.commands.runner import first_line
from batchspawner.job.listeners import listeners, socket_inodes

RELAY_MODULE = "batchspawner.commands.tunnelrelay"


def _bind(host: str, port: int) -> socket.socket | None:
    """A listening socket on host:port held by the hub (port 0: any free one); None if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # a port whose old connections are in TIME_WAIT can be bound again; a port another
        # process listens on cannot (Linux refuses SO_REUSEADDR over a LISTEN socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    return sock


def _alive(pid: int) -> bool:
    """A process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        return text[text.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def relay_holds(pid: int, host: str, port: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` is a tunnel relay of this user that holds the LISTEN socket host:port."""
    try:
        if os.stat(f"{proc}/{pid}").st_uid != os.getuid():
            return False
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            if RELAY_MODULE.encode() not in f.read().split(b"\0"):
                return False
    except OSError:
        return False
    held = socket_inodes(pid, proc)
    return any(
        inode in held and p == port and addr == host for inode, (p, addr) in listeners(pid, proc).items()
    )


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

    local_host = Unicode(
        "127.0.0.1",
        help="""Address of the tunnel's local end on the hub host (the proxy's route points there).""",
    ).tag(config=True)

    runtime_dir = Unicode(
        "",
        help="""Directory for the tunnels' private 0700 subdirectories (ssh's unix socket, its error
        output); empty: the system's temporary directory. Must be local and short (a unix socket
        path is limited to about 100 bytes).""",
    ).tag(config=True)

    open_timeout = Float(
        20.0, help="Seconds ssh may take to log in and forward before the spawn fails."
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
        self.pid = 0
        self.dir = ""
        self.proved = False  # the server proved its token through this forward (proof.py)
        self.moved = False  # the last reopen had to take another local port
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ state
    def get_state(self) -> dict:
        if not self.remote_port:
            return {}
        return {"node": self.remote_host, "port": self.remote_port, "local_port": self.local_port,
                "pid": self.pid, "dir": self.dir, "proved": self.proved}

    def load_state(self, state: dict):
        if isinstance(state, dict) and state.get("port") and state.get("local_port"):
            self.remote_host = str(state.get("node", ""))
            self.remote_port = int(state["port"])
            self.local_port = int(state["local_port"])
            self.pid = int(state.get("pid") or 0)
            self.dir = str(state.get("dir") or "")
            self.proved = bool(state.get("proved"))

    @property
    def is_open(self) -> bool:
        if self._proc is not None:
            return self._proc.returncode is None
        return bool(self.pid) and relay_holds(self.pid, self.local_host, self.local_port)

    # ------------------------------------------------------------ ssh
    def forward(self) -> str:
        """ssh's ``-L`` argument: the private unix socket to the numeric address and port."""
        host = f"[{self.remote_host}]" if ":" in self.remote_host else self.remote_host
        return f"{os.path.join(self.dir, tunnelrelay.SOCKET_NAME)}:{host}:{self.remote_port}"

    def argv(self) -> list[str]:
        host, _, port = self.login_host.rpartition(":") if self.login_host.count(":") == 1 else ("", "", "")
        target = host or self.login_host
        words = shlex.split(self.ssh_command) + ["-N", "-T", "-o", "ExitOnForwardFailure=yes",
                                                  "-o", "StreamLocalBindUnlink=yes"]
        for option in self.ssh_options:
            words += ["-o", option]
        if port:
            words += ["-p", port]
        return [*words, "-L", self.forward(), "--", target]

    async def open(self, address: str, port: int) -> tuple[str, int]:
        """Forward a new local port to ``address:port`` (numeric); returns the (ip, port) the hub uses."""
        async with self._lock:
            await self._close()
            self.remote_host, self.remote_port = address, int(port)
            self.proved = False
            sock = _bind(self.local_host, 0)
            if sock is None:
                raise TunnelError(f"cannot bind a local port on {self.local_host}")
            await self._start(sock)
            return self.local_host, self.local_port

    async def reopen(self) -> bool:
        """After a hub restart (or if the relay died): adopt the saved relay if it still holds the
        saved port; else bind the saved port again, or another one if it was taken meanwhile
        (``moved`` is then set: the server's URL and proxy route must follow, see get_url)."""
        if not self.remote_port:
            return False
        async with self._lock:
            if self.is_open:
                if self._proc is None and not getattr(self, "_adopted", False):
                    self._adopted = True
                    self.log.info("ssh tunnel to %s:%s via %s adopted: its relay (pid %s) still holds %s:%s",
                                  self.remote_host, self.remote_port, self.login_host, self.pid,
                                  self.local_host, self.local_port)
                return True
            self.moved = False
            old_port = self.local_port
            sock = _bind(self.local_host, old_port) or _bind(self.local_host, 0)
            if sock is None:
                self.log.error("ssh tunnel to %s:%s: cannot bind a local port on %s",
                               self.remote_host, self.remote_port, self.local_host)
                return False
            self._proc, self.pid = None, 0
            self._remove_dir()
            try:
                await self._start(sock)
            except TunnelError as e:
                self.log.error("ssh tunnel to %s:%s via %s could not be reopened: %s",
                               self.remote_host, self.remote_port, self.login_host, e)
                return False
            self.proved = False
            self.moved = self.local_port != old_port
            if self.moved:
                self.log.warning(
                    "ssh tunnel to %s:%s via %s reopened on %s:%s: its old local port %s is held by "
                    "another process now; the server's route moves to the new port",
                    self.remote_host, self.remote_port, self.login_host, self.local_host, self.local_port, old_port)
            else:
                self.log.info("ssh tunnel to %s:%s via %s reopened on %s:%s",
                              self.remote_host, self.remote_port, self.login_host, self.local_host, self.local_port)
            return True

    async def _start(self, sock: socket.socket):
        """Start a relay holding ``sock`` (closed here either way) and wait until ssh forwards."""
        try:
            self.local_port = sock.getsockname()[1]
            self.dir = tempfile.mkdtemp(prefix="jhpc-tunnel-", dir=self.runtime_dir or None)  # mode 0700
            argv = self.argv()
            self.log.info("opening ssh tunnel on %s:%s: %s", self.local_host, self.local_port, shlex.join(argv))
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", RELAY_MODULE, "--fd", str(sock.fileno()), "--dir", self.dir, "--", *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                pass_fds=(sock.fileno(),),
                start_new_session=True,  # outlives the hub: a restart adopts it, the route stays valid
                env={k: v for k, v in os.environ.items()
                     if k in ("PATH", "HOME", "USER", "LANG", "SSH_AUTH_SOCK", "PYTHONPATH")},
            )
        finally:
            sock.close()  # the relay holds it now
        self.pid = self._proc.pid
        path = os.path.join(self.dir, tunnelrelay.SOCKET_NAME)
        deadline = time.monotonic() + self.open_timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                err = self._read_err()
                self._proc, self.pid = None, 0
                self._remove_dir()
                raise TunnelError(f"ssh to {self.login_host} ended: {first_line(err) or 'no message'}")
            if os.path.exists(path):
                return
            await asyncio.sleep(0.05)
        await self._close()
        raise TunnelError(f"ssh to {self.login_host} did not forward within {self.open_timeout:g} s")

    def _read_err(self) -> str:
        try:
            with open(os.path.join(self.dir, tunnelrelay.ERR_NAME), "rb") as f:
                return f.read(tunnelrelay.MAX_ERR).decode(errors="replace")
        except OSError:
            return ""

    def _remove_dir(self):
        if self.dir and os.path.basename(self.dir).startswith("jhpc-tunnel-"):
            try:
                if os.stat(self.dir).st_uid == os.getuid():
                    shutil.rmtree(self.dir, ignore_errors=True)
            except OSError:
                pass

    async def close(self):
        async with self._lock:
            await self._close()
            self.remote_host, self.remote_port, self.local_port = "", 0, 0
            self.proved = False

    async def _close(self):
        proc, self._proc = self._proc, None
        pid, self.pid = self.pid, 0
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        elif proc is None and pid and relay_holds(pid, self.local_host, self.local_port):
            # adopted after a hub restart: not our child, so no wait(); only a relay checked to be ours
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                await asyncio.sleep(0.05)
        else:
            self._remove_dir()
            return
        self._remove_dir()
        self.log.info("ssh tunnel to %s:%s closed", self.remote_host, self.remote_port)
