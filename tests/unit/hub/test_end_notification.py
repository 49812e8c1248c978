"""The browser notification before a session's end (issue 26): every hub page carries the user's running
sessions' time left (escaped data attributes) and a script that, with the user's permission, notifies
once per server and job when ``walltime_warning`` seconds are left. The script runs here in Node with a
fake page (Notification, localStorage, the clock): once, not again on the next tick or page, not when
denied, not before the window, not for a session the page shows stopped."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess

import jinja2
import pytest

from batchspawner.hub.web import TEMPLATES

NODE = shutil.which("node") or shutil.which("nodejs")


def render(sessions, templates=TEMPLATES):
    env = jinja2.Environment(autoescape=True, loader=jinja2.DictLoader({
        "templates/page.html": "{% block announcement %}{% endblock %}",
        "page.html": open(os.path.join(templates, "page.html")).read(),
    }))
    return env.get_template("page.html").render(hpc_sessions=sessions)


def session(**kw):
    base = {"user": "rita", "server": "q1", "job_id": "55", "state": "running", "time_left": 800,
            "time_left_text": "13 min", "warn_seconds": 900.0, "ends_soon": True}
    return base | kw


def clocks(page):
    """The data attributes of the page's clocks, as the browser's dataset would give them."""
    out = []
    for attrs in re.findall(r'<span class="hpc-clock"([^>]*)>', page):
        pairs = re.findall(r'data-([a-z-]+)="([^"]*)"', attrs)
        out.append({re.sub(r"-([a-z])", lambda m: m.group(1).upper(), k): htmllib.unescape(v) for k, v in pairs})
    return out


# the page, in Node: what the script touches, faked; each step a JSON line of what it notified
HARNESS = r"""
const vm = require("vm");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const storage = {};
const notes = [];
function page(step) {
  let timer = null;
  const els = (step.clocks || []).map(d => ({dataset: Object.assign({}, d), classList: {contains: c => c === "hpc-clock"}}));
  const cards = (step.cards || []).map(d => ({dataset: Object.assign({}, d), classList: {contains: c => c === d.cls}}));
  const ctx = {
    Date: {now: () => step.now * 1000},
    setInterval: (fn) => { timer = fn; },
    document: {readyState: "complete", addEventListener() {},
               querySelectorAll: sel => sel === "#hpc-clocks .hpc-clock" ? els : sel === ".hpc-card, .hpc-ended" ? cards : []},
    localStorage: {getItem: k => (k in storage ? storage[k] : null), setItem: (k, v) => { storage[k] = String(v); }},
  };
  ctx.Notification = function(title, options) { notes.push([title, options.body, options.tag]); };
  ctx.Notification.permission = step.permission || "granted";
  ctx.window = ctx;
  vm.runInNewContext(input.script, ctx);
  return {ctx, tick: (now) => { step.now = now; timer(); }};
}
const out = [];
for (const step of input.steps) {
  const before = notes.length;
  const p = page(step);
  for (const t of step.ticks || []) { p.tick(t); }
  out.push(notes.slice(before));
}
console.log(JSON.stringify(out));
"""


def run_pages(script, steps):
    assert NODE, "Node.js runs the page's script in this test (Debian: apt-get install nodejs)"
    r = subprocess.run([NODE, "-e", HARNESS], input=json.dumps({"script": script, "steps": steps}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def script_of(page):
    m = re.search(r'<script id="hpc-end-notify">(.*?)</script>', page, re.S)
    assert m, "every hub page carries the end-notification script"
    return m.group(1)


def test_each_page_lists_its_users_running_sessions_time_left_escaped():
    page = render([session(), session(server='x"><script>alert(1)</script>', job_id="56"),
                   session(server="q3", job_id="57", state="queued", time_left=None),
                   session(server="q4", job_id="58", warn_seconds=0.0)])
    found = clocks(page)
    assert [c["jobId"] for c in found] == ["55", "56"]  # queued: no time left; warn 0: never warn
    assert found[0] == {"user": "rita", "server": "q1", "jobId": "55", "timeLeft": "800", "warn": "900"}
    assert found[1]["server"] == 'x"><script>alert(1)</script>'
    assert "<script>alert(1)" not in page


def test_one_notification_per_session_and_job_with_the_users_permission():
    page = render([session()])
    script, c = script_of(page), clocks(page)
    out = run_pages(script, [
        {"clocks": c, "now": 1000, "ticks": [1001, 1005, 1060]},  # the page: once, not every second
        {"clocks": c, "now": 1100, "ticks": [1101]},  # reloaded / another page of the user's: not again
        {"clocks": [c[0] | {"jobId": "77"}], "now": 1200},  # a new job on that server: its own notice
    ])
    assert out[0] == [["Your session ends soon",
                       "Server q1 (job 55) reaches its wall time in 13 min: save your work now.",
                       "jhpc-ends-soon/rita/q1/55"]]
    assert out[1] == [] and len(out[2]) == 1 and "(job 77)" in out[2][0][1]


def test_no_notification_when_denied_or_not_asked_or_stopped_or_not_yet():
    c = clocks(render([session()]))
    script = script_of(render([session()]))
    out = run_pages(script, [
        {"clocks": c, "now": 0, "permission": "denied", "ticks": [5]},
        {"clocks": c, "now": 0, "permission": "default", "ticks": [5]},
        {"clocks": c, "now": 0, "cards": [{"jobId": "55", "state": "stopped", "cls": "hpc-card"}], "ticks": [5]},
        {"clocks": c, "now": 0, "cards": [{"jobId": "55", "state": "", "cls": "hpc-ended"}]},
    ])
    assert out == [[], [], [], []]


def test_a_session_entering_the_last_minutes_is_notified_then_with_the_time_left():
    c = clocks(render([session(time_left=1000)]))
    script = script_of(render([session(time_left=1000)]))
    out = run_pages(script, [{"clocks": c, "now": 0, "ticks": [50, 99, 101, 200]}])
    assert len(out[0]) == 1 and "in 14 min:" in out[0][0][1]  # 1000 - 101 = 899 s left
    ended = run_pages(script, [{"clocks": [c[0] | {"jobId": "60"}], "now": 0, "ticks": [1001]}])
    assert ended == [[]]  # its wall time is over: nothing to warn about


def test_the_home_pages_button_asks_for_both_notifications():
    text = open(os.path.join(TEMPLATES, "home.html")).read()
    assert "Notify me when a queued session starts or is about to end" in text


def test_the_home_pages_refresh_brings_fresh_clocks():
    """The home page's live refresh (GET /hub/hpc/cards) carries the clocks too, so a session whose
    time left was not known yet when the page loaded still gets its notification."""
    env = jinja2.Environment(autoescape=True, loader=jinja2.FileSystemLoader(TEMPLATES))
    fragment = env.get_template("hpc_cards.html").render(
        sessions=[session(server="q<1>"), session(job_id="9", state="queued", time_left=None)], ended=[],
        base_url="/hub/", xsrf="t")
    assert clocks(fragment) == [{"user": "rita", "server": "q<1>", "jobId": "55", "timeLeft": "800", "warn": "900"}]
    assert "q<1>" not in fragment
    empty = env.get_template("hpc_cards.html").render(sessions=[], ended=[], base_url="/hub/", xsrf="t")
    assert '<div class="hpc-clocks"></div>' in empty
    macros = open(os.path.join(TEMPLATES, "hpc_macros.html")).read()
    home = open(os.path.join(TEMPLATES, "home.html")).read()
    assert 'clocks: Array.from(box.querySelectorAll(".hpc-clock"))' in macros
    assert 'clocks.replaceChildren.apply(clocks, fresh.clocks)' in home
    assert '<div id="hpc-clocks" hidden>' in render([])  # there to be refreshed, also with no session yet
