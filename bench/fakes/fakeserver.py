#!/usr/bin/python3
"""A tiny stand-in for ``batchspawner-singleuser`` + ``jupyterhub-singleuser`` (benchmark only).

Runs inside the batch job. Listens on a free port, reports it to the hub like
batchspawner-singleuser does (``POST $JUPYTERHUB_API_URL/batchspawner`` with
``{"port": N}`` and the server's token), then answers every GET with HTTP 200.
Both jupyterhub/batchspawner 1.3 and jupyterhub-hpc accept this report. Any
arguments (the configured cmd) are ignored. Uses only the standard library, so
it starts in a few milliseconds and costs almost no CPU: the benchmark then
measures the scheduler side, not Jupyter.
"""

import json
import os
import signal
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"fake": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def token():
    path = os.environ.get("JUPYTERHUB_API_TOKEN_FILE")
    if path and os.path.exists(path):
        with open(path) as f:
            value = f.read().strip()
        os.unlink(path)
        return value
    return os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("JPY_API_TOKEN", "")


def report(port, tok):
    url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner"
    deadline = time.monotonic() + 120
    while True:
        req = urllib.request.Request(
            url, data=json.dumps({"port": port}).encode(), method="POST",
            headers={"Authorization": f"token {tok}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
                return
        except Exception as e:  # noqa: BLE001 - retry anything until the deadline
            if time.monotonic() > deadline:
                print(f"fakeserver: could not report port: {e}", file=sys.stderr)
                sys.exit(1)
            time.sleep(0.5)


def main():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server = HTTPServer(("0.0.0.0", 0), Handler)
    port = server.server_address[1]
    report(port, token())
    print(f"fakeserver: listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
