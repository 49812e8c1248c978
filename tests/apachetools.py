"""A real Apache (Debian apache2) running examples/apache/ as an ordinary user on a free port.

Everything Apache needs comes from its environment (the shared secret included),
so nothing secret is written to disk. ``stop()`` ends only the Apache we started,
by the PID in its own pid file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from hubharness import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "apache"
APACHE = "/usr/sbin/apache2"


def available(run_as: str) -> tuple[bool, str]:
    if not os.path.exists(APACHE):
        return False, "apache2 not installed (scripts/setup-apache.sh installs it)"
    if not shutil.which("htpasswd"):
        return False, "htpasswd not installed (apache2-utils)"
    try:
        pwd.getpwnam(run_as)
    except KeyError:
        return False, f"user {run_as} missing (scripts/ensure-users.sh creates it)"
    if not shutil.which("runuser"):
        return False, "runuser missing"
    return True, ""


class Apache:
    def __init__(self, backend: str, secret: str, users: dict[str, str], run_as: str = "alice"):
        self.run_as = run_as
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend = backend
        self.secret = secret
        self.users = users
        # pytest's tmp_path lives under a root-only folder; Apache runs as run_as
        self.dir = Path(tempfile.mkdtemp(prefix="jhpc-apache-"))
        self.pid = None

    def _env(self):
        env = {
            "PATH": os.defpath,
            "LANG": "C",
            "JHPC_APACHE_DIR": str(self.dir),
            "JHPC_EXAMPLE_DIR": str(self.dir / "example"),
            "JHUB_VHOST": f"127.0.0.1:{self.port}",
            "JHUB_SERVER_NAME": "localhost",
            "JHUB_BACKEND": self.backend,
            "SSO_HTPASSWD": str(self.dir / "htpasswd"),
            "SSO_PUBLIC": str(self.dir / "example" / "public"),
            "REMOTE_USER_PROXY_SECRET": self.secret,
        }
        return env

    def _cmd(self, *args):
        return [shutil.which("runuser"), "-u", self.run_as, "--", APACHE, "-f", str(self.dir / "example" / "httpd-standalone.conf"), *args]

    def start(self, timeout: float = 15):
        # the example exactly as shipped, copied where run_as can read it
        shutil.copytree(EXAMPLE, self.dir / "example")
        htpasswd = self.dir / "htpasswd"
        for i, (user, password) in enumerate(self.users.items()):
            flags = "-iB" + ("c" if i == 0 else "")
            subprocess.run(["htpasswd", flags, str(htpasswd), user], input=password, text=True,
                           check=True, capture_output=True, timeout=30)
        uid = pwd.getpwnam(self.run_as).pw_uid
        for p in [self.dir, *self.dir.rglob("*")]:
            os.chown(p, uid, -1)
        check = subprocess.run(self._cmd("-t"), env=self._env(), capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"apache2 -t failed:\n{check.stdout}{check.stderr}")
        t0 = time.monotonic()
        subprocess.run(self._cmd("-k", "start"), env=self._env(), check=True, capture_output=True, timeout=30)
        pidfile = self.dir / "httpd.pid"
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                self.pid = int(pidfile.read_text().strip())
                try:
                    requests.get(self.url + "/sso/logged-out.html", timeout=2)
                    self.start_seconds = time.monotonic() - t0
                    return self
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"apache did not start within {timeout} s:\n{self.error_log()}")

    def error_log(self):
        p = self.dir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def access_log(self):
        p = self.dir / "access.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self, timeout: float = 15):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            if not (self.dir / "httpd.pid").exists():
                break  # apache removes its pid file on exit (the pid may linger as a zombie)
            time.sleep(0.05)
        self.pid = None

    def cleanup(self, keep_logs_in: Path | None = None):
        if keep_logs_in is not None:
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            for name in ("error.log", "access.log"):
                if (self.dir / name).exists():
                    shutil.copy(self.dir / name, keep_logs_in / f"apache-{name}")
        shutil.rmtree(self.dir, ignore_errors=True)
