"""``batchspawner-singleuser``: runs inside the batch job.

Usage: ``batchspawner-singleuser COMMAND [ARGS...]``

1. picks a free TCP port on this node and starts COMMAND **as its child** at once, telling it
   the port through ``JUPYTERHUB_SERVICE_URL`` (and ``{port}`` in ARGS, for other web apps);
2. waits until that child (or a process it started) holds a *listening* socket: the LISTEN
   rows of ``/proc/<child>/net/tcp`` and ``tcp6`` give the socket inodes listening on each
   port, and only an inode that is one of the child's own descriptors (``/proc/<pid>/fd``)
   counts. A port someone else listens on is never reported;
3. only then reports that port to the hub (``POST $JUPYTERHUB_API_URL/batchspawner`` with the
   server's own token), retrying with backoff while the hub is unreachable. The report means
   "my server listens on this port now": the hub connects once and the spawn is done;
   With the report it says whether its server answers the hub's *proof* (batchspawner/job/proof.py,
   issue 21): the wrapper copies that standalone jupyter_server extension into a private 0700
   directory, enables it for the server (``JUPYTER_CONFIG_PATH``, ``PYTHONPATH``; the extension
   takes both back off the environment the server's kernels inherit), and before reporting asks
   its own server once, on the exact address it listens on. Only if the answer is right does
   the report carry ``"proof"``; the hub then asks again itself (``server_proof``);
4. stays the server's parent: forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to it and
   exits with its exit code.

The job's output file names neither the port nor the token. The wrapper prints neither, and it
passes the server's own output through, line by line, with the port number replaced by
``<port>``: Jupyter Server prints its URL *before* it binds the port, and another user who can
read the output file (a shared home) could take the port in that gap. It prints its own phase
timings (seconds since it started: server started, server
listening, reported) there, so a slow start can be named.

Why not report first and start the server after (as batchspawner 1.3 does)? Between the
report and the server's bind, anyone on a shared node could listen on the reported port and
receive the user's requests with her token. Starting the server first also overlaps its
start-up (imports) with the wrapper's own: this module imports only the standard library, and
the HTTP/TLS modules only after the server is started.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

from batchspawner.job.listeners import (  # noqa: F401 (also this module's names, as in 0.1)
    ReportError, choose_port, descendants, listeners, own_listening_ports, parse_listeners, socket_inodes,
    wait_until_listening,
)

_T0 = time.monotonic()
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def _say(msg):
    print(f"batchspawner-singleuser: {msg}", file=sys.stderr, flush=True)


def _phase(name):
    """One timing line: wall clock (to line up with the hub's log) and seconds since start."""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    _say(f"[{stamp} +{time.monotonic() - _T0:.3f} s] {name}")


# ------------------------------------------------------------------ the report
def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (and for bind to port 0)."""
    try:
        with open(path) as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, ip: str = "") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def pick_port(ip: str = "", attempts: int = 64) -> int:
    """A free TCP port *below* the kernel's ephemeral range.

    Between this choice and the server's bind (seconds, a minute on a busy node) the port is
    free for anyone: a port from the ephemeral range (what bind to 0 gives) is also what every
    outgoing connection on the node takes, and one did, in a storm of 30 servers on one node.
    Below that range only an explicit bind can take it (and a server that loses it anyway is
    started again on another port, see main)."""
    import random

    low, _ = ephemeral_range()
    first, last = max(1024, low - 20000), low - 1
    for _ in range(attempts if last > first else 0):
        port = random.randint(first, last)
        if port_is_free(port, ip):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _ssl_context():
    import ssl

    ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert, key = os.environ.get("JUPYTERHUB_SSL_CERTFILE"), os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


# ------------------------------------------------------------------ the proof (issue 21)
PROOF_MODULE = "batchspawner_proof"


def install_proof(env: dict) -> str:
    """Put the proof extension where the server's Python finds and enables it; returns the
    private directory (the caller removes it), or "" if that failed (the report then claims
    no proof). ``env`` (the server's environment) gets the paths."""
    import json
    import tempfile

    try:
        from batchspawner.job import proof

        with open(proof.__file__, encoding="utf-8") as f:
            source = f.read()
        private = tempfile.mkdtemp(prefix="jhpc-proof-")  # 0700: the user's own
        os.mkdir(os.path.join(private, "py"), 0o700)
        os.mkdir(os.path.join(private, "jupyter_server_config.d"), 0o700)
        with open(os.path.join(private, "py", PROOF_MODULE + ".py"), "w", encoding="utf-8") as f:
            f.write(source)
        with open(os.path.join(private, "jupyter_server_config.d", PROOF_MODULE + ".json"), "w") as f:
            json.dump({"ServerApp": {"jpserver_extensions": {PROOF_MODULE: True}}}, f)
    except (OSError, ImportError) as e:
        _say(f"cannot set up the hub's proof ({e}); the server is reported without it")
        return ""
    for name, entry in (("JUPYTER_CONFIG_PATH", private), ("PYTHONPATH", os.path.join(private, "py"))):
        env[name] = entry + (os.pathsep + env[name] if env.get(name) else "")
    env["BATCHSPAWNER_PROOF_DIR"] = private
    return private


def probe_address(addresses) -> str:
    """Where to ask one's own server: its listening address (loopback for a wildcard)."""
    addresses = set(addresses)
    for wildcard, loopback in (("0.0.0.0", "127.0.0.1"), ("::", "::1")):
        if wildcard in addresses:
            return loopback
    return sorted(addresses)[0] if addresses else "127.0.0.1"


def self_proof(address: str, port: int, prefix: str, token: str, timeout: float = 5.0) -> bool:
    """Whether one's own server answers the proof right (as the hub will ask it)."""
    import asyncio

    from batchspawner.job import proof

    try:
        asyncio.run(proof.probe(address, port, prefix, token, (address, port), timeout=timeout))
        return True
    except proof.ProofError as e:
        _say(f"the server does not answer the hub's proof ({e}); reporting without it")
        return False


def report_port(port: int, api_url: str, token: str, timeout: float = 120.0, log=print, proof: bool = False) -> None:
    """POST the port to the hub; retry connection errors and 5xx until ``timeout``.

    Messages (``log``) never name the port or the token."""
    import json
    import random
    import urllib.error
    import urllib.request

    url = api_url.rstrip("/") + "/batchspawner"
    body = json.dumps({"port": port, "proof": "hmac-sha256-v1"} if proof else {"port": port}).encode()
    deadline = time.monotonic() + timeout
    delay = 0.25
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
                f"could not report the server's port to the hub at {url} after {attempt} attempts "
                f"({timeout:g} s): {problem}. Can this node reach the hub?"
            )
        log(f"batchspawner-singleuser: hub not reachable yet ({problem}); retrying in {delay:.1f} s")
        time.sleep(delay + random.uniform(0, delay / 4))
        delay = min(delay * 2, 10)


def report_end(api_url: str, token: str, timeout: float = 3.0) -> bool:
    """Tell the hub that this job's server has ended (issue 24), so it looks at the job now.

    Best effort, bounded (``timeout``), never raises: the hub's polling stays the source of
    truth (the report alone never ends a server), and a hub that already stopped the server
    answers 403, which is fine. Authenticated with the server's own token, like the port report."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        api_url.rstrip("/") + "/batchspawner",
        data=json.dumps({"event": "ended"}).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_ssl_context()) as resp:
            resp.read()
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def resolve_command(name: str) -> str:
    import shutil

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
    from urllib.parse import urlparse, urlunparse

    parts = urlparse(service_url)
    host = parts.hostname or "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    return urlunparse(parts._replace(netloc=f"{host}:{port}"))


def redactor(ports):
    """A function that replaces each of ``ports`` (a set, may grow) where it appears as a port."""
    import re

    def redact(line: bytes) -> bytes:
        for port in list(ports):
            line = re.sub(rb"(?<![0-9])" + str(port).encode() + rb"(?![0-9])", b"<port>", line)
        return line

    return redact


def pump(src, dst_fd: int, redact):
    """Copy lines from the server's pipe to our own output, redacted, until it closes."""
    import threading

    def run():
        with src:
            for line in iter(src.readline, b""):
                try:
                    os.write(dst_fd, redact(line))
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _stop(child: subprocess.Popen, grace: float = 10.0):
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def private_output(fds=(1, 2)) -> None:
    """Make the job's log (our stdout/stderr, when a file of ours) readable by its owner only.

    The scheduler creates it with the user's umask (often 0644) before the job starts; the hub's
    log folder is 0700. Under ``srun`` our output is a pipe to the step: the Slurm and Grid Engine
    script templates make the log private themselves (``chmod go= /proc/self/fd/1``), so the hub
    runs no command per spawn for it."""
    for fd in fds:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
        except OSError:
            pass


PORT_ATTEMPTS = 3


def start_server(command, args, service_url, port, ports, extra_env=None):
    """Start the server as our child on ``port``; (child, output pumps), or (None, None)."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env["JUPYTERHUB_SERVICE_URL"] = with_port(service_url, port)
    env["BATCHSPAWNER_PORT"] = str(port)
    args = [a.replace("{port}", str(port)) for a in args]
    sys.stdout.flush()
    try:
        child = subprocess.Popen([command] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        _say(f"cannot start {command}: {e.strerror}")
        return None, None
    pumps = [pump(child.stdout, 1, redactor(ports)), pump(child.stderr, 2, redactor(ports))]
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, frame: child.poll() is None and child.send_signal(signum))
    return child, pumps


def main(argv=None) -> int:
    _phase("start")
    private_output()
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
            _say(f"cannot read the token file {token_file}: {e.strerror}")
            return 2
    try:
        api_url = os.environ["JUPYTERHUB_API_URL"]
        token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ["JPY_API_TOKEN"]
    except KeyError as e:
        _say(f"{e.args[0]} is not set; was this started by the hub?")
        return 2
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/")
    host = service_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    report_timeout = float(os.environ.get("BATCHSPAWNER_REPORT_TIMEOUT", "300"))
    listen_timeout = float(os.environ.get("BATCHSPAWNER_LISTEN_TIMEOUT", "600"))
    bind_ip = "" if host in ("0.0.0.0", "", "::") else host
    try:
        command = resolve_command(argv[0])
    except ReportError as e:
        _say(str(e))
        return 1
    ports: set[int] = set()
    proof_env: dict = {k: os.environ[k] for k in ("JUPYTER_CONFIG_PATH", "PYTHONPATH") if k in os.environ}
    proof_dir = install_proof(proof_env)
    try:
        return _run(command, argv, service_url, bind_ip, api_url, token, ports, proof_env if proof_dir else {},
                    listen_timeout, report_timeout)
    finally:
        if proof_dir:
            import shutil

            shutil.rmtree(proof_dir, ignore_errors=True)


def _run(command, argv, service_url, bind_ip, api_url, token, ports, proof_env, listen_timeout, report_timeout):
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            port = pick_port(bind_ip)
        except OSError as e:
            _say(f"cannot pick a port: {e.strerror or e}")
            return 1
        ports.add(port)
        child, pumps = start_server(command, argv[1:], service_url, port, ports, proof_env)
        if child is None:
            return 1
        _phase(f"server started ({os.path.basename(command)})")
        try:
            listening = wait_until_listening(child, port, listen_timeout)
        except ReportError as e:
            _stop(child)
            for thread in pumps:
                thread.join(5)
            if child.returncode not in (None, 0) and not port_is_free(port, bind_ip) and attempt < PORT_ATTEMPTS:
                # someone else took the port before the server could bind it: another port, same server
                _say(f"the server could not bind its port (taken by another process meanwhile); "
                     f"starting it again on another port (attempt {attempt + 1} of {PORT_ATTEMPTS})")
                continue
            _say(str(e))
            return 1
        break
    ports.add(listening)
    _phase("server listening")
    proven = False
    private = proof_env.get("BATCHSPAWNER_PROOF_DIR", "")
    if private and not os.path.exists(os.path.join(private, "loaded")):
        _say("the server did not load the hub's proof extension (not Jupyter Server?); reporting without it")
    elif private:
        addresses = own_listening_ports(child.pid, whole_tree=True).get(listening, set())
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        proven = self_proof(probe_address(addresses), listening, prefix, token)
    try:
        report_port(listening, api_url, token, timeout=report_timeout,
                    log=lambda m: print(m, file=sys.stderr, flush=True), proof=proven)
        _phase("reported to the hub")
    except ReportError as e:
        _stop(child)
        for thread in pumps:
            thread.join(5)
        _say(str(e))
        return 1
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:  # SIGINT is forwarded; keep waiting for the server to end
            continue
    # issue 24: the hub unroutes within seconds instead of at its next poll
    if report_end(api_url, token):
        _phase("end reported to the hub")
    for thread in pumps:
        thread.join(5)
    return code


if __name__ == "__main__":
    sys.exit(main())
