"""Who listens where, from /proc: the job's wrapper reports a port only once its own server holds it.

``/proc/<pid>/net/tcp`` and ``tcp6`` list every listening socket the process can see (its network
namespace); only a socket inode that is one of the server's own descriptors (``/proc/<pid>/fd``) or
of a process it started counts, so a port another user listens on is never taken for the server's.
Standard library only: runs on the node's Python before the server starts
(:mod:`batchspawner.job.singleuser`), and in the hub for the ssh tunnel's relay.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

TCP_LISTEN = "0A"  # st column of /proc/net/tcp for a listening socket


class ReportError(RuntimeError):
    """The wrapper cannot report a port (its server did not listen, or the hub refused)."""


def parse_listeners(text: str, family: str) -> dict[int, tuple[int, str]]:
    """{inode: (port, address)} of the LISTEN rows of a /proc/<pid>/net/tcp or tcp6 table."""
    out = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        addr_hex, _, port_hex = fields[1].rpartition(":")
        try:
            port, inode = int(port_hex, 16), int(fields[9])
        except ValueError:
            continue
        if inode:
            out[inode] = (port, _address(addr_hex, family))
    return out


def _address(addr_hex: str, family: str) -> str:
    raw = bytes.fromhex(addr_hex)
    if family == "tcp":
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # tcp6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listeners(pid: int, proc: str = "/proc") -> dict[int, tuple[int, str]]:
    """LISTEN sockets of the network namespace of ``pid``: {inode: (port, address)}."""
    out = {}
    for family in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/{pid}/net/{family}") as f:
                out.update(parse_listeners(f.read(), family))
        except OSError:
            pass
    return out


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """Inodes of the sockets process ``pid`` holds open (its /proc/<pid>/fd links ``socket:[N]``)."""
    inodes = set()
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"{proc}/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            try:
                inodes.add(int(target[8:-1]))
            except ValueError:
                pass
    return inodes


def descendants(pid: int, proc: str = "/proc") -> set[int]:
    """``pid`` and every process below it (from the ppid field of each /proc/<n>/stat)."""
    parent_of = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return {pid}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat") as f:
                text = f.read()
            parent_of[int(name)] = int(text[text.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parent_of.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


def own_listening_ports(pid: int, proc: str = "/proc", whole_tree: bool = False, inodes=None) -> dict[int, set[str]]:
    """{port: {addresses}} that process ``pid`` itself (or with ``whole_tree``, any process
    below it) listens on. A LISTEN socket of any other process never counts. ``inodes``: the
    socket inodes of those processes when the caller has them already."""
    if inodes is None:
        inodes = set()
        for p in descendants(pid, proc) if whole_tree else {pid}:
            inodes |= socket_inodes(p, proc)
    if not inodes:
        return {}
    ports: dict[int, set[str]] = {}
    for inode, (port, addr) in listeners(pid, proc).items():
        if inode in inodes:
            ports.setdefault(port, set()).add(addr)
    return ports


def choose_port(own: dict[int, set[str]], preferred: int) -> int | None:
    """The port to report: the one we asked for, or the only one the server took instead
    (jupyter_server moves on to another port when its port is taken); None while unclear."""
    if preferred in own:
        return preferred
    if len(own) == 1:
        return next(iter(own))
    return None


def wait_until_listening(child: subprocess.Popen, preferred: int, timeout: float, proc: str = "/proc") -> int:
    """Block until ``child`` (or a descendant) listens on a TCP port; return that port.

    Every 20 ms (0.1 s after 30 s) it lists the child's socket descriptors, which is cheap. The
    LISTEN tables (/proc/<pid>/net/tcp{,6}) cost more: the kernel writes a line per socket of
    the node, about 20 ms for 2,500 sockets. They are read only when the child's sockets changed
    (and for the next 0.1 s, as listen() follows socket() and bind()), and otherwise twice a
    second. Processes below the child are looked for once a second (a walk of all of /proc)."""
    start = time.monotonic()
    checks = 0
    seen: set[int] = set()
    fresh_until = 0.0
    last_read = 0.0
    while True:
        if child.poll() is not None:
            raise ReportError(f"the server exited (code {child.returncode}) before it listened on a port")
        checks += 1
        now = time.monotonic()
        inodes = socket_inodes(child.pid, proc)
        if inodes - seen:
            seen |= inodes
            fresh_until = now + 0.1
        own = {}
        if inodes and (now <= fresh_until or now - last_read >= 0.5):
            last_read = now
            own = own_listening_ports(child.pid, proc, inodes=inodes)
        if not own and checks % 50 == 0:  # the listener may be a process the command started
            last_read = now
            own = own_listening_ports(child.pid, proc, whole_tree=True)
        port = choose_port(own, preferred)
        if port is not None:
            return port
        elapsed = now - start
        if elapsed > timeout:
            raise ReportError(f"the server did not listen on a port within {timeout:g} s")
        time.sleep(0.02 if elapsed < 30 else 0.1)
