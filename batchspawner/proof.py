"""Proof that the server the hub reaches is the job's own: an HMAC of the hub's nonce.

Two halves in one standalone file (standard library and tornado only, no batchspawner import):

- **server side**, a jupyter_server extension. ``batchspawner-singleuser`` copies this file as
  ``batchspawner_proof.py`` into a private (0700) directory of the job and enables it for the
  server it starts (``JUPYTER_CONFIG_PATH`` and ``PYTHONPATH`` point there), so it runs on the
  node's own Python even where the server's environment lacks this package. It serves
  ``GET {base_url}batchspawner/proof`` without login: the request carries a random nonce
  (``X-Batchspawner-Nonce``) and the answer is ``HMAC-SHA256(token, scheme, nonce, address,
  port)`` where token is the server's ``JUPYTERHUB_API_TOKEN`` (only in the job's private
  environment) and address/port are what the server's own socket says the connection came in on.
  The token never leaves the process; an HMAC of a nonce tells nothing about it.
- **hub side**, :func:`probe`: sends a fresh nonce, checks the HMAC with the server's token (the
  hub issued it) and that the address and port are the ones the hub targeted. A squatter on
  another address family or name of the same port cannot answer; one that relays the question
  to the real server gets an answer naming the real server's address, which the hub refuses.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re

SCHEME = "hmac-sha256-v1"
PATH = "batchspawner/proof"
NONCE_HEADER = "X-Batchspawner-Nonce"
_NONCE = re.compile(r"[0-9a-f]{32,128}")
MAX_ANSWER = 4096


class ProofError(RuntimeError):
    pass


def normalize(address: str) -> str:
    """One spelling per address: no brackets or zone, IPv4-mapped IPv6 as IPv4."""
    address = address.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def mac(token: str, nonce: str, address: str, port: int) -> str:
    message = "\n".join([SCHEME, nonce, normalize(address), str(int(port))]).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ server side (the job)
def _token_from_env() -> str:
    return os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("JPY_API_TOKEN") or ""


def handlers(base_url: str, token: str):
    """The tornado handler list: ``{base_url}batchspawner/proof``."""
    from tornado import web

    class ProofHandler(web.RequestHandler):
        def get(self):
            nonce = self.request.headers.get(NONCE_HEADER, "")
            if not token or not _NONCE.fullmatch(nonce):
                raise web.HTTPError(400)
            try:
                local = self.request.connection.stream.socket.getsockname()
            except (AttributeError, OSError):
                raise web.HTTPError(500)
            address, port = normalize(local[0]), int(local[1])
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps({"scheme": SCHEME, "address": address, "port": port,
                                    "mac": mac(token, nonce, address, port)}))

    return [(base_url.rstrip("/") + "/" + PATH, ProofHandler)]


LOADED_MARK = "loaded"


def _clean_env():
    """Tell the wrapper the extension is loaded (a mark in its private directory), and take that
    directory off the paths the server's kernels inherit."""
    private = os.environ.pop("BATCHSPAWNER_PROOF_DIR", "")
    if not private:
        return
    try:
        with open(os.path.join(private, LOADED_MARK), "w"):
            pass
    except OSError:
        pass
    for name in ("PYTHONPATH", "JUPYTER_CONFIG_PATH"):
        kept = [p for p in os.environ.get(name, "").split(os.pathsep) if p and not p.startswith(private)]
        if kept:
            os.environ[name] = os.pathsep.join(kept)
        else:
            os.environ.pop(name, None)


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp):
    _clean_env()
    token = _token_from_env()
    if not token:
        serverapp.log.warning("batchspawner proof: no JUPYTERHUB_API_TOKEN; the hub's proof will fail")
    serverapp.web_app.add_handlers(".*$", handlers(serverapp.base_url, token))


# ------------------------------------------------------------------ hub side
async def probe(host: str, port: int, base_url: str, token: str, expect: tuple[str, int], timeout: float = 10.0):
    """Ask the server at host:port to prove it holds ``token``; raise :class:`ProofError` if not.

    ``expect``: the (address, port) the server must say the connection came in on (the hub's
    target; through a tunnel, the tunnel's numeric target on the node)."""
    import asyncio
    import secrets

    nonce = secrets.token_hex(32)
    path = (base_url or "/").rstrip("/") + "/" + PATH
    request = (f"GET {path} HTTP/1.0\r\nHost: {host}\r\n{NONCE_HEADER}: {nonce}\r\n"
               "Connection: close\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise ProofError(f"could not connect ({e or 'timeout'})") from None
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(MAX_ANSWER + 1), timeout)
        while data and len(data) <= MAX_ANSWER:
            more = await asyncio.wait_for(reader.read(MAX_ANSWER + 1 - len(data)), timeout)
            if not more:
                break
            data += more
    except (OSError, asyncio.TimeoutError) as e:
        raise ProofError(f"no answer ({e or 'timeout'})") from None
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        code = status[1].decode(errors="replace")[:10] if len(status) > 1 else "none"
        raise ProofError(f"no proof answer (HTTP status {code}): is the batchspawner proof extension loaded?")
    try:
        answer = json.loads(body[:MAX_ANSWER])
        address, got_port, got_mac = str(answer["address"]), int(answer["port"]), str(answer["mac"])
    except (ValueError, KeyError, TypeError):
        raise ProofError("the answer is not a proof") from None
    if not hmac.compare_digest(got_mac.encode(), mac(token, nonce, address, got_port).encode()):
        raise ProofError("wrong answer: the server answering does not hold this server's token")
    want = (normalize(expect[0]), int(expect[1]))
    if (normalize(address), got_port) != want:
        raise ProofError(
            f"the server holding the token was reached on {normalize(address)}:{got_port}, "
            f"not on {want[0]}:{want[1]} (a relay, or address translation between hub and node)"
        )
