"""The in-Lab wall-time banner (issue 26): the hub tells a job's own server (GET /hub/api/batchspawner
with the server's token) how much wall time is left and whether to warn (walltime_warning); the job's
server extension (batchspawner/job/proof.py) asks the hub at most every WALLTIME_CACHE s and puts a small
script into its own HTML pages that shows the banner."""

from __future__ import annotations

import json

import pytest
from test_slurm_spawner import PortHandlerStub
from test_sessions_logs import Squeue, spawner
from fakes import FakeRunner
from test_port_proof import serve_on_loopback
from tornado import httpclient, web

from batchspawner.job import proof
from batchspawner.hub import sessions
from batchspawner.hub.api import BatchSpawnerAPIHandler


async def running_spawner(**traits):
    sp = spawner(FakeRunner(Squeue("RUNNING localhost None")), "126", **traits)
    sp._track_session()
    await sp.details_poller().refresh(max_age=0)
    await sp.job_status_now()
    return sp, sp.details_poller().details["126"]["start"]  # the captured job: 600 s of wall time


async def test_the_hub_answers_time_left_and_warns_from_walltime_warning():
    sp, start = await running_spawner()
    answer = sessions.walltime_answer(sp, now=start + 60)
    assert answer["time_left"] == 540 and answer["ends_soon"] and answer["warn_seconds"] == 900
    sp.walltime_warning = 300  # the admin's setting: warn in the last 5 minutes only
    assert not sessions.walltime_answer(sp, now=start + 60)["ends_soon"]
    assert sessions.walltime_answer(sp, now=start + 301)["ends_soon"]
    assert not sessions.session_facts(sp, now=start + 60)["ends_soon"]  # the cards and pages agree
    sp.walltime_warning = 0  # never
    assert not sessions.walltime_answer(sp, now=start + 599)["ends_soon"]


async def test_the_api_answers_only_the_tokens_own_server():
    sp, _ = await running_spawner()
    sp.user.spawners[""] = sp
    handler = PortHandlerStub(sp.user, sp.api_token, None)
    handler.set_header = lambda *a: None
    BatchSpawnerAPIHandler.get(handler)
    answer = json.loads(handler.body)
    assert answer["job_id"] == "126" and set(answer) >= {"time_left", "ends_soon", "warn_seconds", "state"}
    stranger = PortHandlerStub(sp.user, "not-this-servers-token", None)
    with pytest.raises(web.HTTPError) as err:
        BatchSpawnerAPIHandler.get(stranger)
    assert err.value.status_code == 403


def _serve(app):
    return serve_on_loopback(app)


class Page(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish("<html><head></head><body><div id=main>" + "x" * 2000 + "</div></body></html>")


class Api(web.RequestHandler):
    def get(self):
        self.finish({"ok": 1})


async def test_the_servers_html_pages_get_the_banner_script_even_compressed():
    app = web.Application([(r"/user/alice/lab.*", Page), (r"/user/alice/api/x", Api),
                           (r"/user/alice/other", Page)], compress_response=True)
    app.transforms.insert(0, proof.banner_transform("/user/alice/"))
    server, url = _serve(app)
    client = httpclient.AsyncHTTPClient()
    try:
        for path in ("/user/alice/lab", "/user/alice/lab/tree/a.ipynb"):
            for gzip in (False, True):
                r = await client.fetch(url + path, decompress_response=gzip)
                assert b'var url = "/user/alice/batchspawner/walltime"' in r.body, (path, gzip)
                assert r.body.endswith(b"})();</script></body></html>")
        other = await client.fetch(url + "/user/alice/other")
        api = await client.fetch(url + "/user/alice/api/x")
        assert b"<script>" not in other.body and json.loads(api.body) == {"ok": 1}
    finally:
        server.stop()


def test_the_script_cannot_be_ended_by_a_base_url_and_sends_the_xsrf_token():
    script = proof.banner_script("/user/a</script><b>/")
    assert script.count(b"</script>") == 1
    # JupyterHub's cookie auth answers 403 to a fetch() without X-XSRFToken (seen in the browser test)
    assert b'headers: {"X-XSRFToken": xsrf()}' in script and b"_xsrf=([^;]*)" in script


class FakeHub(web.RequestHandler):
    answers = []
    tokens = []

    def get(self):
        self.tokens.append(self.request.headers.get("Authorization"))
        code, body = self.answers.pop(0)
        self.set_status(code)
        self.finish(body)


async def test_the_server_asks_the_hub_with_its_token_caches_and_counts_down():
    server, url = _serve(web.Application([(r"/hub/api/batchspawner", FakeHub)]))
    now = [100.0]
    source = proof.WalltimeSource(url + "/hub/api/", "tok-1", clock=lambda: now[0])
    FakeHub.answers = [(200, {"time_left": 800, "ends_soon": True, "warn_seconds": 900, "state": "running"}),
                       (500, "down"), (200, {"time_left": 500, "ends_soon": True})]
    try:
        assert await source.get() == {"ends_soon": True, "time_left": 800, "warn_seconds": 900, "state": "running"}
        now[0] += 10  # cached: no second request, the time counts down
        assert (await source.get())["time_left"] == 790 and len(FakeHub.tokens) == 1
        now[0] += proof.WALLTIME_CACHE  # the hub fails: the last answer, counted down
        assert (await source.get())["time_left"] == 800 - 10 - int(proof.WALLTIME_CACHE)
        now[0] += 1
        assert (await source.get())["time_left"] == 500
        assert FakeHub.tokens == ["token tok-1"] * 3
    finally:
        server.stop()
    nothing = proof.WalltimeSource("http://127.0.0.1:9/hub/api", "t")
    assert await nothing.get() == {"ends_soon": False, "time_left": None}
