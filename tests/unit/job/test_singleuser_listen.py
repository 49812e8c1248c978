"""batchspawner-singleuser reports only a port its own server already listens on (issue 11, item 1).

The /proc check against a hand-made /proc tree (another process's listener on the same port
never counts), then against real processes and real sockets on this machine, then the whole
wrapper as a real process reporting to a loopback stand-in for the hub.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from batchspawner.job import singleuser

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def row(local, st, inode, uid=1001):
    return f"   0: {local} 00000000:0000 {st} 00000000:00000000 00:00000000 00000000  {uid}        0 {inode} 1\n"


def test_parse_listeners_reads_listen_rows_of_both_families():
    tcp = HEADER + row("00000000:1F90", "0A", 111) + row("0100007F:1F91", "0A", 112) + row("0100007F:1F92", "01", 113)
    tcp6 = HEADER + row("00000000000000000000000000000000:1F90", "0A", 211) + row(
        "00000000000000000000000001000000:1F93", "0A", 212
    )
    assert singleuser.parse_listeners(tcp, "tcp") == {111: (8080, "0.0.0.0"), 112: (8081, "127.0.0.1")}
    assert singleuser.parse_listeners(tcp6, "tcp6") == {211: (8080, "::"), 212: (8083, "::1")}


def fake_proc(tmp_path, procs, tcp="", tcp6=""):
    """procs: {pid: (ppid, [socket inodes])}; every pid sees the same net tables."""
    for pid, (ppid, inodes) in procs.items():
        d = tmp_path / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "net").mkdir()
        (d / "net" / "tcp").write_text(HEADER + tcp)
        (d / "net" / "tcp6").write_text(HEADER + tcp6)
        (d / "stat").write_text(f"{pid} (some (odd) name) S {ppid} 1 1 0 -1")
        for n, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", d / "fd" / str(n + 3))
        os.symlink("/dev/null", d / "fd" / "0")
    return str(tmp_path)


def test_a_listener_of_another_process_on_the_same_port_does_not_count(tmp_path):
    # bob (pid 900) listens on [::]:8080; alice's server (pid 100) holds only a client socket
    proc = fake_proc(
        tmp_path,
        {100: (1, [555]), 900: (1, [211])},
        tcp=row("0100007F:D000", "01", 555),
        tcp6=row("00000000000000000000000000000000:1F90", "0A", 211),
    )
    assert singleuser.own_listening_ports(100, proc) == {}
    assert singleuser.own_listening_ports(100, proc, whole_tree=True) == {}
    assert singleuser.choose_port({}, 8080) is None


def test_the_servers_own_listener_counts_also_in_a_grandchild(tmp_path):
    proc = fake_proc(
        tmp_path,
        {100: (1, []), 101: (100, []), 102: (101, [111]), 900: (1, [211])},
        tcp=row("00000000:1F90", "0A", 111),
        tcp6=row("00000000000000000000000000000000:1F90", "0A", 211),
    )
    assert singleuser.own_listening_ports(100, proc) == {}
    assert singleuser.own_listening_ports(100, proc, whole_tree=True) == {8080: {"0.0.0.0"}}
    assert singleuser.descendants(100, proc) == {100, 101, 102}


def test_choose_port_prefers_the_asked_port_and_takes_a_single_other():
    assert singleuser.choose_port({8080: {"0.0.0.0"}, 8081: {"0.0.0.0"}}, 8081) == 8081
    assert singleuser.choose_port({8082: {"0.0.0.0"}}, 8081) == 8082  # jupyter moved on: its own port
    assert singleuser.choose_port({8082: {"0.0.0.0"}, 8083: {"0.0.0.0"}}, 8081) is None


SERVER = "import socket,sys,time; time.sleep(float(sys.argv[2])); s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(30)"


def test_wait_until_listening_with_real_processes():
    # the test process itself listens on the port first: the child's check must not accept it
    squat = socket.socket()
    squat.bind(("127.0.0.1", 0))
    squat.listen()
    taken = squat.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(taken), "0"])
    try:
        with pytest.raises(singleuser.ReportError, match="exited"):  # EADDRINUSE: the child dies
            singleuser.wait_until_listening(child, taken, timeout=10)
    finally:
        child.kill()
        child.wait()
        squat.close()
    port = singleuser.pick_port("127.0.0.1")
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(port), "0.3"])
    try:
        t0 = time.monotonic()
        assert singleuser.wait_until_listening(child, port, timeout=10) == port
        assert time.monotonic() - t0 >= 0.3
    finally:
        child.kill()
        child.wait()


def test_wait_until_listening_gives_up_after_the_timeout():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(singleuser.ReportError, match="did not listen"):
            singleuser.wait_until_listening(child, 1, timeout=0.3)
    finally:
        child.kill()
        child.wait()


class Hub:
    """Loopback stand-in for the hub: on each report, checks the reported port accepts at once."""

    def __init__(self):
        self.reports = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    socket.create_connection(("127.0.0.1", body["port"]), 1).close()
                    listening = True
                except OSError:
                    listening = False
                outer.reports.append((body, self.headers["Authorization"], listening))
                self.send_response(201)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# prints its URL before it binds (as Jupyter Server does), on stdout and stderr
APP = (
    "import os,socket,sys,time; from urllib.parse import urlparse;"
    "port = urlparse(os.environ['JUPYTERHUB_SERVICE_URL']).port;"
    "print(f'running at http://0.0.0.0:{port}/user/alice/', flush=True);"
    "print(f'[I] port {port} in use? no, port={port}', file=sys.stderr, flush=True);"
    "time.sleep(0.5); s=socket.socket(); s.bind(('0.0.0.0', port));"
    "s.listen(); print('app up', flush=True); time.sleep(float(sys.argv[1])); sys.exit(7)"
)


def test_wrapper_reports_only_after_its_server_listens_and_prints_neither_port_nor_token(tmp_path):
    hub = Hub()
    env = dict(os.environ, JUPYTERHUB_API_URL=hub.url, JUPYTERHUB_API_TOKEN="tok-s3cret-4242",
               JUPYTERHUB_SERVICE_URL="http://0.0.0.0:0/user/alice/")
    done = subprocess.run(
        [sys.executable, "-m", "batchspawner.job.singleuser", sys.executable, "-c", APP, "0.5"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    hub.server.shutdown()
    assert done.returncode == 7, done.stderr  # the server's own exit code
    [(body, auth, listening)] = hub.reports
    assert auth == "token tok-s3cret-4242" and listening is True
    port = body["port"]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("batchspawner-singleuser: [")]
    # not Jupyter Server: no proof extension loaded, the report says so by not claiming it
    assert "did not load the hub's proof extension" in done.stderr and "proof" not in body
    phases = [ln.split("] ", 1)[1].split(" (")[0] for ln in lines]
    assert phases == ["start", "server started", "server listening", "reported to the hub"]
    out = done.stdout + done.stderr
    assert str(port) not in out and "s3cret" not in out
    # the server's own lines pass through, with the port replaced
    assert "running at http://0.0.0.0:<port>/user/alice/" in done.stdout and "app up" in done.stdout
    assert "port <port> in use? no, port=<port>" in done.stderr


def test_wrapper_forwards_sigterm_and_fails_clearly_when_the_server_never_listens():
    hub = Hub()
    env = dict(os.environ, JUPYTERHUB_API_URL=hub.url, JUPYTERHUB_API_TOKEN="tok",
               BATCHSPAWNER_LISTEN_TIMEOUT="0.5")
    done = subprocess.run(
        [sys.executable, "-m", "batchspawner.job.singleuser", sys.executable, "-c", "import time; time.sleep(30)"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    hub.server.shutdown()
    assert done.returncode == 1 and hub.reports == []
    assert "did not listen on a port within 0.5 s" in done.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "batchspawner.job.singleuser", sys.executable, "-c",
         "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(42));"
         "print('child-ready', file=sys.stderr, flush=True); time.sleep(30)"],
        env=dict(env, BATCHSPAWNER_LISTEN_TIMEOUT="30"), stderr=subprocess.PIPE, text=True,
    )
    seen = []
    # the wrapper forwards signals once it has started the server; the server has its handler
    while not (any("server started" in ln for ln in seen) and any("child-ready" in ln for ln in seen)):
        seen.append(proc.stderr.readline())
        assert seen[-1], seen
    proc.terminate()
    assert proc.wait(20) == 1  # the server got SIGTERM (exited 42) before it listened
    assert "exited (code 42)" in proc.stderr.read()


def test_the_wrapper_does_not_import_jupyterhub():
    """The wrapper runs before the server in every job: importing JupyterHub there cost ~1.2 s.
    batchspawner/__init__.py imports its names lazily, and route registration lives in
    batchspawner.spawner; an eager import added to __init__ fails this test."""
    code = "import sys, batchspawner.job.singleuser; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jupyterhub', 'tornado', 'traitlets')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# the first start finds its port taken (a stand-in for any process that bound it after the wrapper
# chose it: the squatter holds it for 20 s) and exits 1 as Jupyter does; the second start listens
RACED_APP = (
    "import os,socket,subprocess,sys,time; from urllib.parse import urlparse;"
    "port = urlparse(os.environ['JUPYTERHUB_SERVICE_URL']).port;"
    "flag = sys.argv[1];"
    "first = not os.path.exists(flag); open(flag, 'a').close();"
    "squat = 'import socket,time; s=socket.socket(); s.bind((\"0.0.0.0\", %d)); s.listen(); time.sleep(5)' % port;"
    "first and subprocess.Popen([sys.executable, '-c', squat], start_new_session=True,"
    " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
    "time.sleep(0.5 if first else 0);"
    "s=socket.socket();"
    "exec('try:\\n s.bind((\"0.0.0.0\", port))\\nexcept OSError:\\n print(\"port in use\", flush=True); sys.exit(1)');"
    "s.listen(); print('app up', flush=True); time.sleep(0.5); sys.exit(7)"
)


def test_a_port_taken_before_the_server_binds_it_gets_the_server_started_again(tmp_path):
    """Between the wrapper's choice of a port and the server's bind, anyone may take the port (a
    storm of 30 servers on one node lost one spawn so). The wrapper starts the server again on
    another port, and reports only that one."""
    hub = Hub()
    env = dict(os.environ, JUPYTERHUB_API_URL=hub.url, JUPYTERHUB_API_TOKEN="tok",
               JUPYTERHUB_SERVICE_URL="http://0.0.0.0:0/user/alice/")
    done = subprocess.run(
        [sys.executable, "-m", "batchspawner.job.singleuser", sys.executable, "-c", RACED_APP, str(tmp_path / "flag")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    hub.server.shutdown()
    assert done.returncode == 7, done.stderr
    assert "starting it again on another port (attempt 2 of 3)" in done.stderr
    [(body, _, listening)] = hub.reports
    assert listening is True
    assert done.stdout.count("port in use") == 1 and "app up" in done.stdout


def test_ports_are_chosen_below_the_ephemeral_range(tmp_path):
    """Outgoing connections take their local ports from the ephemeral range: a port chosen below
    it can be lost only to an explicit bind."""
    low, high = singleuser.ephemeral_range()
    ports = {singleuser.pick_port("127.0.0.1") for _ in range(20)}
    assert all(1024 <= p < low for p in ports), (sorted(ports), low)
    assert len(ports) > 1  # random, not one fixed port
    bad = tmp_path / "range"
    bad.write_text("garbage")
    assert singleuser.ephemeral_range(str(bad)) == (32768, 60999)
