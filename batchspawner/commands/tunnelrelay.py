"""The process that holds a tunnel's local port: ``python -m batchspawner.commands.tunnelrelay``.

Started by the hub (batchspawner/commands/tunnel.py) with a TCP socket the *hub* bound and passes as an
open descriptor (``--fd``), so the local port is held from the moment it is chosen: there is no
gap in which another local user could bind it. The relay then

- runs ``ssh -N -L DIR/fwd.sock:ADDRESS:PORT ... login`` as its child: ssh forwards a unix socket
  in DIR, a 0700 directory of the hub's user, so no other local user can connect to or take
  the forward itself;
- relays every connection on the held port to that unix socket;
- restarts ssh (1 s doubling to 30 s) when it dies, and keeps holding the port meanwhile
  (connections then fail: they never reach anyone else);
- outlives the hub (its own session, no parent-death signal): after a hub restart the hub
  adopts it (same pid, same port, checked in /proc) and the proxy's route stays valid;
- exits on SIGTERM (the hub's stop), taking ssh along and removing DIR. ssh dies with it.

If the very first ssh ends before its socket exists (login refused, forward refused), the relay
exits with code 3; ssh's error output is in DIR/ssh.err for the hub to report.
Standard library only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys

SOCKET_NAME = "fwd.sock"
ERR_NAME = "ssh.err"
MAX_ERR = 8192


def _die_with_parent():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


async def _pipe(reader, writer):
    """Copy one direction; at its end pass the half-close on (the other direction goes on)."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        writer.close()  # a broken side ends both directions


class Relay:
    def __init__(self, fd: int, directory: str, ssh_argv: list[str]):
        self.sock = socket.socket(fileno=fd)
        self.dir = directory
        self.path = os.path.join(directory, SOCKET_NAME)
        self.ssh_argv = ssh_argv
        self.ssh: asyncio.subprocess.Process | None = None
        self.stopping = asyncio.Event()

    async def handle(self, reader, writer):
        try:
            r2, w2 = await asyncio.open_unix_connection(self.path)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))
        finally:
            for w in (w2, writer):
                try:
                    w.close()
                except OSError:
                    pass

    async def start_ssh(self):
        with open(os.path.join(self.dir, ERR_NAME), "wb") as err:
            self.ssh = await asyncio.create_subprocess_exec(
                *self.ssh_argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=err, preexec_fn=_die_with_parent,
            )

    async def first_ssh(self) -> bool:
        await self.start_ssh()
        while not os.path.exists(self.path):
            if self.ssh.returncode is not None or self.stopping.is_set():
                return False
            await asyncio.sleep(0.05)
        return True

    async def keep_ssh(self):
        delay = 1.0
        while not self.stopping.is_set():
            await self.ssh.wait()
            if self.stopping.is_set():
                return
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
            await self.start_ssh()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        self.sock.setblocking(False)
        server = await asyncio.start_server(self.handle, sock=self.sock)
        code = 0
        try:
            if not await self.first_ssh():
                code = 0 if self.stopping.is_set() else 3
                return code
            keeper = asyncio.ensure_future(self.keep_ssh())
            await self.stopping.wait()
            keeper.cancel()
        finally:
            server.close()
            if self.ssh is not None and self.ssh.returncode is None:
                self.ssh.terminate()
                try:
                    await asyncio.wait_for(self.ssh.wait(), 5)
                except asyncio.TimeoutError:
                    self.ssh.kill()
            if code == 0:  # on a failed first start the hub reads ssh.err and removes the directory
                shutil.rmtree(self.dir, ignore_errors=True)
        return code


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        fd = int(argv[argv.index("--fd") + 1])
        directory = argv[argv.index("--dir") + 1]
        ssh_argv = argv[argv.index("--") + 1 :]
    except (ValueError, IndexError):
        print("usage: python -m batchspawner.commands.tunnelrelay --fd N --dir DIR -- SSH ARGV...", file=sys.stderr)
        return 2
    if not ssh_argv:
        return 2
    return asyncio.run(Relay(fd, directory, ssh_argv).run())


if __name__ == "__main__":
    sys.exit(main())
