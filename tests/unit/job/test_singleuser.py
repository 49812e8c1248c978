"""batchspawner-singleuser's port report, against a real local HTTP server standing in for the hub."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from batchspawner.job import singleuser


class FakeHubAPI:
    """A loopback HTTP server that answers POST /batchspawner with scripted status codes."""

    def __init__(self, codes):
        self.codes = list(codes)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, self.headers.get("Authorization"), json.loads(body)))
                code = outer.codes.pop(0) if len(outer.codes) > 1 else outer.codes[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_api(request):
    api = FakeHubAPI(request.param)
    yield api
    api.close()


@pytest.mark.parametrize("hub_api", [[201]], indirect=True)
def test_report_sends_port_with_token(hub_api):
    singleuser.report_port(4321, hub_api.url, "tok-abc", timeout=5, log=lambda m: None)
    assert hub_api.requests == [("/hub/api/batchspawner", "token tok-abc", {"port": 4321})]


@pytest.mark.parametrize("hub_api", [[503, 502, 201]], indirect=True)
def test_report_retries_server_errors(hub_api):
    logs = []
    singleuser.report_port(4321, hub_api.url, "tok", timeout=30, log=logs.append)
    assert len(hub_api.requests) == 3
    assert len(logs) == 2 and "tok" not in " ".join(logs)


@pytest.mark.parametrize("hub_api", [[403]], indirect=True)
def test_refusal_is_final(hub_api):
    with pytest.raises(singleuser.ReportError) as info:
        singleuser.report_port(4321, hub_api.url, "tok", timeout=30, log=lambda m: None)
    assert "HTTP 403" in str(info.value)
    assert len(hub_api.requests) == 1


def test_unreachable_hub_gives_clear_error():
    with pytest.raises(singleuser.ReportError) as info:
        singleuser.report_port(4321, "http://127.0.0.1:9/hub/api", "tok", timeout=1.5, log=lambda m: None)
    assert "Can this node reach the hub?" in str(info.value)


@pytest.mark.parametrize(
    "url, port, expected",
    [
        ("http://0.0.0.0:0/user/alice/", 5000, "http://0.0.0.0:5000/user/alice/"),
        ("http://10.1.2.3:8888/user/a/b/", 5001, "http://10.1.2.3:5001/user/a/b/"),
        ("http://[::]:0/user/x/", 5002, "http://[::]:5002/user/x/"),
    ],
    ids=["any", "address", "ipv6"],
)
def test_service_url_gets_the_port(url, port, expected):
    assert singleuser.with_port(url, port) == expected


def test_pick_port_is_free():
    import socket

    port = singleuser.pick_port("127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_main_without_hub_env_fails_clearly(monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    assert singleuser.main(["jupyterhub-singleuser"]) == 2
    assert "JUPYTERHUB_API_URL is not set" in capsys.readouterr().err


def test_token_file_is_read_and_deleted(tmp_path, monkeypatch):
    token_file = tmp_path / "tok"
    token_file.write_text("tok-from-file\n")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN_FILE", str(token_file))
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    # stops at the missing API URL, after taking the token from the file
    assert singleuser.main(["jupyterhub-singleuser"]) == 2
    import os

    assert os.environ["JUPYTERHUB_API_TOKEN"] == "tok-from-file"
    assert not token_file.exists()


def test_the_wrapper_makes_its_own_log_private(tmp_path):
    """The scheduler creates the job's log with the user's umask; the wrapper, as the user, makes
    it 0600 at once (no command from the hub per spawn, issue 16). Not a pipe or a terminal."""
    import stat as _stat

    from batchspawner.job.singleuser import private_output

    log = tmp_path / "job.log"
    with open(log, "w") as f:
        os.chmod(log, 0o644)
        r, w = os.pipe()
        try:
            private_output((f.fileno(), w))
        finally:
            os.close(r)
            os.close(w)
    assert _stat.S_IMODE(log.stat().st_mode) == 0o600
