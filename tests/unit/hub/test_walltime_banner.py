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


async def test_the_cached_answer_crosses_into_the_warning_window_without_asking_the_hub():
    """Issue 26, live: a Lab opened before the job's last walltime_warning seconds gets the banner
    when the time left counted down from the cached answer reaches them (not at the next hub
    answer); not while the job is suspended (its wall time does not run)."""
    server, url = _serve(web.Application([(r"/hub/api/batchspawner", FakeHub)]))
    now = [100.0]
    source = proof.WalltimeSource(url + "/hub/api/", "tok-2", clock=lambda: now[0])
    FakeHub.tokens = []
    FakeHub.answers = [(200, {"time_left": 140, "ends_soon": False, "warn_seconds": 130, "state": "running"}),
                       (200, {"time_left": 100, "ends_soon": False, "warn_seconds": 130, "state": "suspended"})]
    try:
        assert (await source.get())["ends_soon"] is False
        now[0] += 9
        assert (await source.get()) == {"ends_soon": False, "time_left": 131, "warn_seconds": 130, "state": "running"}
        now[0] += 1
        assert (await source.get()) == {"ends_soon": True, "time_left": 130, "warn_seconds": 130, "state": "running"}
        assert len(FakeHub.tokens) == 1
        now[0] += proof.WALLTIME_CACHE
        assert (await source.get())["ends_soon"] is False  # suspended: the hub's word stands
    finally:
        server.stop()


# the banner's script in Node: fetch answers from a list, timers recorded, the banner's text read
BANNER_HARNESS = r"""
const vm = require("vm");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const answers = input.answers.slice(), timeouts = [], intervals = [];
let asked = 0, banner = null;
function el(tag) {
  return {tag, style: {}, children: [], className: "", textContent: "", setAttribute() {},
          appendChild(c) { this.children.push(c); return c; }, remove() { banner = null; },
          querySelector(sel) { return this.children.find(c => "." + c.className === sel) || null; }};
}
const ctx = {
  document: {cookie: "", getElementById: () => banner, createElement: el,
             body: {appendChild(e) { banner = e; }}},
  fetch: () => { asked += 1; const a = answers.shift(); return Promise.resolve({ok: true, json: () => a}); },
  setTimeout: (fn, ms) => { timeouts.push([fn, ms]); return timeouts.length; }, clearTimeout() {},
  setInterval: (fn, ms) => { intervals.push(ms); },
};
ctx.window = ctx;
const settle = () => new Promise(r => setImmediate(r));
(async () => {
  vm.runInNewContext(input.script, ctx);
  await settle();
  const out = {asked: [asked], timeouts: timeouts.map(t => t[1]), intervals, text: []};
  out.text.push(banner ? banner.children[0].textContent : null);
  if (timeouts.length) { timeouts[timeouts.length - 1][0](); await settle(); }
  out.asked.push(asked);
  out.text.push(banner ? banner.children[0].textContent : null);
  console.log(JSON.stringify(out));
})();
"""


def _run_banner(answers):
    import shutil
    import subprocess

    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "Node.js runs the banner's script in this test (Debian: apt-get install nodejs)"
    script = proof.banner_script("/user/a/").decode()
    script = script[len("<script>"):-len("</script>")]
    r = subprocess.run([node, "-e", BANNER_HARNESS], input=json.dumps({"script": script, "answers": answers}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_banner_asks_again_when_the_job_enters_its_last_minutes():
    out = _run_banner([{"time_left": 170, "ends_soon": False, "warn_seconds": 130, "state": "running"},
                       {"time_left": 130, "ends_soon": True, "warn_seconds": 130, "state": "running"}])
    assert out["intervals"] == [proof.WALLTIME_POLL * 1000]
    assert out["text"][0] is None and out["asked"] == [1, 2]
    # the crossing in 40 s: asked then (a little after), not at the next 30-second round
    assert len(out["timeouts"]) == 1 and 40_000 <= out["timeouts"][0] <= 42_000, out["timeouts"]
    assert out["text"][1] == ("Your batch job reaches its wall time in 2 min: save your work now. "
                              "This server stops when the job ends.")


def test_a_crossing_days_ahead_is_looked_at_again_within_the_hour():
    """Browsers fire a timer of more than 2**31 ms (24.8 days) at once: a month-long job must not make
    the banner ask the hub in a loop."""
    answer = {"time_left": 40 * 86400, "ends_soon": False, "warn_seconds": 900, "state": "running"}
    out = _run_banner([answer, answer])
    assert out["timeouts"] == [3600_000] and out["text"] == [None, None]


def test_the_banner_sets_no_timer_without_a_crossing_ahead():
    for answer in [{"time_left": 100, "ends_soon": True, "warn_seconds": 130, "state": "running"},
                   {"time_left": 500, "ends_soon": False, "warn_seconds": 0, "state": "running"},
                   {"time_left": None, "ends_soon": False, "warn_seconds": 130, "state": "queued"},
                   {"time_left": 500, "ends_soon": False, "warn_seconds": 130, "state": "suspended"}]:
        assert _run_banner([answer, answer])["timeouts"] == [], answer
