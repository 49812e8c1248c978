"""RemoteUserAuthenticator behind a real Apache (examples/apache/ as shipped) in front of a real hub.

Path: client -> Apache (basic auth standing in for SSO) -> configurable-http-proxy -> hub.
Trust is configured both ways (shared secret AND Apache's address), as a site would.
"""

import base64
import http.client
import os
import secrets
import shutil
import subprocess
import time

import pytest
import requests

import apachetools
from hubharness import ARTIFACTS, VENV_BIN, Hub

IN_CI = os.environ.get("CI") == "true"
PASSWORDS = {"alice": secrets.token_hex(8), "bob": secrets.token_hex(8)}
LOGOUT_URL = "/sso/logged-out.html"

EXAMPLE_CONFIG = apachetools.EXAMPLE / "jupyterhub_config.py"


def hub_config(hub):
    """examples/apache/jupyterhub_config.py as shipped, then this test's ports and test-only settings."""
    return f"""
load_subconfig({str(EXAMPLE_CONFIG)!r})
c.JupyterHub.port = {hub.port}
c.JupyterHub.hub_port = {hub.hub_port}
c.RemoteUserAuthenticator.hub_proxy_networks = ['127.0.0.1/32']  # so 127.0.0.2 counts as elsewhere
c.JupyterHub.default_url = '/hub/home'  # land on the hub page; spawn only when a test asks
c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
c.JupyterHub.load_roles[0]['scopes'].append('admin:auth_state')
"""


def require(ok, why):
    if not ok:
        if IN_CI:
            pytest.fail(f"component missing in CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def sso(tmp_path_factory):
    ok, why = apachetools.available("alice")
    require(ok, why)
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    secret = secrets.token_hex(32)
    env = {"REMOTE_USER_PROXY_SECRET": secret, "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    hub = Hub(tmp_path_factory.mktemp("sso-hub"), env=env)
    hub.extra_config = hub_config(hub)
    apache = apachetools.Apache(backend=f"127.0.0.1:{hub.port}", secret=secret, users=PASSWORDS)
    try:
        t0 = time.monotonic()
        hub.start()
        hub_seconds = time.monotonic() - t0
        apache.start()
        print(f"hub up in {hub_seconds:.2f} s, apache up in {apache.start_seconds:.2f} s")
        yield hub, apache, secret
    finally:
        apache.stop()
        # Hub.stop() then waits until the proxy's port could be bound again (for restarts). We never
        # restart, and node's keep-alive closes leave TIME_WAIT entries on that port that make the
        # wait run its full 15 s; so end the hub (by PID) first, and Hub.stop() has nothing left to do.
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.terminate()
            try:
                hub.proc.wait(30)
            except Exception:
                hub.proc.kill()
        hub.stop()
        if getattr(hub, "_log", None) is not None:
            hub._log.close()
        dest = ARTIFACTS / "sso-logs"
        apache.cleanup(keep_logs_in=dest)
        if hub.log_path.exists():
            shutil.copy(hub.log_path, dest / "hub.log")
        # the secret must never reach a log
        for log in dest.iterdir():
            assert secret not in log.read_text(errors="replace"), f"secret leaked into {log}"


def browser_login(apache, user):
    s = requests.Session()
    s.auth = (user, PASSWORDS[user])
    t0 = time.monotonic()
    r = s.get(apache.url + "/hub/login", timeout=30)
    return s, r, time.monotonic() - t0


def hub_cookies(session):
    return {c.name: c.value for c in session.cookies if c.name.startswith("jupyterhub")}


def test_login_through_apache_sets_session_groups_admin(sso):
    hub, apache, _ = sso
    s, r, seconds = browser_login(apache, "alice")
    assert r.status_code == 200, r.text[:500]
    assert r.url == apache.url + "/hub/home", r.url
    assert "alice" in r.text
    assert "jupyterhub-hub-login" in hub_cookies(s)
    print(f"login through apache: {seconds:.2f} s, landed on {r.url}")

    # the cookie session alone works: straight to the hub's proxy, no SSO headers at all
    home = requests.get(hub.url + "/hub/home", cookies=hub_cookies(s), allow_redirects=False, timeout=30)
    assert home.status_code == 200 and "alice" in home.text

    alice = hub.api("GET", "/users/alice").json()
    assert alice["admin"] is True
    assert sorted(alice["groups"]) == ["hpc", "jhub-admins"]
    assert alice["auth_state"]["headers"] == {"X-Remote-User-Email": "alice@example.org"}
    assert sorted(hub.api("GET", "/groups/jhub-admins").json()["users"]) == ["alice"]

    s2, r2, _ = browser_login(apache, "bob")
    assert r2.status_code == 200 and r2.url.startswith(apache.url + "/hub/")
    bob = hub.api("GET", "/users/bob").json()
    assert bob["admin"] is False
    assert bob["groups"] == ["hpc"]


def test_logout_clears_session_and_redirects_to_sso(sso):
    hub, apache, _ = sso
    s, r, _ = browser_login(apache, "alice")
    assert r.status_code == 200
    out = s.get(apache.url + "/hub/logout", allow_redirects=False, timeout=30)
    assert out.status_code == 302, out.text[:300]
    assert out.headers["Location"] == LOGOUT_URL
    page = s.get(apache.url + out.headers["Location"], timeout=30)
    assert page.status_code == 200 and "Signed out" in page.text
    assert "jupyterhub-hub-login" not in hub_cookies(s)
    # what the browser holds now no longer opens the hub (straight to its proxy, no SSO headers)
    home = requests.get(hub.url + "/hub/home", cookies=hub_cookies(s), allow_redirects=False, timeout=30)
    assert home.status_code == 302 and "/hub/login" in home.headers["Location"]


def raw_get(port, path, headers, source="127.0.0.1"):
    """One GET from a chosen loopback source address (127.0.0.2 is 'another machine')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Set-Cookie") or "", resp.read().decode(errors="replace")
    finally:
        conn.close()


SPOOFS = [
    # id, where (hub|chp), source address, use the real secret?, extra headers
    ("straight-to-hub-forged-header", "hub", "127.0.0.1", True, {}),
    ("through-chp-wrong-secret", "chp", "127.0.0.1", False, {}),
    ("through-chp-no-secret", "chp", "127.0.0.1", None, {}),
    ("untrusted-address-even-with-secret", "chp", "127.0.0.2", True, {}),
    ("untrusted-address-forged-xff", "chp", "127.0.0.2", True, {"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1"}),
    ("straight-to-hub-from-elsewhere-forged-xff", "hub", "127.0.0.2", True, {"X-Forwarded-For": "127.0.0.1"}),
]


@pytest.mark.parametrize("where,source,use_secret,extra", [c[1:] for c in SPOOFS], ids=[c[0] for c in SPOOFS])
def test_spoofed_requests_log_nobody_in(sso, where, source, use_secret, extra):
    hub, apache, secret = sso
    victim = f"mallory{secrets.token_hex(2)}"
    headers = {"REMOTE_USER": victim, "X-Remote-User-Groups": "jhub-admins", **extra}
    if use_secret is True:
        headers["X-Proxy-Secret"] = secret
    elif use_secret is False:
        headers["X-Proxy-Secret"] = secrets.token_hex(32)
    port = hub.hub_port if where == "hub" else hub.port
    status, set_cookie, body = raw_get(port, "/hub/login", headers, source=source)
    assert status == 403, body[:300]
    assert "jupyterhub-hub-login" not in set_cookie
    assert "single sign-on front end" in body
    assert hub.api("GET", f"/users/{victim}").status_code == 404
    time.sleep(0.2)
    log = hub.log_text()
    assert "Refused RemoteUserAuthenticator login" in log
    if source == "127.0.0.2":
        assert "127.0.0.2" in log


def raw_headers_get(port, path, header_pairs):
    """One GET with every (name, value) pair sent as its own header line, spelling kept.

    requests/urllib3 merge REMOTE_USER and Remote_User into one header; http.client's
    putheader sends both."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in [("Host", f"127.0.0.1:{port}"), *header_pairs]:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        cookies = dict(c.split(";", 1)[0].strip().split("=", 1) for c in resp.headers.get_all("Set-Cookie") or [])
        return resp.status, cookies, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_client_set_headers_through_apache_are_replaced(sso):
    hub, apache, secret = sso
    victim = f"mallory{secrets.token_hex(2)}"
    forged = [("REMOTE_USER", victim), ("Remote_User", victim), ("remote_user", victim),
              ("X-Remote-User-Groups", "jhub-admins"), ("X-Proxy-Secret", secrets.token_hex(32))]
    # no SSO login: Apache stops it, the hub never sees it
    status, _, _ = raw_headers_get(apache.port, "/hub/login", forged)
    assert status == 401
    # logged in to the SSO as bob, claiming to be someone else and an admin. A spelling Apache
    # failed to remove would reach the hub as a second REMOTE_USER: refused (403), not a login.
    basic = base64.b64encode(f"bob:{PASSWORDS['bob']}".encode()).decode()
    status, cookies, body = raw_headers_get(apache.port, "/hub/login", [("Authorization", f"Basic {basic}"), *forged])
    assert status == 302, body[:300]  # logged in; the hub redirects onwards
    assert "jupyterhub-hub-login" in cookies
    assert hub.api("GET", f"/users/{victim}").status_code == 404
    bob = hub.api("GET", "/users/bob").json()
    assert bob["admin"] is False and bob["groups"] == ["hpc"]
    hub_only = {k: v for k, v in cookies.items() if k.startswith("jupyterhub")}
    home = requests.get(hub.url + "/hub/home", cookies=hub_only, allow_redirects=False, timeout=30)
    assert home.status_code == 200 and "bob" in home.text and victim not in home.text


def process_environ(pid):
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_server_through_apache_websocket_and_sso_env(sso):
    """A server started after an SSO login gets the SSO e-mail (auth_state_hook) and its
    websockets work through Apache."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    hub, apache, secret = sso
    s, r, _ = browser_login(apache, "alice")  # fresh auth_state for alice
    assert r.status_code == 200
    try:
        resp, seconds = hub.spawn("alice", timeout=60)
        assert resp.status_code in (201, 202), resp.text
        model = hub.server_model("alice")
        assert model and model["ready"], hub.log_tail()
        print(f"spawn -> ready {seconds:.2f} s")
        env = process_environ(model["state"]["pid"])
        assert env.get("SSO_EMAIL") == "alice@example.org"
        assert secret not in "".join(env.values())

        # the browser session reaches the server through Apache (hub OAuth via /hub/ pages)
        page = s.get(apache.url + "/user/alice/", timeout=30)
        assert page.status_code == 200, page.text[:300]
        assert page.url.startswith(apache.url + "/user/alice/"), page.url
        assert any(c.name.startswith("jupyterhub-user-alice") for c in s.cookies)

        async def ws_roundtrip():
            import base64

            basic = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
            ws_url = apache.url.replace("http", "ws", 1) + "/user/alice/api/events/subscribe"
            # as a browser sends it: SSO credentials for Apache, the server's cookie from the OAuth dance
            cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies if c.name.startswith("jupyterhub-user-alice"))
            headers = {"Authorization": f"Basic {basic}", "Cookie": cookie, "Sec-Fetch-Mode": "websocket"}
            req = HTTPRequest(ws_url, headers=headers, request_timeout=30)
            conn = await websocket_connect(req)
            conn.close()  # a clean close handshake, so Apache ends (and logs) the tunnel
            return await asyncio.wait_for(conn.read_message(), 10) is None

        assert asyncio.run(ws_roundtrip())
        # Apache logged the upgrade (101)
        # (Apache writes the entry when the tunnel is torn down, a moment after the close)
        deadline = time.monotonic() + 15
        while True:
            lines = [ln for ln in apache.access_log().splitlines() if "/user/alice/api/events/subscribe" in ln]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert lines and all(" 101 " in ln for ln in lines), lines
    finally:
        assert hub.stop_server("alice", timeout=60)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_browser_login_and_logout_through_apache(sso):
    """A real browser: SSO (basic auth) -> hub home page as alice -> logout -> SSO logout page."""
    require(os.path.exists(CHROMIUM), "chromium not installed (scripts/setup-browser.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "python playwright not installed (scripts/setup-browser.sh)")
    hub, apache, _ = sso
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        t0 = time.monotonic()
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 800},
                                      http_credentials={"username": "alice", "password": PASSWORDS["alice"]})
            page = ctx.new_page()
            page.goto(apache.url + "/hub/")
            page.wait_for_url("**/hub/home", timeout=30000)
            page.screenshot(path=str(shots / "sso-hub-home.png"))
            assert "alice" in page.inner_text("body")
            assert any(c["name"] == "jupyterhub-hub-login" for c in ctx.cookies())
            page.goto(apache.url + "/hub/logout")
            page.wait_for_url("**" + LOGOUT_URL, timeout=30000)
            page.screenshot(path=str(shots / "sso-logged-out.png"))
            assert "Signed out" in page.inner_text("h1")
            assert not any(c["name"] == "jupyterhub-hub-login" for c in ctx.cookies())
            print(f"browser login+logout through apache: {time.monotonic() - t0:.2f} s")
        finally:
            browser.close()


def test_hub_refuses_to_start_without_trust_config(tmp_path):
    """No secret, no trusted networks, no explicit unsafe opt-out: the real hub exits at startup."""
    hub = Hub(tmp_path / "untrusting", "c.JupyterHub.authenticator_class = 'remote-user'\n",
              env={"REMOTE_USER_PROXY_SECRET": ""})
    try:
        with pytest.raises(RuntimeError, match="hub exited with 1"):
            hub.start(timeout=60)
        log = hub.log_text()
        assert "RemoteUserAuthenticator.header_name would be trusted from any client" in log
        assert "RemoteUserAuthenticator.unsafe_trust_any_client" in log
    finally:
        hub.stop()


def test_example_without_its_secret_does_not_start(tmp_path):
    """examples/apache as shipped, REMOTE_USER_PROXY_SECRET unset: the real hub refuses to start.

    Its trusted network is loopback, which every local user shares: without the secret,
    `sudo -u bob curl -H 'REMOTE_USER: alice' http://127.0.0.1:8000/hub/login` would log bob in
    as alice (issue 11). The message names the setting and the loud opt-in."""
    hub = Hub(tmp_path / "no-secret", env={"REMOTE_USER_PROXY_SECRET": "", "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)})
    hub.extra_config = hub_config(hub)
    try:
        with pytest.raises(RuntimeError, match="hub exited with 1"):
            hub.start(timeout=60)
        log = hub.log_text()
        assert "RemoteUserAuthenticator.proxy_secret (or $REMOTE_USER_PROXY_SECRET) is not set" in log
        assert "RemoteUserAuthenticator.unsafe_trust_local_users" in log
    finally:
        hub.stop()


def _curl_as(user, url, *headers):
    """curl run as a local user (runuser): what any account on the hub host can do."""
    argv = ["runuser", "-u", user, "--", "curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "20", url]
    for h in headers:
        argv[-1:-1] = ["-H", h]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=40)
    lines = r.stdout.splitlines()
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    return status, r.stdout


@pytest.mark.parametrize("where", ["chp", "hub"])
def test_forged_headers_from_a_local_user_are_refused(sso, where):
    """With the secret set, bob (a local user of the hub host) cannot log in as alice by headers."""
    hub, apache, secret = sso
    require(bool(shutil.which("runuser")) and bool(shutil.which("curl")), "runuser/curl missing")
    port = hub.port if where == "chp" else hub.hub_port
    before = hub.api("GET", "/users/alice").json().get("last_activity")
    status, head = _curl_as(
        "bob", f"http://127.0.0.1:{port}/hub/login",
        "REMOTE_USER: alice", "X-Remote-User-Groups: jhub-admins", "X-Forwarded-For: 127.0.0.1",
    )
    assert status == 403, head
    assert "jupyterhub-hub-login" not in head
    assert hub.api("GET", "/users/alice").json().get("last_activity") == before


def test_vhost_header_hygiene_seen_by_backend():
    """The example vhost in front of a header-echo backend: what exactly reaches the hub's side."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ok, why = apachetools.available("alice")
    require(ok, why)

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps([[k.lower(), v] for k, v in self.headers.items()]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = secrets.token_hex(32)
    apache = apachetools.Apache(backend=f"127.0.0.1:{server.server_address[1]}", secret=secret, users=PASSWORDS)
    try:
        apache.start()
        forged = {"REMOTE_USER": "mallory", "X-Proxy-Secret": "forged", "X-Remote-User-Groups": "jhub-admins",
                  "X-Remote-User-Email": "m@evil.org", "X-Real-Ip": "10.9.9.9"}

        def seen(path):
            r = requests.get(apache.url + path, auth=("bob", PASSWORDS["bob"]), headers=forged, timeout=30)
            assert r.status_code == 200
            got = {}
            for k, v in r.json():
                got.setdefault(k, []).append(v)
            return got

        login = seen("/hub/login")
        assert login["remote_user"] == ["bob"]
        assert login["x-proxy-secret"] == [secret]
        assert login["x-remote-user-groups"] == ["hpc"]
        assert login["x-remote-user-email"] == ["bob@example.org"]
        assert "authorization" not in login  # the demo's basic-auth password stays in Apache
        assert "x-real-ip" not in login
        for path in ["/hub/home", "/hub/api/user", "/user/bob/api/contents"]:
            other = seen(path)
            for name in ("remote_user", "x-proxy-secret", "x-remote-user-groups", "x-remote-user-email",
                         "authorization", "x-real-ip"):
                assert name not in other, (path, name)
        assert secret not in apache.access_log() + apache.error_log()
    finally:
        apache.stop()
        apache.cleanup()
        server.shutdown()
