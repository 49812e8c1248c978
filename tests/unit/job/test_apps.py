"""batchspawner/job/apps.py: what jupyter-server-proxy is told to run, and the static file server on a unix socket."""

import http.client
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest

from batchspawner.job import apps


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
    proc = subprocess.Popen([sys.executable, "-m", "batchspawner.job.apps", "static", "--socket", sock, "--dir", str(web),
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
        # a folder without index.html: a page linking its files (issue 26), dot files left out
        (web / "sub" / ".secret").write_text("x")
        (web / "sub" / "a&b.txt").write_text("x")
        conn = UnixHTTPConnection(sock)
        conn.request("GET", "/sub/")
        r = conn.getresponse()
        page = r.read().decode()
        assert r.status == 200 and 'href="a%26b.txt">a&amp;b.txt<' in page and ".secret" not in page, page
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------ the desktop's X server (issue 21, items 1, 7)
def _parse_xauthority(data):
    entries, i = [], 0
    while i < len(data):
        (family,) = struct.unpack(">H", data[i:i + 2])
        i += 2
        fields = []
        for _ in range(4):
            (n,) = struct.unpack(">H", data[i:i + 2])
            fields.append(data[i + 2:i + 2 + n])
            i += 2 + n
        entries.append((family, *fields))
    return entries


def test_x_cookie_goes_straight_into_a_private_file(tmp_path):
    cookie = bytes(range(16))
    path = tmp_path / "Xauthority"
    apps.write_xauthority(str(path), cookie)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # libXau's format: any host (FamilyWild), any display number, MIT-MAGIC-COOKIE-1
    assert _parse_xauthority(path.read_bytes()) == [(0xFFFF, b"", b"", b"MIT-MAGIC-COOKIE-1", cookie)]
    # an existing file or a planted symlink is never written through
    target = tmp_path / "elsewhere"
    (tmp_path / "link").symlink_to(target)
    for existing in (path, tmp_path / "link"):
        with pytest.raises(FileExistsError):
            apps.write_xauthority(str(existing), cookie)
    assert not target.exists()


def test_displays_in_use_counts_abstract_and_path_sockets_and_locks(tmp_path):
    net_unix = tmp_path / "unix"
    net_unix.write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 12836 @/tmp/.X11-unix/X10\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 12837 /tmp/.X11-unix/X12\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 12838 @/tmp/.X11-unix/X13-not\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03 12839\n")
    tmp = tmp_path / "tmp"
    (tmp / ".X11-unix").mkdir(parents=True)
    (tmp / ".X11-unix" / "X14").touch()
    (tmp / ".X15-lock").touch()
    (tmp / ".X16-lock.bak").touch()
    used = apps.displays_in_use(str(net_unix), str(tmp))
    assert used == {10, 12, 14, 15}
    assert list(zip(range(3), apps.free_displays(used))) == [(0, 11), (1, 13), (2, 16)]
    assert apps.displays_in_use(str(tmp_path / "none"), str(tmp_path / "none")) == set()


FAKE_XVNC = """#!{python}
# a fake Xvnc: records its command line; the first display it is asked for is "taken" (it ends
# with Xvnc's message), the next one it takes (says so on -displayfd) and runs until SIGTERM
import json, os, signal, sys, time
record = os.environ["FAKE_XVNC_RECORD"]
argv = sys.argv[1:]
tries = json.load(open(record)) if os.path.exists(record) else []
tries.append({{"argv": argv, "xauthority": open(argv[argv.index("-auth") + 1], "rb").read().hex()}})
with open(record + ".new", "w") as f:  # whole or not at all: the test reads it while we run
    json.dump(tries, f)
os.replace(record + ".new", record)
if len(tries) == 1 or os.environ.get("FAKE_XVNC_FAIL"):
    sys.exit("Fatal server error: Cannot establish any listening sockets")
if os.environ.get("FAKE_XVNC_SILENT"):
    time.sleep(60)
os.write(int(argv[argv.index("-displayfd") + 1]), argv[0][1:].encode() + b"\\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(60)
"""


def _fake_xvnc(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    xvnc = bin_dir / "Xvnc"
    xvnc.write_text(FAKE_XVNC.format(python=sys.executable))
    xvnc.chmod(0o755)
    return bin_dir, tmp_path / "record.json"


def _run_desktop(tmp_path, bin_dir, record, **env):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    sock = tmp_path / "run" / "vnc.sock"
    proc = subprocess.Popen([sys.executable, "-m", "batchspawner.job.apps", "vnc", "--socket", str(sock)],
                            env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TMPDIR=str(tmp),
                                     FAKE_XVNC_RECORD=str(record), JHPC_DESKTOP_SESSION="exec sleep 60", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, tmp


def test_desktop_takes_the_next_display_and_leaves_nothing_after_sigterm(tmp_path):
    bin_dir, record = _fake_xvnc(tmp_path)
    proc, tmp = _run_desktop(tmp_path, bin_dir, record)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(json.loads(record.read_text() if record.exists() else "[]")) < 2:
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None
        tries = json.loads(record.read_text())
        first, second = (int(t["argv"][0][1:]) for t in tries)
        assert second > first  # the taken display was skipped, the next one tried
        argv = tries[1]["argv"]
        # abstract socket only: /tmp/.X11-unix is never needed nor created; readiness by -displayfd
        assert "-nolisten" in argv and "unix" in argv and "tcp" in argv and "-displayfd" in argv
        cookie = _parse_xauthority(bytes.fromhex(tries[1]["xauthority"]))[0][4]
        assert len(cookie) == 16 and cookie.hex() not in " ".join(argv) and cookie not in " ".join(argv).encode()
        private = [p for p in tmp.iterdir() if p.name.startswith("jhpc-desktop-")]
        assert len(private) == 1 and stat.S_IMODE(private[0].stat().st_mode) == 0o700
        proc.terminate()
        proc.wait(15)
        assert list(tmp.iterdir()) == []  # the private folder is gone
        assert subprocess.run(["pgrep", "-f", str(bin_dir / "Xvnc")], capture_output=True).stdout == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("how", ["FAKE_XVNC_FAIL", "FAKE_XVNC_SILENT"])
def test_desktop_that_cannot_start_says_so_and_leaves_nothing(tmp_path, how):
    bin_dir, record = _fake_xvnc(tmp_path)
    env = {how: "1"}
    if how == "FAKE_XVNC_SILENT":
        env["JHPC_DESKTOP_START_TIMEOUT"] = "1"  # all tries together
    proc, tmp = _run_desktop(tmp_path, bin_dir, record, **env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "the X server did not start on any of the displays" in out, out
    # every display taken: XVNC_TRIES of them, no more; the first taken and the next one silent: the
    # time budget ends the tries (not 10 x 20 s)
    assert len(json.loads(record.read_text())) == (apps.XVNC_TRIES if how == "FAKE_XVNC_FAIL" else 2)
    assert list(tmp.iterdir()) == []
    assert subprocess.run(["pgrep", "-f", str(bin_dir / "Xvnc")], capture_output=True).stdout == b""
