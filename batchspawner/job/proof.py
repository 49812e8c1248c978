"""Proof that the server the hub reaches is the job's own: an HMAC of the hub's nonce.

Two halves in one standalone file (standard library and tornado only, no batchspawner import;
the same extension also shows the wall-time banner inside JupyterLab, see below):

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


# ------------------------------------------------------------------ the in-Lab wall-time banner (issue 26)
# The same extension shows the user, inside JupyterLab (and Notebook 7), a banner when the job's
# wall time is about to run out: Lab's HTML pages get a small script (an output transform of the
# server's own pages; nothing is installed in Lab) that asks ``{base_url}batchspawner/walltime``
# (logged-in users of this server only) every WALLTIME_POLL seconds, and once more when a running
# job's time left reaches the warning window (a Lab open before then shows it at the crossing).
# That handler asks the hub,
# ``GET $JUPYTERHUB_API_URL/batchspawner`` with the server's own token, at most once per
# WALLTIME_CACHE seconds; the hub answers from its caches (time left, warn or not:
# ``BatchSpawnerBase.walltime_warning``), so it works for every scheduler and needs no scheduler
# command on the node.
WALLTIME_PATH = "batchspawner/walltime"
WALLTIME_POLL = 30
WALLTIME_CACHE = 20.0
PAGE_PREFIXES = ("lab", "tree", "notebooks", "edit", "doc", "consoles", "terminals")
BANNER_ID = "jhpc-walltime-banner"

_BANNER_CORE = """(function() {
  /* jupyterhub-hpc: the batch job's wall time is about to run out (batchspawner proof extension) */
  var url = %(url)s, dismissed = false;
  function human(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) { return s + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min"; }
    var h = Math.floor(m / 60); m = m %% 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }
  function show(a) {
    var el = document.getElementById("%(id)s");
    if (!a || !a.ends_soon) { if (el) { el.remove(); } return; }
    if (dismissed) { return; }
    if (!el) {
      el = document.createElement("div");
      el.id = "%(id)s"; el.setAttribute("role", "alert");
      /* at the top right, over the empty end of Lab's top bar, not over its menus */
      el.style.cssText = "position:fixed;top:4px;right:12px;max-width:min(40%%,520px);" +
        "z-index:100000;background:#fff3cd;color:#664d03;border:1px solid #ffda6a;border-radius:6px;" +
        "box-shadow:0 2px 8px rgba(0,0,0,.2);padding:6px 40px 6px 12px;font:14px/1.4 sans-serif;text-align:center";
      var text = document.createElement("span"); text.className = "jhpc-walltime-text"; el.appendChild(text);
      var close = document.createElement("button");
      close.type = "button"; close.textContent = "\u00d7"; close.setAttribute("aria-label", "Dismiss");
      close.style.cssText = "position:absolute;right:8px;top:1px;border:0;background:none;font-size:20px;cursor:pointer;color:inherit";
      close.onclick = function() { dismissed = true; el.remove(); };
      el.appendChild(close);
      document.body.appendChild(el);
    }
    el.querySelector(".jhpc-walltime-text").textContent = %(say)s;
  }
  function xsrf() {  /* JupyterHub's cookie auth wants the _xsrf token on every non-navigation request */
    var m = document.cookie.match(/(?:^|; *)_xsrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  var crossing = null;
  function expect(a) {  /* a running job not warned yet: ask again when it enters the warning window */
    if (crossing !== null) { clearTimeout(crossing); crossing = null; }
    if (!a || a.ends_soon || a.state !== "running" || typeof a.time_left !== "number" ||
        typeof a.warn_seconds !== "number" || !(a.warn_seconds > 0) || !(a.time_left > a.warn_seconds)) { return; }
    /* at most an hour ahead (a timer beyond 2^31 ms would fire at once): the answer then sets the next */
    crossing = setTimeout(ask, Math.min((a.time_left - a.warn_seconds) * 1000 + 1000, 3600000));
  }
  function ask() {
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"X-XSRFToken": xsrf()}})
      .then(function(r) { return r.ok ? r.json() : null; })
      .then(function(a) { show(a); expect(a); }).catch(function() {});
  }
  ask();
  setInterval(ask, %(poll)d);
})();"""
_BANNER_JS = "<script>" + _BANNER_CORE + "</script>"
_LAB_SAY = ('"Your batch job reaches its wall time in " + human(a.time_left) + '
            '": save your work now. This server stops when the job ends."')
# VS Code and the desktop (batchspawner/job/appbanner.py): the same banner in the app's own page, as
# a same-origin script file (code-server's Content-Security-Policy allows 'self' scripts, not inline ones)
APP_SCRIPT_PATH = "batchspawner/walltime-app.js"
_APP_SAY = '"This session ends in " + Math.max(1, Math.ceil(a.time_left / 60)) + " min; save your work."'


def _banner(template: str, base_url: str, say: str) -> bytes:
    url = json.dumps((base_url or "/").rstrip("/") + "/" + WALLTIME_PATH)
    # json.dumps leaves "</" as is: a path with "</script>" would end the script early
    url = url.replace("</", "<\\/")
    return (template % {"url": url, "id": BANNER_ID, "poll": WALLTIME_POLL * 1000, "say": say}).encode()


def banner_script(base_url: str) -> bytes:
    return _banner(_BANNER_JS, base_url, _LAB_SAY)


def app_banner_script(base_url: str) -> bytes:
    """The banner as a script file for VS Code's and the desktop's pages (GET {base_url}APP_SCRIPT_PATH)."""
    return _banner(_BANNER_CORE, base_url, _APP_SAY)


def insert_banner(chunk: bytes, script: bytes) -> bytes:
    """``chunk`` (a whole HTML page) with ``script`` before its last ``</body>``; unchanged without one."""
    at = chunk.rfind(b"</body>")
    return chunk if at < 0 else chunk[:at] + script + chunk[at:]


def banner_transform(base_url: str):
    """A tornado OutputTransform adding the banner's script to the server's own HTML pages."""
    from tornado.web import OutputTransform

    script = banner_script(base_url)
    prefixes = tuple((base_url or "/").rstrip("/") + "/" + p for p in PAGE_PREFIXES)

    class WalltimeBanner(OutputTransform):
        def __init__(self, request):
            path = request.path or ""
            self.on = request.method == "GET" and any(path == p or path.startswith(p + "/") for p in prefixes)

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if (self.on and finishing and status_code == 200 and "Content-Encoding" not in headers
                    and str(headers.get("Content-Type", "")).startswith("text/html")):
                chunk = insert_banner(chunk, script)
                if "Content-Length" in headers:
                    headers["Content-Length"] = str(len(chunk))
            return status_code, headers, chunk

        def transform_chunk(self, chunk, finishing):
            return chunk

    return WalltimeBanner


class WalltimeSource:
    """The hub's answer about this job's wall time, cached WALLTIME_CACHE s (one hub request at most
    per interval however many browser tabs ask); time_left counts down between answers."""

    def __init__(self, api_url: str, token: str, clock=None):
        import time

        self.url = (api_url or "").rstrip("/") + "/batchspawner"
        self.token = token
        self.clock = clock or time.monotonic
        self.answer: dict | None = None
        self.at = 0.0

    async def fetch(self) -> dict:
        from tornado.httpclient import AsyncHTTPClient

        response = await AsyncHTTPClient().fetch(
            self.url, headers={"Authorization": f"token {self.token}"}, request_timeout=10, raise_error=False)
        if response.code != 200:
            raise ProofError(f"hub answered HTTP {response.code}")
        answer = json.loads(response.body[:MAX_ANSWER])
        if not isinstance(answer, dict):
            raise ProofError("not a wall time answer")
        return answer

    async def get(self) -> dict:
        now = self.clock()
        if self.answer is None or now - self.at >= WALLTIME_CACHE:
            try:
                self.answer, self.at = await self.fetch(), now
            except Exception:  # the hub restarts, the network hiccups: keep the last answer
                if self.answer is None:
                    return {"ends_soon": False, "time_left": None}
        answer = dict(self.answer)
        left = answer.get("time_left")
        if isinstance(left, (int, float)) and not isinstance(left, bool):
            answer["time_left"] = max(0, int(left - (now - self.at)))
        # counted down into the warning window since the hub's answer (a running job's wall time runs)
        warn = answer.get("warn_seconds")
        left = answer.get("time_left")
        crossed = (answer.get("state") == "running" and type(left) is int
                   and type(warn) in (int, float) and 0 < left <= warn)
        answer["ends_soon"] = bool(answer.get("ends_soon")) or crossed
        return {k: answer.get(k) for k in ("ends_soon", "time_left", "warn_seconds", "state")}


def walltime_handlers(base_url: str, source: WalltimeSource):
    """``{base_url}batchspawner/walltime`` for this server's logged-in users (jupyter_server's auth)."""
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    class WalltimeHandler(APIHandler):
        @web.authenticated
        async def get(self):
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(await source.get()))

    class AppBannerScript(web.RequestHandler):  # constant, no secret: served like a static file
        def get(self):
            self.set_header("Content-Type", "text/javascript; charset=utf-8")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Cache-Control", "no-cache")
            self.finish(app_script)

    app_script = app_banner_script(base_url)
    base = (base_url or "/").rstrip("/") + "/"
    return [(base + WALLTIME_PATH, WalltimeHandler), (base + APP_SCRIPT_PATH, AppBannerScript)]


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp):
    _clean_env()
    token = _token_from_env()
    if not token:
        serverapp.log.warning("batchspawner proof: no JUPYTERHUB_API_TOKEN; the hub's proof will fail")
    serverapp.web_app.add_handlers(".*$", handlers(serverapp.base_url, token))
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    if token and api_url:
        try:
            source = WalltimeSource(api_url, token)
            serverapp.web_app.add_handlers(".*$", walltime_handlers(serverapp.base_url, source))
            # first, before any compression: the script goes into the page as the server wrote it
            serverapp.web_app.transforms.insert(0, banner_transform(serverapp.base_url))
        except Exception as e:  # never keep the server from starting for a banner
            serverapp.log.warning("batchspawner: no wall-time banner in this server (%s)", e)


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
