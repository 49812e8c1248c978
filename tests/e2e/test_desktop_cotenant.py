"""The desktop app (batchspawner/job/apps.py ``vnc``) on a node shared with a hostile user (issue 21, items 1, 7).

Real TigerVNC ``Xvnc`` and xterm, real second local users: the victim ``alice`` runs the desktop
exactly as jupyter-server-proxy starts it (``python -m batchspawner.job.apps vnc --socket S``, here the
module file run by the node's own ``/usr/bin/python3``); the attacker ``bob`` runs his own processes.

Each desktop runs in a private mount namespace whose ``/tmp`` is a fresh, empty, root-owned 1777
folder of the test (bind-mounted): like a node without systemd-tmpfiles (no ``/tmp/.X11-unix``),
the host's /tmp stays clean, and what is left behind can be inspected after the desktop ends.
Abstract unix sockets (``@/tmp/.X11-unix/XN``) belong to the network namespace, which stays shared:
bob squats them exactly as he would on a real node.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"  # the node's own Python: the job-side code is stdlib-only
VICTIM, ATTACKER = "alice", "bob"

# run as the attacker: connect to an X display without (or with a given) cookie; one JSON line per try
X_CLIENT = r"""
import json, socket, struct, sys
def attempt(address, cookie):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(address)
    except OSError as e:
        return "no-connect: %s" % e
    name = b"MIT-MAGIC-COOKIE-1" if cookie else b""
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    s.sendall(struct.pack("<cxHHHHxx", b"l", 11, 0, len(name), len(cookie)) + pad(name) + pad(cookie))
    try:
        first = s.recv(1)
    except OSError as e:
        return "no-answer: %s" % e
    return {b"\0": "refused", b"\1": "accepted", b"\2": "authenticate", b"": "closed"}.get(first, repr(first))
display, cookies = sys.argv[1], json.loads(sys.stdin.read() or "[]")
for address in ("\0/tmp/.X11-unix/X" + display, "/tmp/.X11-unix/X" + display):
    for cookie in [""] + cookies:
        print(json.dumps([address.replace("\0", "@"), cookie, attempt(address, bytes.fromhex(cookie))]), flush=True)
"""

# run as the attacker: read every process's argv and environment it can, as fast as it can, until told to stop
WATCHER = r"""
import json, os, sys
stop, young, texts, seen = sys.argv[1], {}, [], set()
while not os.path.exists(stop):
    for pid in os.listdir("/proc"):
        if pid.isdigit() and pid not in seen:
            seen.add(pid)
            young[pid] = 30  # a new pid is read again for 30 rounds: it may exec after the fork
    for pid in list(young):
        young[pid] -= 1
        if young[pid] <= 0:
            del young[pid]
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (pid, what), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data and (not texts or texts[-1][:2] != [pid, what] or texts[-1][2] != data.hex()):
                texts.append([pid, what, data.hex()])
print(json.dumps({"pids": len(seen), "texts": texts}))
"""

# run as the attacker: hold abstract X sockets (argv: display numbers) and, when asked, plant his own
# /tmp/.X11-unix with path sockets; print "ready" then wait until stdin closes
SQUATTER = r"""
import os, socket, sys
held = []
for n in sys.argv[1].split(","):
    s = socket.socket(socket.AF_UNIX)
    s.bind("\0/tmp/.X11-unix/X" + n)
    s.listen(5)
    held.append(s)
if sys.argv[2] == "plant":
    os.makedirs("/tmp/.X11-unix", exist_ok=True)
    os.chmod("/tmp/.X11-unix", 0o777)
    for n in sys.argv[1].split(","):
        s = socket.socket(socket.AF_UNIX)
        s.bind("/tmp/.X11-unix/X" + n)
        s.listen(5)
        held.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


def _uid(user):
    return pwd.getpwnam(user).pw_uid


def _as(user, *argv):
    return ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", f"HOME={pwd.getpwnam(user).pw_dir}",
            f"USER={user}", "LANG=C.UTF-8", *argv]


def _in_ns(tmp, argv):
    """``argv`` in a private mount namespace whose /tmp is ``tmp``."""
    return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", 'mount --bind "$0" /tmp && exec "$@"',
            str(tmp), *argv]


def _procs():
    """{pid: (uid, argv list)} of every live process (root reads all)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        out[int(pid)] = (uid, [a.decode(errors="replace") for a in argv if a])
    return out


def _ppid(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _abstract_x_sockets():
    names = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        m = re.search(r"@/tmp/\.X11-unix/X(\d+)$", line)
        if m:
            names.add(int(m.group(1)))
    return names


def _xauthority_cookies(data):
    """The cookies (hex) of an Xauthority file's entries."""
    cookies, i = [], 0
    while i + 2 <= len(data):
        i += 2  # family
        fields = []
        for _ in range(4):
            (n,) = struct.unpack(">H", data[i:i + 2])
            fields.append(data[i + 2:i + 2 + n])
            i += 2 + n
        cookies.append(fields[3].hex())
    return cookies


def new_tmp(base):
    """A folder to be a namespace's /tmp: what a node's /tmp is, root-owned, sticky, world-writable."""
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=base))
    tmp.chmod(0o1777)
    return tmp


class Desktop:
    """One ``apps vnc`` run of the victim in its own mount namespace."""

    def __init__(self, base: Path, apps: Path, env=(), tmp=None):
        self.tmp = tmp or new_tmp(base)
        self.rundir = Path(tempfile.mkdtemp(prefix="run-", dir=base))  # jupyter-server-proxy's private folder
        shutil.chown(self.rundir, VICTIM, VICTIM)
        self.rundir.chmod(0o700)
        self.sock = self.rundir / "vnc.sock"
        self.output = Path(tempfile.mkstemp(prefix="out-", dir=base)[1])  # a file: a pipe would wait for orphans
        with open(self.output, "w") as out:
            self.proc = subprocess.Popen(_in_ns(self.tmp, _as(VICTIM, *env, PY, str(apps), "vnc", "--socket",
                                                             str(self.sock))),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.apps_pid = self.xvnc_pid = self.display = self.xauth = None

    def wait_up(self, timeout=40):
        """The VNC socket answers RFB and the victim's Xvnc runs; returns its display number."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the desktop ended ({self.proc.returncode}) instead of coming up:\n"
                                     + self.output.read_text()[-3000:])
            if self.sock.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.settimeout(5)
                        s.connect(str(self.sock))
                        if s.recv(12).startswith(b"RFB "):
                            break
                except OSError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError("the desktop did not come up in time")
        for pid, (uid, argv) in _procs().items():
            if uid == _uid(VICTIM) and argv and argv[0].endswith("Xvnc") and str(self.sock) in argv:
                self.xvnc_pid = pid
                self.display = int(next(a for a in argv if re.fullmatch(r":\d+", a))[1:])
                self.xauth = argv[argv.index("-auth") + 1]
            if uid == _uid(VICTIM) and argv[:1] == [PY] and "vnc" in argv and str(self.sock) in argv \
                    and os.stat(f"/proc/{_ppid(pid)}").st_uid == 0:  # runuser's child, not a fork before exec
                self.apps_pid = pid
        assert self.xvnc_pid and self.apps_pid, _procs()
        return self.display

    def cookies(self):
        """The X cookies in the desktop's authority file (read as root, through the namespace's /tmp)."""
        path = self.xauth
        if path.startswith("/tmp/"):
            path = str(self.tmp / path[len("/tmp/"):])
        return _xauthority_cookies(Path(path).read_bytes())

    def wait_ended(self, timeout=20):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the desktop program did not end")
        return self.output.read_text()

    def leftovers(self):
        """What this desktop left: files in its /tmp, live processes of its, its abstract X socket."""
        left = sorted(p.name for p in self.tmp.iterdir())
        live = [pid for pid, (uid, argv) in _procs().items()
                if uid == _uid(VICTIM) and (str(self.sock) in argv or pid in self.session_pids())]
        sockets = [self.display] if self.display in _abstract_x_sockets() else []
        return left, live, sockets

    def wait_session(self, timeout=30):
        """(xterm, its shell) once the session's xterm runs the user's shell."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in self.session_pids():
                if _procs().get(pid, (0, [""]))[1][:1] == ["xterm"]:
                    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                    if children:
                        return pid, int(children[0])
            time.sleep(0.2)
        raise AssertionError("the session's xterm did not start its shell")

    def session_pids(self):
        """The victim's processes on this desktop's display (its session)."""
        pids = []
        for pid, (uid, _) in _procs().items():
            if uid == _uid(VICTIM) and self.display is not None:
                try:
                    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"DISPLAY=:{self.display}".encode() in env:
                    pids.append(pid)
        return pids

    def stop(self):
        """Teardown: whatever of this desktop still runs (the old code left Xvnc behind)."""
        for pid in (self.apps_pid, self.xvnc_pid, *self.session_pids()):
            if pid and pid in _procs() and _procs()[pid][0] == _uid(VICTIM):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def node(tmp_path_factory):
    """The module file where the victim can read it, and a folder for the desktops' /tmp and sockets."""
    require(bool(shutil.which("Xvnc")) and bool(shutil.which("xterm")), "TigerVNC/xterm not installed (scripts/setup-apps.sh)")
    require(bool(shutil.which("unshare")) and bool(shutil.which("runuser")) and os.geteuid() == 0,
            "needs root, unshare and runuser")
    for user in (VICTIM, ATTACKER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            require(False, f"user {user} missing (scripts/ensure-users.sh)")
    base = Path(tempfile.mkdtemp(prefix="jhpc-desk-", dir="/var/tmp"))
    base.chmod(0o755)
    apps = base / "apps.py"
    shutil.copy(REPO / "batchspawner" / "job" / "apps.py", apps)
    apps.chmod(0o644)
    started = []

    def desktop(env=(), tmp=None):
        d = Desktop(base, apps, env, tmp)
        started.append(d)
        return d

    yield base, desktop
    for d in started:
        d.stop()
    shutil.rmtree(base, ignore_errors=True)


def _x_tries(user, display, cookies=(), tmp=None):
    argv = _as(user, PY, "-c", X_CLIENT, str(display))
    if tmp is not None:
        argv = _in_ns(tmp, argv)
    r = subprocess.run(argv, input=json.dumps(list(cookies)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_x_cookie_is_never_visible_to_another_user_and_the_display_refuses_him(node):
    base, desktop = node
    stop = base / "stop-watcher"
    watcher = subprocess.Popen(_as(ATTACKER, PY, "-c", WATCHER, str(stop)), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        cookies, runs = [], []
        for _ in range(3):  # three desktop starts under the watcher's eyes
            d = desktop()
            d.wait_up()
            cookies += d.cookies()
            runs.append(d)
            if len(runs) < 3:
                os.kill(d.apps_pid, signal.SIGTERM)
                d.wait_ended()
        time.sleep(0.5)
    finally:
        stop.touch()
        out, _ = watcher.communicate(timeout=60)
    seen = json.loads(out)
    texts = [(pid, what, bytes.fromhex(data)) for pid, what, data in seen["texts"]]
    assert cookies and all(len(c) == 32 for c in cookies), cookies
    # the watcher really watched: it read the victim's Xvnc command line
    assert any(what == "cmdline" and b"Xvnc" in data and str(runs[-1].sock).encode() in data
               for _, what, data in texts), f"the watcher saw {seen['pids']} pids but not the victim's Xvnc"
    # bob tries the live display: no cookie, a wrong one, and every 32-hex word he saw anywhere
    d = runs[-1]
    guesses = {m.decode() for _, _, data in texts for m in re.findall(rb"\b[0-9a-f]{32}\b", data.lower())}
    tries = _x_tries(ATTACKER, d.display, ["00" * 16, *sorted(guesses)], tmp=d.tmp)
    assert tries and [t for t in tries if t[2] == "accepted"] == [], f"the attacker got in: {tries}"
    leaked = [(pid, what, data[:300]) for pid, what, data in texts for c in cookies
              if c.encode() in data.lower() or bytes.fromhex(c) in data]
    assert leaked == [], f"the attacker read the victim's X cookie in: {leaked}"

    assert any(address.startswith("@") and result == "refused" for address, cookie, result in tries
               if cookie == ""), tries  # the server is there and says no
    if shutil.which("xdpyinfo"):
        r = subprocess.run(_in_ns(d.tmp, _as(ATTACKER, "xdpyinfo", "-display", f":{d.display}")),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "Authorization required" in (r.stdout + r.stderr), (r.stdout, r.stderr)
    # positive control: the victim, with her cookie, is let in
    mine = _x_tries(VICTIM, d.display, d.cookies()[:1], tmp=d.tmp)
    assert ["@/tmp/.X11-unix/X%d" % d.display, d.cookies()[0], "accepted"] in mine, mine


def _free_from(n):
    used = _abstract_x_sockets()
    while n in used or os.path.exists(f"/tmp/.X11-unix/X{n}") or os.path.exists(f"/tmp/.X{n}-lock"):
        n += 1
    return n


@pytest.mark.parametrize("plant", ["abstract", "plant"])
def test_squatted_display_gives_the_next_one_and_no_user_owned_x11_dir(node, plant):
    """bob holds the abstract sockets (and in "plant" his own /tmp/.X11-unix with path sockets) of
    the displays the desktop would pick; it comes up on another display, owned by the victim, and
    never creates /tmp/.X11-unix as the victim."""
    base, desktop = node
    first = _free_from(10)
    squatted = [first, _free_from(first + 1)]
    tmp = new_tmp(base)
    squatter = subprocess.Popen(_in_ns(tmp, _as(ATTACKER, PY, "-c", SQUATTER, ",".join(map(str, squatted)), plant)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "ready"
        d = desktop(tmp=tmp)
        display = d.wait_up()
        assert display not in squatted
        tries = _x_tries(VICTIM, display, d.cookies()[:1], tmp=d.tmp)
        assert ["@/tmp/.X11-unix/X%d" % display, d.cookies()[0], "accepted"] in tries, tries
        x11 = d.tmp / ".X11-unix"
        if plant == "plant":
            assert x11.stat().st_uid == _uid(ATTACKER)  # bob's, untouched
            assert sorted(p.name for p in x11.iterdir()) == sorted(f"X{n}" for n in squatted)
        else:
            assert not x11.exists(), f"/tmp/.X11-unix created, owner uid {x11.stat().st_uid}"
        os.kill(d.apps_pid, signal.SIGTERM)
        d.wait_ended()
        left, live, sockets = d.leftovers()
        assert [n for n in left if n != ".X11-unix"] == [] and live == [] and sockets == [], (left, live, sockets)
    finally:
        squatter.stdin.close()
        squatter.wait(10)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "Xvnc killed", "session ends"])
def test_desktop_leaves_nothing_behind_on_every_exit(node, how):
    base, desktop = node
    d = desktop()
    d.wait_up()
    xterm, shell = d.wait_session()  # the desktop is fully up: xterm runs the user's shell
    if how == "SIGTERM":
        os.kill(d.apps_pid, signal.SIGTERM)
    elif how == "SIGHUP":
        os.kill(d.apps_pid, signal.SIGHUP)
    elif how == "Xvnc killed":
        os.kill(d.xvnc_pid, signal.SIGKILL)
    else:  # the user leaves the session: her shell in the xterm exits
        os.kill(shell, signal.SIGHUP)
    d.wait_ended()
    left, live, sockets = d.leftovers()
    assert left == [], f"left in /tmp: {left}"  # no private folder, no /tmp/.X11-unix, no lock
    assert live == [] and sockets == [], (live, sockets)
    assert not d.sock.exists()
