"""The wall-time banner inside VS Code and the desktop (issue 26), through jupyter-server-proxy.

JupyterLab's pages get the banner from the server extension (:mod:`batchspawner.job.proof`). The apps
behind jupyter-server-proxy (:mod:`batchspawner.job.apps`) serve their own pages, so their server
configs carry a ``rewrite_response`` hook (:func:`rewriter`): the app's **entry page** only (VS Code:
``/``; the desktop: noVNC's ``/vnc.html``), a GET answered 200 with ``text/html``, gets one tag
before its ``</body>``::

    <script src="{base_url}batchspawner/walltime-app.js" defer data-jhpc-walltime></script>

That script (served by the same server extension, same origin) asks the single-user server's own
``{base_url}batchspawner/walltime`` every 30 s (the server asks the hub, cached: see proof.py) and in
the last ``walltime_warning`` seconds shows "This session ends in N min; save your work" at the top
right of the app's page, with a close button. It builds its element with ``textContent`` only, and
does nothing when the endpoint fails (no extension, hub away): the app works as before.

Why a script *file*: code-server sends ``Content-Security-Policy: script-src 'self' 'unsafe-eval'
blob: 'nonce-…' 'sha256-<its own inline scripts>'``, so an injected inline script would be blocked; a
same-origin ``src`` is allowed (``connect-src 'self'`` lets it fetch). noVNC's page has no CSP.

Bounds: any other path, method, status or type passes unchanged; a page over MAX_PAGE bytes (before
or after decompression) passes unchanged; a page that has the tag already is not changed again;
``gzip``/``deflate`` bodies are decoded (bounded), changed and sent uncompressed, any other encoding
(``br``) passes unchanged. code-server compresses with brotli when the browser accepts it, so its
config asks it for gzip (``request_headers_override``, :data:`GZIP_ONLY`); a client that did not
accept gzip gets such a body decoded (:func:`decode_for_client`). Any error in the hook leaves the
response as the app sent it.

Standard library only (runs in the single-user server's process, see docs/architecture.md).
"""

from __future__ import annotations

import html
import re
import zlib

from batchspawner.job.proof import APP_SCRIPT_PATH

MAX_PAGE = 2 * 1024 * 1024  # bytes: an entry page larger than this is passed on unchanged
MARK = b"data-jhpc-walltime"
GZIP_ONLY = {"Accept-Encoding": "gzip"}  # code-server: gzip (decodable here), never br
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_SAFE_BASE = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+/)*")


def base_url_of(request_path: str, proxied_path: str) -> str | None:
    """The single-user server's base URL from a request to one of its apps: ``/user/a/vscode/`` with
    proxied path ``/`` -> ``/user/a/``; None when the request is not ``<base><app><path>``."""
    path = request_path or ""
    tail = proxied_path or "/"
    if not path.endswith(tail):
        return None
    mount = path[: len(path) - len(tail)].rstrip("/")  # /user/a/vscode
    if "/" not in mount:
        return None
    base = mount.rsplit("/", 1)[0] + "/"
    return base if _SAFE_BASE.fullmatch(base) else None


def script_tag(base_url: str) -> bytes:
    src = html.escape(base_url + APP_SCRIPT_PATH, quote=True)
    return f'<script src="{src}" defer {MARK.decode()}></script>'.encode()


def _header(headers, name: str) -> str:
    value = headers.get(name) if headers is not None else None
    return str(value or "")


def _drop(headers, name: str) -> None:
    if name in headers:
        del headers[name]


def _decode(body: bytes, encoding: str, limit: int) -> bytes | None:
    """``body`` decoded (gzip or deflate, at most ``limit`` bytes); None if it cannot be or is larger."""
    if encoding in ("", "identity"):
        return body if len(body) <= limit else None
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        return None  # br, zstd...: no decoder in the standard library
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or inflater.unconsumed_tail or not inflater.eof:
        return None
    return out


def inject(response, request, path, entry_paths=("/",)) -> bool:
    """Add the banner's script tag to ``response`` (a jupyter-server-proxy RewritableResponse) when it
    is the app's entry page; True when it did."""
    if getattr(request, "method", "GET") != "GET" or (path or "/") not in entry_paths:
        return False
    if response.code != 200 or not _header(response.headers, "Content-Type").lower().startswith("text/html"):
        return False
    body = response.body or b""
    if len(body) > MAX_PAGE:
        return False
    encoding = _header(response.headers, "Content-Encoding").strip().lower()
    page = _decode(body, encoding, MAX_PAGE)
    if page is None or MARK in page:
        return False
    base = base_url_of(getattr(request, "path", ""), path)
    if base is None:
        return False
    tag = script_tag(base)
    ends = list(_BODY_END.finditer(page))
    at = ends[-1].start() if ends else len(page)
    _replace_body(response, page[:at] + tag + page[at:])
    return True


def _replace_body(response, body: bytes) -> None:
    """``body`` (not encoded) as the response's, its headers saying so."""
    _drop(response.headers, "Content-Encoding")
    if "Content-Length" in response.headers:
        response.headers["Content-Length"] = str(len(body))
    response.body = body


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether a request's ``Accept-Encoding`` takes gzip (``gzip`` or ``*`` without ``q=0``)."""
    for item in (accept_encoding or "").lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() not in ("gzip", "x-gzip", "*"):
            continue
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        try:
            if q is None or float(q.group(1)) > 0:
                return True
        except ValueError:
            continue
    return False


def decode_for_client(response, request) -> bool:
    """A gzip body (asked for by :data:`GZIP_ONLY`) decoded for a client that did not accept gzip."""
    encoding = _header(response.headers, "Content-Encoding").strip().lower()
    if encoding != "gzip":
        return False
    if accepts_gzip(_header(getattr(request, "headers", None), "Accept-Encoding")):
        return False
    try:
        body = zlib.decompress(response.body or b"", 16 + zlib.MAX_WBITS)
    except zlib.error:
        return False
    _replace_body(response, body)
    return True


def rewriter(entry_paths=("/",), gzip_asked=False):
    """The ``rewrite_response`` hook of one app's server config (jupyter-server-proxy passes the
    arguments by name). Never raises: a failure leaves the app's response unchanged."""
    entry_paths = tuple(entry_paths)

    def rewrite_response(response, request, path):
        try:
            if not inject(response, request, path, entry_paths) and gzip_asked:
                decode_for_client(response, request)
        except Exception:  # the banner is a nicety: the app's own page always gets through
            pass

    return rewrite_response
