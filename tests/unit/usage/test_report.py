"""jupyterhub-hpc-report's output (issue 26): every column header that has a unit names it, the
numbers are in those units, and the HTML page's charts have axis labels with units and a scale.

The usage log is written by hand (the events the hub writes, see batchspawner/usage/report.py), so the
expected figures are known: alice ran 1 h 30 min on 2 cores with 512M (3 core-h, 0.75 GiB-h) after
30 s in the queue; bob 30 min on 4 cores with 2G (2 core-h, 1 GiB-h) after 90 s; bob's second
start failed after 12 s.
"""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser

from batchspawner.usage import report

EVENTS = [
    {"time": "2026-12-01T09:00:00Z", "event": "spawn", "user": "alice", "server": "", "profile": "small",
     "scheduler": "Slurm", "job_id": "11", "partition": "debug", "cores": "2", "memory": "512M", "gpus": "",
     "walltime": "02:00:00", "queue_wait": None, "run_time": None, "outcome": "", "reason": ""},
    {"time": "2026-12-01T09:00:30Z", "event": "start", "user": "alice", "server": "", "profile": "small",
     "scheduler": "Slurm", "job_id": "11", "partition": "debug", "cores": "2", "memory": "512M", "gpus": "",
     "walltime": "02:00:00", "queue_wait": 30.0, "run_time": None, "outcome": "started", "reason": ""},
    {"time": "2026-12-01T10:30:30Z", "event": "stop", "user": "alice", "server": "", "profile": "small",
     "scheduler": "Slurm", "job_id": "11", "partition": "debug", "cores": "2", "memory": "512M", "gpus": "",
     "walltime": "02:00:00", "queue_wait": None, "run_time": 5400.0, "outcome": "stopped", "reason": ""},
    {"time": "2026-12-01T10:05:00Z", "event": "spawn", "user": "bob", "server": "w", "profile": "custom",
     "scheduler": "Slurm", "job_id": "12", "partition": "debug", "cores": "4", "memory": "2G", "gpus": "1",
     "walltime": "01:00:00", "queue_wait": None, "run_time": None, "outcome": "", "reason": ""},
    {"time": "2026-12-01T10:06:30Z", "event": "start", "user": "bob", "server": "w", "profile": "custom",
     "scheduler": "Slurm", "job_id": "12", "partition": "debug", "cores": "4", "memory": "2G", "gpus": "1",
     "walltime": "01:00:00", "queue_wait": 90.0, "run_time": None, "outcome": "started", "reason": ""},
    {"time": "2026-12-01T10:36:30Z", "event": "stop", "user": "bob", "server": "w", "profile": "custom",
     "scheduler": "Slurm", "job_id": "12", "partition": "debug", "cores": "4", "memory": "2G", "gpus": "1",
     "walltime": "01:00:00", "queue_wait": None, "run_time": 1800.0, "outcome": "stopped", "reason": ""},
    {"time": "2026-12-01T10:40:00Z", "event": "spawn", "user": "bob", "server": "", "profile": "custom",
     "scheduler": "Slurm", "job_id": "13", "partition": "debug", "cores": "1", "memory": "1024", "gpus": "",
     "walltime": "00:30:00", "queue_wait": None, "run_time": None, "outcome": "", "reason": ""},
    {"time": "2026-12-01T10:40:12Z", "event": "fail", "user": "bob", "server": "", "profile": "custom",
     "scheduler": "Slurm", "job_id": "13", "partition": "debug", "cores": "1", "memory": "1024", "gpus": "",
     "walltime": "00:30:00", "queue_wait": 12.0, "run_time": None, "outcome": "failed", "reason": "exit 7"},
]

SUMMARY_HEADERS = ["sessions", "started", "failures", "cancelled", "mean queue wait (s)", "max queue wait (s)",
                   "total run time (h)", "mean run time (min)", "core time (core-h)", "memory time (GiB-h)"]
SESSION_HEADERS = ["submitted (UTC)", "user", "server", "profile", "scheduler", "job", "partition", "cores",
                   "memory (GiB)", "GPUs", "wall time asked (h:mm:ss)", "queue wait (s)", "run time (min)",
                   "core time (core-h)", "outcome", "reason"]


def _log(tmp_path):
    path = tmp_path / "usage.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return path


def _text_table(out: str, title: str) -> list[dict]:
    """The rows of the text table under ``title`` (columns are separated by two or more spaces)."""
    lines = out.split(title + "\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert set(lines[1].replace(" ", "")) == {"-"}, lines[1]
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[2:]], header


class _Page(HTMLParser):
    """Table headers, cells and the SVG charts' texts and bars of the report's HTML page."""

    def __init__(self):
        super().__init__()
        self.tables, self.charts, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"th": [], "td": []})
        elif tag in ("th", "td"):
            self._in = tag
            self.tables[-1][tag].append("")
        elif tag == "svg":
            self.charts.append({"label": a.get("aria-label", ""), "texts": [], "bars": []})
        elif tag == "text" and self.charts:
            self._in = ("text", a.get("class", ""))
            self.charts[-1]["texts"].append([a.get("class", ""), ""])
        elif tag == "rect" and self.charts and "bar" in (a.get("class") or ""):
            self.charts[-1]["bars"].append(float(a["height"]))

    def handle_endtag(self, tag):
        if tag in ("th", "td", "text"):
            self._in = None

    def handle_data(self, data):
        if self._in in ("th", "td"):
            self.tables[-1][self._in][-1] += data
        elif isinstance(self._in, tuple):
            self.charts[-1]["texts"][-1][1] += data


def test_text_tables_name_their_units_and_give_the_figures_in_them(tmp_path, capsys):
    assert report.main([str(_log(tmp_path))]) == 0
    out = capsys.readouterr().out
    users, header = _text_table(out, "Per user")
    assert header == ["user"] + SUMMARY_HEADERS
    alice, bob = users
    assert alice["user"] == "alice" and bob["user"] == "bob"
    assert alice["core time (core-h)"] == "3.0" and bob["core time (core-h)"] == "2.0"
    assert alice["memory time (GiB-h)"] == "0.75" and bob["memory time (GiB-h)"] == "1.0"
    assert alice["total run time (h)"] == "1.5" and alice["mean run time (min)"] == "90.0"
    assert bob["mean queue wait (s)"] == "51.0" and bob["max queue wait (s)"] == "90.0"
    assert (bob["sessions"], bob["started"], bob["failures"]) == ("2", "1", "1")
    profiles, header = _text_table(out, "Per profile")
    assert header == ["profile"] + SUMMARY_HEADERS
    assert [p["profile"] for p in profiles] == ["custom", "small"]


def test_csv_and_html_tables_name_their_units(tmp_path):
    log = _log(tmp_path)
    assert report.main([str(log), "--csv", str(tmp_path / "r.csv"), "--html", str(tmp_path / "r.html")]) == 0
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == SESSION_HEADERS
    assert [r["memory (GiB)"] for r in rows] == ["0.5", "2.0", "1.0"]  # 512M, 2G, 1024 (Slurm: MB)
    assert [r["run time (min)"] for r in rows] == ["90.0", "30.0", "-"]
    assert [r["core time (core-h)"] for r in rows] == ["3.0", "2.0", "-"]
    assert [r["queue wait (s)"] for r in rows] == ["30.0", "90.0", "12.0"]
    page = _Page()
    page.feed((tmp_path / "r.html").read_text())
    users, profiles, sessions = page.tables
    assert users["th"] == ["user"] + SUMMARY_HEADERS
    assert profiles["th"] == ["profile"] + SUMMARY_HEADERS
    assert sessions["th"] == SESSION_HEADERS
    # no raw key of the log is left as a header
    assert not any("_" in h for t in page.tables for h in t["th"])


def test_html_charts_have_axis_labels_with_units_and_a_scale(tmp_path):
    log = _log(tmp_path)
    assert report.main([str(log), "--html", str(tmp_path / "r.html")]) == 0
    page = _Page()
    page.feed((tmp_path / "r.html").read_text())
    charts = {c["label"]: c for c in page.charts}
    assert set(charts) == {"Queue wait per session", "Sessions submitted per hour", "Core time per user"}

    def texts(chart, cls):
        return [t for c, t in chart["texts"] if cls in c.split()]

    wait = charts["Queue wait per session"]
    assert texts(wait, "y-label") == ["queue wait (s)"]
    assert texts(wait, "x-label") == ["session (user, job)"]
    assert texts(wait, "x-tick") == ["alice 11", "bob 12", "bob 13"]
    # the scale: 0 at the bottom, a round top above the largest wait (90 s); bars in proportion
    assert texts(wait, "y-tick") == ["0", "50", "100"]
    assert [round(h / wait["bars"][1], 3) for h in wait["bars"]] == [round(30 / 90, 3), 1.0, round(12 / 90, 3)]

    hours = charts["Sessions submitted per hour"]
    assert texts(hours, "y-label") == ["sessions submitted"]
    assert texts(hours, "x-label") == ["hour (UTC)"]
    assert texts(hours, "x-tick") == ["12-01 09:00", "12-01 10:00"]
    assert len(hours["bars"]) == 2 and hours["bars"][1] == 2 * hours["bars"][0]

    core = charts["Core time per user"]
    assert texts(core, "y-label") == ["core time (core-h)"]
    assert texts(core, "x-label") == ["user"]
    assert texts(core, "x-tick") == ["alice", "bob"]
    assert texts(core, "y-tick") == ["0", "2.5", "5"]
    assert round(core["bars"][1] / core["bars"][0], 3) == round(2 / 3, 3)


def test_memory_in_gib_from_slurm_sizes():
    assert [report.memory_gib(m) for m in ("512M", "2G", "1024", "1.5G", "1T", "262144K", "", None, "lots")] == [
        0.5, 2.0, 1.0, 1.5, 1024.0, 0.25, None, None, None]


def test_json_summaries_keep_their_keys_and_add_core_hours(tmp_path, capsys):
    assert report.main([str(_log(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    alice = out["users"][0]
    assert {"sessions", "started", "failures", "cancelled", "mean_queue_wait", "max_queue_wait", "total_run_time",
            "mean_run_time", "core_hours", "memory_gib_hours"} <= set(alice)
    assert alice["total_run_time"] == 5400.0 and alice["core_hours"] == 3.0
