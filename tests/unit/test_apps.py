"""batchspawner/apps.py: what jupyter-server-proxy is told to run, and the static file server on a unix socket."""

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from batchspawner import apps


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def test_every_app_listens_on_a_unix_socket_and_vscode_leaves_login_to_the_hub():
    for setup in (apps.setup_vscode, apps.setup_desktop, apps.setup_desktop_vnc):
        config = setup()
        assert config["unix_socket"] is True
        assert "{unix_socket}" in config["command"] and "{port}" not in config["command"]
    vscode = apps.setup_vscode()["command"]
    assert vscode[vscode.index("--auth") + 1] == "none" and vscode[vscode.index("--socket-mode") + 1] == "600"
    assert apps.setup_desktop_vnc()["raw_socket_proxy"] is True


def test_webapp_needs_the_admins_command(monkeypatch):
    monkeypatch.delenv("JHPC_WEBAPP_COMMAND", raising=False)
    with pytest.raises(LookupError):
        apps.setup_webapp()
    monkeypatch.setenv("JHPC_WEBAPP_COMMAND", json.dumps(["myapp", "--listen", "{unix_socket}"]))
    config = apps.setup_webapp()
    assert config["command"] == ["myapp", "--listen", "{unix_socket}"] and config["unix_socket"] is True
    monkeypatch.setenv("JHPC_WEBAPP_COMMAND", "myapp --port 1")
    with pytest.raises(ValueError):
        apps.setup_webapp()


def test_novnc_page_connects_to_this_servers_vnc_route():
    assert apps.novnc_index("/user/alice/desk/") == (
        "vnc.html?autoconnect=true&reconnect=true&resize=remote&path=user/alice/desk/desktop-vnc/")
    assert "%20" in apps.novnc_index("/user/a b/")


def test_static_server_on_a_private_unix_socket(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "vnc.html").write_text("<title>noVNC</title>")
    (web / "sub").mkdir()
    sock = str(tmp_path / "s" / "socket")
    proc = subprocess.Popen([sys.executable, "-m", "batchspawner.apps", "static", "--socket", sock, "--dir", str(web),
                             "--novnc-base", "/user/alice/"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        conn = UnixHTTPConnection(sock)
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 302 and r.getheader("Location").endswith("path=user/alice/desktop-vnc/")
        conn = UnixHTTPConnection(sock)
        conn.request("GET", "/vnc.html")
        assert conn.getresponse().read() == b"<title>noVNC</title>"
        conn = UnixHTTPConnection(sock)
        conn.request("GET", "/sub/")
        assert conn.getresponse().status == 404  # no directory listings
    finally:
        proc.terminate()
        proc.wait(10)
