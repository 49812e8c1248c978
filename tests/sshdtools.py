"""Real OpenSSH servers on free loopback ports for the submit-host tests.

Each :class:`Sshd` has its own config, host key (the machine's), PidFile and log in a
scratch directory, lets only ``alice`` in with a key made for the test, and runs every
command through a ``ForceCommand`` that appends ``$SSH_ORIGINAL_COMMAND`` to
``commands.log`` (so tests can see which host ran what) before running it with
``/bin/sh -c``. Only processes started here are stopped, by PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from hubharness import free_port

SSHD = "/usr/sbin/sshd"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"

LOGGER = """#!/bin/sh
# test-only ForceCommand: record the command this sshd was asked to run, then run it
printf '%s\\n' "$SSH_ORIGINAL_COMMAND" >> {log}
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

CONFIG = """
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin no
AllowUsers {login_user}
AcceptEnv {accept_env}
ForceCommand {dir}/logcmd.sh
LogLevel VERBOSE
"""


def available() -> tuple[bool, str]:
    if not os.path.exists(SSHD) or not shutil.which("ssh"):
        return False, "openssh-server/client not installed (run scripts/setup-sshd.sh)"
    if not os.path.exists(HOST_KEY) or not os.path.isdir("/run/sshd"):
        return False, "no host key or /run/sshd (run scripts/setup-sshd.sh)"
    try:
        pwd.getpwnam("alice")
    except KeyError:
        return False, "user alice missing (run scripts/ensure-users.sh)"
    return True, ""


class ClientKey:
    """A key pair for root -> alice logins and a known_hosts file for the test servers."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="jhpc-sshkey-"))
        self.key = self.dir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jhpc-test", "-f", str(self.key)],
                       check=True, timeout=30)  # fmt: skip
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text("")
        self.public = (self.dir / "id_ed25519.pub").read_text()

    def trust(self, port: int):
        hostkey = Path(HOST_KEY + ".pub").read_text().split()
        with self.known_hosts.open("a") as f:
            f.write(f"[127.0.0.1]:{port} {hostkey[0]} {hostkey[1]}\n")

    def ssh_options(self) -> list[str]:
        return [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes"]

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Sshd:
    def __init__(self, key: ClientKey, accept_env: str = "LANG LC_*", login_user: str = "alice"):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jhpc-sshd-"))
        self.dir.chmod(0o755)  # alice's session reads authorized_keys and runs logcmd.sh
        (self.dir / "authorized_keys").write_text(key.public)
        (self.dir / "authorized_keys").chmod(0o644)
        self.commands_log = self.dir / "commands.log"
        self.commands_log.touch()
        account = pwd.getpwnam(login_user)  # the only account let in; its sessions append to the log
        os.chown(self.commands_log, account.pw_uid, account.pw_gid)
        logger = self.dir / "logcmd.sh"
        logger.write_text(LOGGER.format(log=self.commands_log))
        logger.chmod(0o755)
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            CONFIG.format(port=self.port, host_key=HOST_KEY, dir=self.dir, accept_env=accept_env, login_user=login_user)
        )
        self.log = self.dir / "sshd.log"
        self.pid = None
        key.trust(self.port)

    def start(self, timeout: float = 15) -> "Sshd":
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True, capture_output=True, timeout=20)
        subprocess.run([SSHD, "-f", str(self.config), "-E", str(self.log)], check=True, timeout=20)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pidfile = self.dir / "sshd.pid"
            if pidfile.exists() and pidfile.read_text().strip() and _listening(self.port):
                self.pid = int(pidfile.read_text())
                return self
            time.sleep(0.05)
        raise RuntimeError(f"sshd on port {self.port} did not start: {self.log.read_text()[-2000:]}")

    def stop(self):
        """Stop this sshd and the per-connection processes it forked (all by PID)."""
        if self.pid is None:
            return
        pids = [self.pid] + _children(self.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (_alive(self.pid) or _listening(self.port)):
            time.sleep(0.05)
        self.pid = None

    def commands(self) -> list[str]:
        return [line for line in self.commands_log.read_text().splitlines() if line]

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a daemon that reparented to init counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    """Descendants of pid (sshd forks one process per connection, and that one the session)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
