"""The wall-time banner inside VS Code and the desktop (issue 26): jupyter-server-proxy's
``rewrite_response`` hook of those apps adds one same-origin script tag to the app's entry page
(text/html, bounded size) and leaves every other response alone; the script is served by the job's
server extension (proof.py) and asks the server's own wall-time endpoint.

The hook is run the way jupyter-server-proxy 4.6 runs it (its RewritableResponse, arguments by name)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import zlib
from types import SimpleNamespace

import pytest
from jupyter_server_proxy.config import ServerProcess
from jupyter_server_proxy.handlers import RewritableResponse
from jupyter_server_proxy.utils import call_with_asked_args
from test_port_proof import serve_on_loopback
from tornado import httpclient, httputil, web

from batchspawner.job import appbanner, apps, proof

PAGE = b"<!doctype html><html><head><title>app</title></head><body><div id=app>" + b"x" * 3000 + b"</div></body></html>"
TAG = b'<script src="/user/alice/batchspawner/walltime-app.js" defer data-jhpc-walltime></script>'


def proxied(body=PAGE, path="/", app="vscode", method="GET", code=200, ctype="text/html; charset=utf-8",
            encoding=None, accept="gzip, deflate, br", hook=None):
    """What jupyter-server-proxy's _proxy_buffered does with ``hook`` for a request to
    ``/user/alice/<app><path>`` answered by the app with ``body``."""
    headers = httputil.HTTPHeaders({"Content-Type": ctype, "Content-Length": str(len(body))})
    if encoding:
        headers["Content-Encoding"] = encoding
    request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine(method, f"/user/alice/{app}{path}",
                                                                              "HTTP/1.1"),
                                         headers=httputil.HTTPHeaders({"Accept-Encoding": accept, "Host": "hub"}))
    upstream = httpclient.HTTPRequest("http://localhost" + path, method=method)
    original = RewritableResponse(orig_response=httpclient.HTTPResponse(upstream, code, headers=headers,
                                                                        buffer=io.BytesIO(body)))
    hook = hook or appbanner.rewriter(("/",))
    args = {"request": request, "orig_response": original, "host": "localhost", "port": 0, "path": path}
    return original._apply_to_copy(lambda r: call_with_asked_args(hook, {"response": r, **args}))


def test_the_entry_page_gets_the_script_tag_once_before_body_end():
    out = proxied()
    assert out.body.count(b"data-jhpc-walltime") == 1 and out.body.endswith(TAG + b"</body></html>")
    assert out.headers["Content-Length"] == str(len(out.body)) and out.code == 200
    again = proxied(body=out.body)  # a page that has it already (a cached copy) is not changed again
    assert again.body == out.body
    no_body_end = proxied(body=b"<html><p>hi")
    assert no_body_end.body == b"<html><p>hi" + TAG
    desktop = proxied(path="/vnc.html", app="desk/desktop", hook=appbanner.rewriter(("/vnc.html",)))
    assert b'src="/user/alice/desk/batchspawner/walltime-app.js"' in desktop.body


@pytest.mark.parametrize("change", [
    {"ctype": "application/javascript"}, {"ctype": "text/css"}, {"path": "/static/out/workbench.html"},
    {"path": "/vnc_lite.html"}, {"method": "POST"}, {"code": 404}, {"code": 302}, {"encoding": "br"},
])  # fmt: skip
def test_other_responses_pass_untouched(change):
    out = proxied(**change)
    assert out.body == PAGE and out.headers.get("Content-Encoding") == change.get("encoding")
    assert out.code == change.get("code", 200)


def test_huge_pages_and_gzip_bombs_pass_untouched():
    huge = PAGE[:-14] + b"y" * appbanner.MAX_PAGE + b"</body></html>"
    assert proxied(body=huge).body == huge
    bomb = gzip.compress(b"<html><body>" + b"\0" * (appbanner.MAX_PAGE + 10) + b"</body></html>")
    assert len(bomb) < 10_000
    out = proxied(body=bomb, encoding="gzip")
    assert out.body == bomb and out.headers["Content-Encoding"] == "gzip"
    broken = proxied(body=b"\x1f\x8bnot gzip", encoding="gzip")
    assert broken.body == b"\x1f\x8bnot gzip"


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_compressed_entry_page_is_decoded_changed_and_sent_plain(encoding, pack):
    out = proxied(body=pack(PAGE), encoding=encoding)
    assert "Content-Encoding" not in out.headers and out.body.endswith(TAG + b"</body></html>")


def test_vscode_asks_for_gzip_and_a_client_without_gzip_gets_bodies_decoded():
    hook = apps.setup_vscode()["rewrite_response"]
    assert apps.setup_vscode()["request_headers_override"] == {"Accept-Encoding": "gzip"}  # never br
    asset = gzip.compress(b"console.log(1)")
    plain = proxied(body=asset, path="/static/a.js", ctype="text/javascript", encoding="gzip", accept="", hook=hook)
    assert plain.body == b"console.log(1)" and "Content-Encoding" not in plain.headers
    for accept in ("gzip, deflate, br", "br;q=1, gzip;q=0.5", "*"):
        kept = proxied(body=asset, path="/static/a.js", ctype="text/javascript", encoding="gzip", accept=accept,
                       hook=hook)
        assert kept.body == asset and kept.headers["Content-Encoding"] == "gzip", accept
    assert not appbanner.accepts_gzip("gzip;q=0, br") and not appbanner.accepts_gzip("identity")


def test_an_odd_base_url_is_escaped_or_left_alone_and_the_hook_never_raises():
    assert appbanner.base_url_of('/user/a"b/vscode/', "/") is None
    assert appbanner.base_url_of("/user/alice/vscode/", "/x") is None
    assert appbanner.base_url_of("/user/al%3Cice/vscode/", "/") == "/user/al%3Cice/"
    assert b'src="/user/a&amp;b/' in appbanner.script_tag("/user/a&b/")
    hook = appbanner.rewriter(("/",))
    broken = SimpleNamespace(code=200, headers=None, body=PAGE)
    hook(broken, SimpleNamespace(method="GET", path="/user/alice/vscode/"), "/")  # no exception
    assert broken.body == PAGE


def test_jupyter_server_proxy_takes_the_apps_configs():
    for name, setup in (("vscode", apps.setup_vscode), ("desktop", apps.setup_desktop)):
        process = ServerProcess(name=name, **setup())
        assert callable(process.rewrite_response)


async def test_the_script_is_served_by_the_server_extension_and_asks_the_servers_own_endpoint():
    source = SimpleNamespace()
    handlers = proof.walltime_handlers("/user/alice/", source)
    app = web.Application(handlers)
    server, url = serve_on_loopback(app)
    try:
        r = await httpclient.AsyncHTTPClient().fetch(url + "/user/alice/" + proof.APP_SCRIPT_PATH)
    finally:
        server.stop()
    assert r.headers["Content-Type"].startswith("text/javascript") and r.headers["X-Content-Type-Options"] == "nosniff"
    body = r.body
    assert b'var url = "/user/alice/batchspawner/walltime"' in body and b"<script" not in body
    assert b'"This session ends in " + Math.max(1, Math.ceil(a.time_left / 60)) + " min; save your work."' in body
    assert b"textContent" in body and b"innerHTML" not in body
    assert b".catch(function() {})" in body  # a failing endpoint shows nothing and breaks nothing
    assert proof.app_banner_script("/user/a</script>/").count(b"</script") == 0


# the app's page, in Node: the DOM and fetch the script touches, faked; what the banner says
HARNESS = r"""
const vm = require("vm");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = [];
  for (const answer of input.answers) {
    const byId = {}, asked = [];
    function element(tag) {
      const el = {tag, children: [], style: {}, attrs: {}, textContent: "", className: "",
        setAttribute(k, v) { this.attrs[k] = v; },
        appendChild(c) { this.children.push(c); c.parent = this; if (c.id) byId[c.id] = c; },
        querySelector(sel) { return this.children.find(c => "." + c.className === sel) || null; },
        remove() { delete byId[this.id]; }};
      return el;
    }
    const ctx = {
      document: {cookie: "_xsrf=tok%2Fen", body: element("body"), createElement: element,
                 getElementById: id => byId[id] || null},
      setInterval() {},
      fetch: (url, opts) => { asked.push([url, opts.headers["X-XSRFToken"]]);
        return answer === "fail" ? Promise.reject(new Error("down"))
          : Promise.resolve({ok: answer !== "403", json: () => Promise.resolve(answer)}); },
    };
    vm.runInNewContext(input.script, ctx);
    await new Promise(r => setTimeout(r, 20));
    const banner = Object.values(byId)[0];
    out.push({asked, text: banner ? banner.children[0].textContent : null});
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_the_script_says_the_minutes_left_only_when_the_server_says_so_and_survives_failures():
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "Node.js runs the app's banner script in this test (Debian: apt-get install nodejs)"
    answers = [{"ends_soon": True, "time_left": 700}, {"ends_soon": True, "time_left": 20},
               {"ends_soon": False, "time_left": 700}, "fail", "403"]
    script = proof.app_banner_script("/user/alice/").decode()
    r = subprocess.run([node, "-e", HARNESS], input=json.dumps({"script": script, "answers": answers}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["text"] for o in out] == ["This session ends in 12 min; save your work.",
                                        "This session ends in 1 min; save your work.", None, None, None]
    assert out[0]["asked"] == [["/user/alice/batchspawner/walltime", "tok/en"]]
