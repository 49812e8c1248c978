"""Web apps behind the hub's login: VS Code, a Linux desktop, any web app.

These run *inside* the single-user server through jupyter-server-proxy: the
server answers ``/user/<name>/vscode/``, ``/user/<name>/desktop/`` and
``/user/<name>/webapp/`` by starting the app on first use and proxying to it.
Those URLs are behind the single-user server's own hub OAuth, so only the
server's owner (and whoever the hub grants ``access:servers`` on it) reaches
them; a client that is not logged in is sent to the hub's login, another user
gets 403.

Every app listens on a **unix socket** in a fresh private (0700) folder, never on
a TCP port: compute nodes are shared, and a TCP port on 127.0.0.1 is open to every
other user on the node. The desktop's X server takes only clients holding its X
cookie, which is in no command line, and listens on an abstract socket only (no
``/tmp/.X11-unix``); see ``run_vnc``.

The apps are registered with jupyter-server-proxy through the
``jupyter_serverproxy_servers`` entry points of this package (pyproject.toml), so
a server started from the hub's venv offers them once jupyter-server-proxy is
installed there (``scripts/setup-apps.sh``). A profile makes one the landing page
with ``default_url`` (see ``examples/apps/``):

- ``vscode``: ``code-server`` (npm) with ``--auth none`` on the socket; the
  hub's login is its login. ``JHPC_CODE_SERVER`` names the binary.
- ``desktop``: noVNC's web client (Debian ``novnc``), served by
  ``python -m batchspawner.job.apps static``; its websocket goes to ``desktop-vnc``, a
  raw-socket proxy (jupyter-server-proxy's own websockify) to a TigerVNC ``Xvnc``
  listening on a socket, with an xterm session. ``JHPC_DESKTOP_SESSION`` (a shell
  command run in the session) replaces the xterm.
- ``webapp``: any web app the admin names in ``JHPC_WEBAPP_COMMAND`` (a JSON list;
  ``{unix_socket}``, ``{port}`` and ``{base_url}`` are filled in), set through the
  profile's ``environment``. ``JHPC_WEBAPP_TCP=1`` for an app that cannot listen on
  a unix socket (then it should bind 127.0.0.1 and check its own login).

Run as a program (what the entry points start)::

    python -m batchspawner.job.apps static --socket PATH --dir DIR [--index URL]
    python -m batchspawner.job.apps vnc --socket PATH
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import time


NOVNC_DIR = os.environ.get("JHPC_NOVNC_DIR", "/usr/share/novnc")
APP_TIMEOUT = 60.0  # seconds an app may take to answer on its socket the first time


def _py():
    return [sys.executable, "-m", "batchspawner.job.apps"]


# ------------------------------------------------------------ jupyter-server-proxy entry points
def setup_vscode():
    """VS Code (code-server) on a unix socket; the hub's login protects it, so ``--auth none``."""
    from batchspawner.job import appbanner  # the server's side only: `apps vnc` runs on the node's own Python

    binary = os.environ.get("JHPC_CODE_SERVER") or shutil.which("code-server") or "code-server"
    return {
        "command": [
            binary,
            "--auth", "none",
            "--socket", "{unix_socket}",
            "--socket-mode", "600",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--ignore-last-opened",
            os.path.expanduser("~"),
        ],
        "unix_socket": True,
        "timeout": APP_TIMEOUT,
        "launcher_entry": {"title": "VS Code"},
        "new_browser_tab": True,
        # the wall-time banner in the editor's page (appbanner.py); gzip, not br: the page can be read
        "rewrite_response": appbanner.rewriter(("/",), gzip_asked=True),
        "request_headers_override": dict(appbanner.GZIP_ONLY),
    }


def setup_desktop():
    """noVNC's web client; ``/`` redirects to it with the websocket path of ``desktop-vnc``."""
    from batchspawner.job import appbanner  # the server's side only (see setup_vscode)

    return {
        "command": [*_py(), "static", "--socket", "{unix_socket}", "--dir", NOVNC_DIR, "--novnc-base", "{base_url}"],
        "unix_socket": True,
        "timeout": APP_TIMEOUT,
        "launcher_entry": {"title": "Desktop"},
        "rewrite_response": appbanner.rewriter(("/vnc.html",)),  # the wall-time banner over noVNC
    }


def setup_desktop_vnc():
    """TigerVNC on a unix socket, reached by noVNC's websocket as a raw socket."""
    return {
        "command": [*_py(), "vnc", "--socket", "{unix_socket}"],
        "unix_socket": True,
        "raw_socket_proxy": True,
        "timeout": APP_TIMEOUT,
        "launcher_entry": {"enabled": False},
    }


def setup_webapp():
    """The admin's web app from ``JHPC_WEBAPP_COMMAND`` (JSON list); absent: no ``webapp`` route."""
    raw = os.environ.get("JHPC_WEBAPP_COMMAND", "")
    if not raw:
        raise LookupError("JHPC_WEBAPP_COMMAND is not set: no web app configured")
    command = json.loads(raw)
    if not (isinstance(command, list) and command and all(isinstance(w, str) for w in command)):
        raise ValueError("JHPC_WEBAPP_COMMAND must be a JSON list of strings")
    tcp = os.environ.get("JHPC_WEBAPP_TCP", "") in ("1", "true", "yes")
    return {
        "command": command,
        "unix_socket": not tcp,
        "absolute_url": os.environ.get("JHPC_WEBAPP_ABSOLUTE_URL", "") in ("1", "true", "yes"),
        "timeout": float(os.environ.get("JHPC_WEBAPP_TIMEOUT", APP_TIMEOUT)),
        "launcher_entry": {"title": os.environ.get("JHPC_WEBAPP_TITLE", "Web app")},
    }


# ------------------------------------------------------------ programs
def novnc_index(base_url):
    """noVNC's page, connecting its websocket to this server's ``desktop-vnc`` route."""
    from urllib.parse import quote

    path = base_url.strip("/") + "/desktop-vnc/"  # noVNC adds the leading "/"
    return "vnc.html?autoconnect=true&reconnect=true&resize=remote&path=" + quote(path, safe="/")


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def server_bind(self):
        socketserver.UnixStreamServer.server_bind(self)
        os.chmod(self.server_address, 0o600)
        self.server_name, self.server_port = "localhost", 0


def _bind_unix(path):
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)


def serve_static(sock_path, directory, index=""):
    """A read-only file server on a unix socket; ``/`` redirects to ``index`` when given."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def address_string(self):
            return "unix-socket"

        def do_GET(self):
            if index and self.path in ("/", ""):
                self.send_response(302)
                self.send_header("Location", index)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def list_directory(self, path):
            # a folder without index.html (the web-app example's default folder is one): a page
            # linking its files, not a raw "Error code: 404" (issue 26); dot files are not listed
            import html as _html
            import io
            from urllib.parse import quote

            try:
                names = sorted(n for n in os.listdir(path) if not n.startswith("."))
            except OSError:
                self.send_error(404, "Not found")
                return None
            title = _html.escape(os.environ.get("JHPC_WEBAPP_TITLE", "") or "Files")
            items = "".join(
                f'<li><a href="{quote(n)}{"/" if os.path.isdir(os.path.join(path, n)) else ""}">{_html.escape(n)}</a></li>'
                for n in names
            ) or "<li>(this folder is empty)</li>"
            body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                    f"<body><h1>{title}</h1><ul>{items}</ul></body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)

        def log_message(self, fmt, *args):
            sys.stderr.write("static: " + (fmt % args) + "\n")

    _bind_unix(sock_path)
    with _UnixHTTPServer(sock_path, Handler) as server:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            try:
                os.unlink(sock_path)
            except OSError:
                pass


# ------------------------------------------------------------ the desktop's X server
XVNC_TRIES = 10  # X displays tried before giving up (another may take a free one first)
XVNC_START_TIMEOUT = 20.0  # seconds the X server may take to listen, all tries together
FIRST_DISPLAY, LAST_DISPLAY = 10, 1009  # the display numbers the desktop picks from
_X_SOCKET = re.compile(r"@?/tmp/\.X11-unix/X(\d+)$")
_X_LOCK = re.compile(r"\.X(\d+)-lock$")
_FAMILY_WILD = 0xFFFF  # an Xauthority entry for any host


def _start_timeout():
    """``JHPC_DESKTOP_START_TIMEOUT`` (seconds, for slow nodes) or the default; below jupyter-server-proxy's."""
    try:
        value = float(os.environ.get("JHPC_DESKTOP_START_TIMEOUT") or XVNC_START_TIMEOUT)
    except ValueError:
        value = XVNC_START_TIMEOUT
    return min(max(value, 0.1), APP_TIMEOUT - 5)


def xauthority_entry(cookie: bytes, display: str = "") -> bytes:
    """One Xauthority entry (libXau's format): MIT-MAGIC-COOKIE-1 ``cookie`` for any host.

    ``display`` empty matches every display number (the file belongs to one desktop only).
    """
    def counted(b):
        return struct.pack(">H", len(b)) + b

    return (struct.pack(">H", _FAMILY_WILD) + counted(b"") + counted(display.encode())
            + counted(b"MIT-MAGIC-COOKIE-1") + counted(cookie))


def write_xauthority(path, cookie: bytes):
    """The X cookie straight into a new 0600 file: never in a command line or an environment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(xauthority_entry(cookie))


def displays_in_use(net_unix="/proc/net/unix", tmp="/tmp"):
    """X display numbers someone holds: an X socket (abstract or path) or a lock file in ``tmp``."""
    used = set()
    try:
        with open(net_unix) as f:
            for line in f.read().splitlines()[1:]:
                m = _X_SOCKET.search(line)
                if m:
                    used.add(int(m.group(1)))
    except OSError:
        pass
    for folder, pattern in ((tmp, _X_LOCK), (os.path.join(tmp, ".X11-unix"), re.compile(r"X(\d+)$"))):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            m = pattern.fullmatch(name)
            if m:
                used.add(int(m.group(1)))
    return used


def free_displays(used):
    """Display numbers to try, in order, skipping those in use."""
    return (n for n in range(FIRST_DISPLAY, LAST_DISPLAY + 1) if n not in used)


_prctl = None


def _load_prctl():
    """libc's prctl, loaded in this process (not in a forked child); None where there is none."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            _prctl = False
    return _prctl or None


def _die_with_parent():
    """In the child before exec: SIGTERM when the desktop program dies, even by SIGKILL (Linux)."""
    if _prctl:
        _prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def start_xvnc(xvnc, display, xauth, sock_path, timeout=XVNC_START_TIMEOUT, log=sys.stderr):
    """Xvnc on ``:display``, listening on the abstract X socket only; None when it could not.

    ``-nolisten unix``: no socket (nor folder) in ``/tmp/.X11-unix``, which may be missing or
    another user's; X clients on Linux try the abstract socket first. ``-displayfd``: Xvnc says
    when it listens; it ends instead when the display is taken (e.g. another user holds
    ``@/tmp/.X11-unix/X<display>``).
    """
    _bind_unix(sock_path)
    _load_prctl()
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen([
            xvnc, f":{display}", "-displayfd", str(write_end), "-auth", xauth,
            "-nolisten", "tcp", "-nolisten", "unix", "-rfbport", "-1", "-rfbunixpath", sock_path,
            "-rfbunixmode", "0600", "-SecurityTypes", "None", "-geometry", "1280x800", "-depth", "24",
            "-AlwaysShared", "-desktop", f"{os.environ.get('USER', '')} desktop",
        ], stdin=subprocess.DEVNULL, pass_fds=(write_end,), preexec_fn=_die_with_parent)
    finally:
        os.close(write_end)
    said, deadline = b"", time.monotonic() + timeout
    try:
        while b"\n" not in said:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                break
            chunk = os.read(read_end, 64)
            if not chunk:
                break
            said += chunk
    except BaseException:  # a signal while waiting: this Xvnc is nobody's yet
        _end(proc)
        raise
    finally:
        os.close(read_end)
    if said.strip() == str(display).encode() and proc.poll() is None:
        return proc
    _end(proc)
    log.write(f"desktop: Xvnc could not take display :{display}\n")
    return None


def _end(proc, group=False):
    """End ``proc`` (with ``group``: its whole process group, even when the leader is gone)."""
    if proc is None:
        return

    def send(sig):
        try:
            if group:
                os.killpg(proc.pid, sig)
            elif proc.poll() is None:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    send(signal.SIGKILL)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _stop(signum, frame):
    raise SystemExit(0)


def run_vnc(sock_path):
    """Xvnc (TigerVNC) on a unix socket, no TCP port, with an X cookie; a session inside.

    ``-SecurityTypes None`` is safe here only because the socket is in a private folder
    (mode 0600) and reached through the user's own single-user server. The X display takes
    only clients that hold the cookie, which is written straight into a 0600 file in a 0700
    folder (no ``xauth`` command line). When Xvnc or the session ends, or this program gets
    SIGTERM/SIGINT/SIGHUP, everything is ended and the private folder removed.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    xvnc = shutil.which("Xvnc") or "Xvnc"
    private = tempfile.mkdtemp(prefix="jhpc-desktop-")
    server = session = None
    try:
        xauth = os.path.join(private, "Xauthority")
        write_xauthority(xauth, secrets.token_bytes(16))
        tried, deadline = [], time.monotonic() + _start_timeout()
        for display in free_displays(displays_in_use()):
            if len(tried) >= XVNC_TRIES or time.monotonic() >= deadline:
                break
            tried.append(display)
            try:
                server = start_xvnc(xvnc, display, xauth, sock_path, timeout=deadline - time.monotonic())
            except FileNotFoundError:
                sys.exit("desktop: TigerVNC's Xvnc is not installed on this node; ask the site's support")
            if server is not None:
                break
        if server is None:
            sys.exit(f"desktop: the X server did not start on any of the displays :{', :'.join(map(str, tried))} "
                     "(see the messages above); ask the site's support if this persists")
        env = dict(os.environ, DISPLAY=f":{display}", XAUTHORITY=xauth)
        session_cmd = os.environ.get("JHPC_DESKTOP_SESSION") or "exec xterm -geometry 120x40+20+20"
        session = subprocess.Popen(["sh", "-c", session_cmd], env=env, start_new_session=True,
                                   stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        while server.poll() is None and session.poll() is None:
            time.sleep(0.25)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the cleanup itself is not interrupted
        # Xvnc first: its X clients then end on their own (xterm may sit on a SIGTERM until an X event
        # comes), then whatever is left of the session's process group
        _end(server)
        _end(session, group=True)
        shutil.rmtree(private, ignore_errors=True)
        try:
            os.unlink(sock_path)
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m batchspawner.job.apps")
    sub = parser.add_subparsers(dest="what", required=True)
    static = sub.add_parser("static", help="serve a folder on a unix socket")
    static.add_argument("--socket", required=True)
    static.add_argument("--dir", required=True)
    static.add_argument("--index", default="", help="where / redirects to")
    static.add_argument("--novnc-base", default=None, help="the server's base URL: / opens noVNC on desktop-vnc")
    vnc = sub.add_parser("vnc", help="a TigerVNC desktop on a unix socket")
    vnc.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    if args.what == "static":
        index = args.index
        if args.novnc_base is not None:
            index = novnc_index(args.novnc_base)
        serve_static(args.socket, args.dir, index)
    else:
        run_vnc(args.socket)


if __name__ == "__main__":
    main()
