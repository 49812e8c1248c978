"""``batchspawner-singleuser``: runs inside the batch job.

Usage: ``batchspawner-singleuser COMMAND [ARGS...]``

1. picks a free TCP port on this node;
2. reports it to the hub (``POST $JUPYTERHUB_API_URL/batchspawner`` with the
   server's own token), retrying with backoff while the hub is unreachable;
3. replaces itself with COMMAND, telling it the port through
   ``JUPYTERHUB_SERVICE_URL`` (and ``{port}`` in ARGS, for other web apps).

The token is read from the environment and never printed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlunparse


class ReportError(RuntimeError):
    pass


def pick_port(ip: str = "") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, 0))
        return s.getsockname()[1]


def _ssl_context():
    ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert, key = os.environ.get("JUPYTERHUB_SSL_CERTFILE"), os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def report_port(port: int, api_url: str, token: str, timeout: float = 120.0, log=print) -> None:
    """POST the port to the hub; retry connection errors and 5xx until ``timeout``."""
    url = api_url.rstrip("/") + "/batchspawner"
    body = json.dumps({"port": port}).encode()
    deadline = time.monotonic() + timeout
    delay = 0.5
    ctx = _ssl_context()
    attempt = 0
    while True:
        attempt += 1
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                resp.read()
                return
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            if e.code < 500 and e.code != 429:
                raise ReportError(f"the hub refused the port report: HTTP {e.code} {detail}") from None
            problem = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            problem = str(getattr(e, "reason", e))
        if time.monotonic() + delay > deadline:
            raise ReportError(
                f"could not report port {port} to the hub at {url} after {attempt} attempts "
                f"({timeout:g} s): {problem}. Can this node reach the hub?"
            )
        log(f"batchspawner-singleuser: hub not reachable yet ({problem}); retrying in {delay:.1f} s")
        time.sleep(delay + random.uniform(0, delay / 4))
        delay = min(delay * 2, 10)


def resolve_command(name: str) -> str:
    if os.sep in name:
        return name
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if not found:
        raise ReportError(f"command not found: {name!r} (PATH={os.environ.get('PATH', '')})")
    return found


def with_port(service_url: str, port: int) -> str:
    parts = urlparse(service_url)
    host = parts.hostname or "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    return urlunparse(parts._replace(netloc=f"{host}:{port}"))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: batchspawner-singleuser COMMAND [ARGS...]", file=sys.stderr)
        return 2
    token_file = os.environ.pop("JUPYTERHUB_API_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file) as f:
                os.environ["JUPYTERHUB_API_TOKEN"] = f.read().strip()
            os.unlink(token_file)
        except OSError as e:
            print(f"batchspawner-singleuser: cannot read the token file {token_file}: {e.strerror}", file=sys.stderr)
            return 2
    try:
        api_url = os.environ["JUPYTERHUB_API_URL"]
        token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ["JPY_API_TOKEN"]
    except KeyError as e:
        print(f"batchspawner-singleuser: {e.args[0]} is not set; was this started by the hub?", file=sys.stderr)
        return 2
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/")
    bind_ip = urlparse(service_url).hostname or ""
    timeout = float(os.environ.get("BATCHSPAWNER_REPORT_TIMEOUT", "300"))
    try:
        command = resolve_command(argv[0])
        port = pick_port("" if bind_ip in ("0.0.0.0", "") else bind_ip)
        report_port(port, api_url, token, timeout=timeout, log=lambda m: print(m, file=sys.stderr, flush=True))
    except ReportError as e:
        print(f"batchspawner-singleuser: {e}", file=sys.stderr, flush=True)
        return 1
    os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(service_url, port)
    os.environ["BATCHSPAWNER_PORT"] = str(port)
    args = [a.replace("{port}", str(port)) for a in argv[1:]]
    print(f"batchspawner-singleuser: reported port {port}; starting {command}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(command, [command] + args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
