"""Another local user's listener on a port of the hub host (run as bob, inside the hub's network
namespace): binds 127.0.0.1:PORT, answers 200 to anything and records each request.

Usage: takeover_listener.py PORT OUT_FILE SECONDS. Writes OUT_FILE.bound once it holds the port."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT, SECONDS = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def _any(self):
        with LOCK, open(OUT, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers.items())}) + "\n")
        data = b'{"taker": true, "version": "9.9.9"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
open(OUT, "a").close()
open(OUT + ".bound", "w").close()
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(SECONDS)
