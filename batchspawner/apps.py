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
other user on the node. The desktop's X server takes an X authority cookie for
the same reason.

The apps are registered with jupyter-server-proxy through the
``jupyter_serverproxy_servers`` entry points of this package (pyproject.toml), so
a server started from the hub's venv offers them once jupyter-server-proxy is
installed there (``scripts/setup-apps.sh``). A profile makes one the landing page
with ``default_url`` (see ``examples/apps/``):

- ``vscode``: ``code-server`` (npm) with ``--auth none`` on the socket; the
  hub's login is its login. ``JHPC_CODE_SERVER`` names the binary.
- ``desktop``: noVNC's web client (Debian ``novnc``), served by
  ``python -m batchspawner.apps static``; its websocket goes to ``desktop-vnc``, a
  raw-socket proxy (jupyter-server-proxy's own websockify) to a TigerVNC ``Xvnc``
  listening on a socket, with an xterm session. ``JHPC_DESKTOP_SESSION`` (a shell
  command run in the session) replaces the xterm.
- ``webapp``: any web app the admin names in ``JHPC_WEBAPP_COMMAND`` (a JSON list;
  ``{unix_socket}``, ``{port}`` and ``{base_url}`` are filled in), set through the
  profile's ``environment``. ``JHPC_WEBAPP_TCP=1`` for an app that cannot listen on
  a unix socket (then it should bind 127.0.0.1 and check its own login).

Run as a program (what the entry points start)::

    python -m batchspawner.apps static --socket PATH --dir DIR [--index URL]
    python -m batchspawner.apps vnc --socket PATH
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import time

NOVNC_DIR = os.environ.get("JHPC_NOVNC_DIR", "/usr/share/novnc")
APP_TIMEOUT = 60.0  # seconds an app may take to answer on its socket the first time


def _py():
    return [sys.executable, "-m", "batchspawner.apps"]


# ------------------------------------------------------------ jupyter-server-proxy entry points
def setup_vscode():
    """VS Code (code-server) on a unix socket; the hub's login protects it, so ``--auth none``."""
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
    }


def setup_desktop():
    """noVNC's web client; ``/`` redirects to it with the websocket path of ``desktop-vnc``."""
    return {
        "command": [*_py(), "static", "--socket", "{unix_socket}", "--dir", NOVNC_DIR, "--novnc-base", "{base_url}"],
        "unix_socket": True,
        "timeout": APP_TIMEOUT,
        "launcher_entry": {"title": "Desktop"},
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
            self.send_error(404, "Not found")
            return None

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


def _free_display():
    for n in range(10, 1000):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            return n
    raise RuntimeError("no free X display number")


def run_vnc(sock_path):
    """Xvnc (TigerVNC) on a unix socket, no TCP port, with an X cookie; a session inside.

    ``-SecurityTypes None`` is safe here only because the socket is in a private folder
    (mode 0600) and reached through the user's own single-user server.
    """
    xvnc = shutil.which("Xvnc") or "Xvnc"
    private = tempfile.mkdtemp(prefix="jhpc-desktop-")
    xauth = os.path.join(private, "Xauthority")
    display = _free_display()
    cookie = secrets.token_hex(16)
    subprocess.run(["xauth", "-f", xauth, "add", f":{display}", ".", cookie], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _bind_unix(sock_path)
    server = subprocess.Popen([
        xvnc, f":{display}", "-auth", xauth, "-rfbport", "-1", "-rfbunixpath", sock_path,
        "-rfbunixmode", "0600", "-SecurityTypes", "None", "-geometry", "1280x800", "-depth", "24",
        "-nolisten", "tcp", "-AlwaysShared", "-desktop", f"{os.environ.get('USER', '')} desktop",
    ])
    env = dict(os.environ, DISPLAY=f":{display}", XAUTHORITY=xauth)
    deadline = time.monotonic() + 20
    while not os.path.exists(f"/tmp/.X11-unix/X{display}") and time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"Xvnc ended with {server.returncode}")
        time.sleep(0.1)
    session_cmd = os.environ.get("JHPC_DESKTOP_SESSION") or "exec xterm -geometry 120x40+20+20"
    session = subprocess.Popen(["sh", "-c", session_cmd], env=env, start_new_session=True)

    def end(*_):
        for proc in (session, server):
            if proc.poll() is None:
                proc.terminate()
        for proc in (session, server):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(private, ignore_errors=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    server.wait()
    end()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m batchspawner.apps")
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
