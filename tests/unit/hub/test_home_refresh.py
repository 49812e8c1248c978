"""The home page's live refresh (issue 26, home.html): a home tab left open in the background still
learns of sessions started elsewhere (another tab, the REST API), so it can tell "Your session
started"; it looks less often there (every third round), and at once when the tab is shown again.
The page's script runs here in Node with a fake page (the clock's rounds, document.hidden, the
fragment fetch counted)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from batchspawner.hub.web import TEMPLATES

NODE = shutil.which("node") or shutil.which("nodejs")

HARNESS = r"""
const vm = require("vm");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
let round = null, fetches = 0;
const listeners = {};
// fetchCards' promise, settled at once: the next round is never "busy"
const settled = {then() { return settled; }, catch() { return settled; }, finally(fn) { fn(); return settled; }};
const ctx = {
  setInterval: (fn) => { round = fn; }, setTimeout() {},
  document: {hidden: input.hidden, addEventListener: (type, fn) => { (listeners[type] = listeners[type] || []).push(fn); }},
};
ctx.window = ctx;
ctx.window.jhdata = {base_url: "/hub/"};
ctx.window.hpcCards = {fetchCards: () => { fetches += 1; return settled; }};
vm.runInNewContext(input.script, ctx);
const out = [];
for (const step of input.steps) {
  const before = fetches;
  if ("hidden" in step) { ctx.document.hidden = step.hidden; (listeners.visibilitychange || []).forEach(f => f()); }
  for (let i = 0; i < (step.rounds || 0); i++) { round(); }
  out.push(fetches - before);
}
console.log(JSON.stringify(out));
"""


def refresh_script():
    text = open(os.path.join(TEMPLATES, "home.html")).read()
    m = re.search(r"\{\{ hpc_card_script\(\) \}\}\s*<script>(.*?)</script>", text, re.S)
    assert m, "home.html's live refresh script"
    return m.group(1).replace("{{ base_url | tojson }}", '"/hub/"')


def run(steps, hidden=False):
    assert NODE, "Node.js runs the page's script in this test (Debian: apt-get install nodejs)"
    r = subprocess.run([NODE, "-e", HARNESS], input=json.dumps({"script": refresh_script(), "steps": steps,
                                                                  "hidden": hidden}),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_visible_home_page_looks_every_round():
    assert run([{"rounds": 4}]) == [4]


def test_a_background_home_tab_still_looks_every_third_round_and_at_once_when_shown():
    assert run([{"rounds": 6}, {"hidden": False}, {"rounds": 2}, {"hidden": True}, {"rounds": 3}],
               hidden=True) == [2, 1, 2, 0, 1]
