"""Usage log and report: one JSON line per spawn, start, failure and stop; ``jupyterhub-hpc-report``.

The hub appends to ``usage_log`` (a trait of every batch spawner; empty = off) one
JSON object per event::

    {"time": "2026-12-02T06:01:02Z", "event": "start", "user": "carol", "server": "",
     "profile": "small", "scheduler": "Slurm", "job_id": "42", "partition": "debug",
     "cores": "1", "memory": "1G", "gpus": "", "walltime": "01:00:00",
     "queue_wait": 12.5, "run_time": null, "outcome": "started", "reason": ""}

``event`` is ``spawn`` (job submitted), ``start`` (server up), ``fail`` (the spawn
failed or was cancelled: ``outcome`` says which, ``reason`` why) or ``stop``
(``run_time`` from start to stop). The file is opened in append mode, created 0600.

``jupyterhub-hpc-report usage.jsonl`` prints per-user and per-profile tables
(sessions, failures, cancels, mean/max queue wait in s, total run time in h, mean run time
in min, core-h and GiB-h); every header names its unit. ``--csv FILE`` writes one row per
session (memory in GiB, queue wait in s, run time in min, core-h), ``--html FILE`` a page with
the tables and three inline SVG bar charts (queue wait per session, sessions submitted per
hour, core time per user), each with labelled axes and a scale. ``--json`` keeps the log's
units (seconds) and key names.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import html
import json
import math
import os
import sys
import time

FIELDS = ["time", "event", "user", "server", "profile", "scheduler", "job_id", "partition", "cores", "memory",
          "gpus", "walltime", "queue_wait", "run_time", "outcome", "reason"]


def record(spawner, event: str, outcome: str = "", reason: str = "", queue_wait=None, run_time=None, path=None):
    """Append one usage line for ``spawner`` (a batch spawner); never raises."""
    path = path if path is not None else getattr(spawner, "usage_log", "")
    if not path:
        return
    try:
        wrapper = getattr(spawner, "_wrapper_profile", "")
        line = {
            "time": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event": event,
            "user": spawner.user.name,
            "server": spawner.name or "",
            "profile": wrapper or getattr(spawner, "profile_key", "") or "",
            "scheduler": type(spawner).__name__.replace("Spawner", ""),
            "job_id": spawner.job_id,
            "partition": getattr(spawner, "req_partition", "") or getattr(spawner, "req_queue", ""),
            "cores": spawner.req_nprocs,
            "memory": spawner.req_memory,
            "gpus": spawner.req_ngpus,
            "walltime": spawner.req_runtime,
            "queue_wait": None if queue_wait is None else round(queue_wait, 2),
            "run_time": None if run_time is None else round(run_time, 2),
            "outcome": outcome,
            "reason": (reason or "").splitlines()[0][:300] if reason else "",
        }
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(line, sort_keys=False) + "\n")
    except Exception:
        spawner.log.exception("could not write the usage log %s", path)


# ---------------------------------------------------------------- reading
def read_events(paths) -> list[dict]:
    events = []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    print(f"{path}:{n}: not JSON, skipped", file=sys.stderr)
                    continue
                if isinstance(obj, dict) and obj.get("event"):
                    events.append(obj)
    return events


def sessions(events) -> list[dict]:
    """One row per spawn attempt (keyed by user, server, job id): its outcome, queue wait, run time."""
    rows: dict[tuple, dict] = {}
    order = []
    for e in events:
        key = (e.get("user"), e.get("server"), e.get("job_id") or f"nojob-{len(order)}")
        row = rows.get(key)
        if row is None:
            row = rows[key] = {f: e.get(f) for f in FIELDS if f not in ("event", "time")}
            row.update(submitted=e.get("time"), outcome="pending", queue_wait=None, run_time=None, reason="")
            order.append(key)
        ev = e["event"]
        if ev == "start":
            row["outcome"] = "started"
            row["started"] = e.get("time")
            row["queue_wait"] = e.get("queue_wait")
        elif ev == "fail":
            row["outcome"] = e.get("outcome") or "failed"
            row["reason"] = e.get("reason", "")
            if e.get("queue_wait") is not None:
                row["queue_wait"] = e.get("queue_wait")
        elif ev == "stop":
            if row["outcome"] in ("started", "pending"):
                row["outcome"] = e.get("outcome") or "stopped"
            row["run_time"] = e.get("run_time")
    return [rows[k] for k in order]


def memory_gib(value):
    """A scheduler memory size ("512M", "2G", "1.5G", "1T", "262144K"; a bare number is MB, as in
    Slurm) in GiB (1024-based, as Slurm counts), or None when there is none or it is not a size."""
    text = str(value or "").strip().upper().removesuffix("B")
    if not text:
        return None
    unit = text[-1] if text[-1] in "KMGT" else "M"
    number = text[:-1] if text[-1] in "KMGT" else text
    try:
        amount = float(number)
    except ValueError:
        return None
    return round(amount * {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}[unit], 3)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _cores(row):
    try:
        return float(row.get("cores")) if str(row.get("cores") or "").strip() else None
    except ValueError:
        return None


def core_hours(row):
    """Cores x run time of one session, in core-hours (None without both)."""
    run, cores = _num(row.get("run_time")), _cores(row)
    return None if run is None or cores is None else run * cores / 3600


def gib_hours(row):
    """Memory x run time of one session, in GiB-hours (None without both)."""
    run, mem = _num(row.get("run_time")), memory_gib(row.get("memory"))
    return None if run is None or mem is None else run * mem / 3600


def summarize(rows, by: str) -> list[dict]:
    """Per ``by`` (user or profile): counts, queue wait (s), run time (s), core-h, GiB-h (JSON keys)."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.get(by) or "-", []).append(r)
    out = []
    for name in sorted(groups):
        rs = groups[name]
        waits = [r["queue_wait"] for r in rs if _num(r.get("queue_wait")) is not None]
        runs = [r["run_time"] for r in rs if _num(r.get("run_time")) is not None]
        cores = [x for x in map(core_hours, rs) if x is not None]
        mems = [x for x in map(gib_hours, rs) if x is not None]
        out.append({
            by: name,
            "sessions": len(rs),
            "started": sum(1 for r in rs if r.get("started")),
            "failures": sum(1 for r in rs if r["outcome"] == "failed"),
            "cancelled": sum(1 for r in rs if r["outcome"] == "cancelled"),
            "mean_queue_wait": round(sum(waits) / len(waits), 1) if waits else None,
            "max_queue_wait": round(max(waits), 1) if waits else None,
            "total_run_time": round(sum(runs), 1) if runs else None,
            "mean_run_time": round(sum(runs) / len(runs), 1) if runs else None,
            "core_hours": round(sum(cores), 2) if cores else None,
            "memory_gib_hours": round(sum(mems), 2) if mems else None,
        })
    return out


def _cell(v):
    return "-" if v is None else str(v)


def _scaled(factor, digits):
    def show(v):
        v = _num(v)
        return None if v is None else round(v / factor, digits)
    return show


def _same(v):
    return v


# The human tables (text, HTML, CSV): (key, header with its unit, value in that unit). A header
# names its unit in parentheses wherever the column has one; counts and names have none.
SUMMARY_TABLE = [
    ("sessions", "sessions", _same),
    ("started", "started", _same),
    ("failures", "failures", _same),
    ("cancelled", "cancelled", _same),
    ("mean_queue_wait", "mean queue wait (s)", _scaled(1, 1)),
    ("max_queue_wait", "max queue wait (s)", _scaled(1, 1)),
    ("total_run_time", "total run time (h)", _scaled(3600, 2)),
    ("mean_run_time", "mean run time (min)", _scaled(60, 1)),
    ("core_hours", "core time (core-h)", _scaled(1, 2)),
    ("memory_gib_hours", "memory time (GiB-h)", _scaled(1, 2)),
]
SESSION_TABLE = [
    ("submitted", "submitted (UTC)", lambda v: (v or "").replace("T", " ").rstrip("Z") or None),
    ("user", "user", _same),
    ("server", "server", _same),
    ("profile", "profile", _same),
    ("scheduler", "scheduler", _same),
    ("job_id", "job", _same),
    ("partition", "partition", _same),
    ("cores", "cores", _same),
    ("memory", "memory (GiB)", memory_gib),
    ("gpus", "GPUs", _same),
    ("walltime", "wall time asked (h:mm:ss)", _same),
    ("queue_wait", "queue wait (s)", _scaled(1, 1)),
    ("run_time", "run time (min)", _scaled(60, 1)),
    ("core_hours", "core time (core-h)", _scaled(1, 2)),
    ("outcome", "outcome", _same),
    ("reason", "reason", _same),
]
# the JSON keys of the summaries (unchanged, in seconds); kept for callers of this module
SUMMARY_COLUMNS = [key for key, _, _ in SUMMARY_TABLE]
SESSION_COLUMNS = [key for key, _, _ in SESSION_TABLE]


def _shown(rows, columns, first=None):
    """``rows`` as (headers, rows of cells) in the units of ``columns``; ``first``: a leading column."""
    spec = ([(first, first, _same)] if first else []) + list(columns)
    headers = [h for _, h, _ in spec]
    cells = []
    for r in rows:
        row = dict(r)
        row.setdefault("core_hours", core_hours(r))
        values = []
        for key, _, show in spec:
            v = show(row.get(key))
            values.append(_cell(None if v == "" else v))
        cells.append(values)
    return headers, cells


def table(rows, columns, first=None) -> str:
    """A text table; ``columns`` is a list of (key, header, unit conversion) like SUMMARY_TABLE."""
    headers, cells = _shown(rows, columns, first)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    return "\n".join(lines)


def _epoch(ts):
    try:
        return _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def _nice_top(top):
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= ``top`` (the y axis' end)."""
    if top <= 0:
        return 1
    power = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= top - 1e-9:
            return step * power
    return 10 * power


def svg_bars(values, labels, title, x_label, y_label, width=680, height=220) -> str:
    """A bar chart as inline SVG (no JavaScript, no external files): a y axis with its label (the
    unit in parentheses) and ticks at 0, half and the top, an x axis with its label and, when
    there are at most 24 bars, each bar's label under it."""
    esc = html.escape
    left, right, top_pad, bottom = 64, 10, 28, 70
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = max(len(values), 1)
    top = _nice_top(max([v for v in values if v is not None] or [0]))
    bw = min(plot_w / n, 90)  # few bars stay bars, not blocks
    y0 = top_pad + plot_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{esc(title)}" font-family="sans-serif"><title>{esc(title)}</title>',
             f'<text class="title" x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
             f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#555"/>',
             f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{y0}" stroke="#555"/>']
    for frac in (0, 0.5, 1):
        y = y0 - frac * plot_h
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text class="y-tick" x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{top * frac:g}</text>')
    parts.append(f'<text class="y-label" x="14" y="{top_pad + plot_h / 2:.1f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top_pad + plot_h / 2:.1f})">{esc(y_label)}</text>')
    parts.append(f'<text class="x-label" x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="12" '
                 f'text-anchor="middle">{esc(x_label)}</text>')
    for i, (v, lab) in enumerate(zip(values, labels)):
        h = 0 if v is None else (v / top) * plot_h
        x = left + i * bw
        parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y0 - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                     f'height="{h:.3f}" fill="#4a78b5"><title>{esc(str(lab))}: {_cell(v)} {esc(y_label)}</title></rect>')
        if len(values) <= 24:
            cx = x + bw / 2
            parts.append(f'<text class="x-tick" x="{cx:.1f}" y="{y0 + 14}" font-size="10" text-anchor="end" '
                         f'transform="rotate(-30 {cx:.1f} {y0 + 14})">{esc(str(lab))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_page(rows, users, profiles) -> str:
    def html_table(rs, columns, first=None):
        headers, cells = _shown(rs, columns, first)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    waits = [_num(r.get("queue_wait")) for r in rows]
    wait_chart = svg_bars(waits, [f"{r.get('user')} {r.get('job_id') or '-'}" for r in rows],
                          "Queue wait per session", "session (user, job)", "queue wait (s)")
    hours: dict[str, int] = {}
    for r in rows:
        t = _epoch(r.get("submitted"))
        if t is not None:
            hour = time.strftime("%m-%d %H:00", time.gmtime(t))
            hours[hour] = hours.get(hour, 0) + 1
    keys = sorted(hours)
    per_hour = svg_bars([hours[k] for k in keys], keys, "Sessions submitted per hour", "hour (UTC)",
                        "sessions submitted")
    core_chart = svg_bars([u.get("core_hours") for u in users], [u.get("user") for u in users],
                          "Core time per user", "user", "core time (core-h)")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jupyterhub-hpc usage report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#eee}}</style></head><body>
<h1>jupyterhub-hpc usage report</h1>
<p>{len(rows)} sessions; generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.
Times are UTC; GiB = 1024&#179; bytes; core-h = cores &#215; hours of run time (from start to stop).</p>
<h2>Queue wait</h2>{wait_chart}
<h2>Sessions over time</h2>{per_hour}
<h2>Core time</h2>{core_chart}
<h2>Per user</h2>{html_table(users, SUMMARY_TABLE, 'user')}
<h2>Per profile</h2>{html_table(profiles, SUMMARY_TABLE, 'profile')}
<h2>Sessions</h2>{html_table(rows, SESSION_TABLE)}
</body></html>
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="jupyterhub-hpc-report",
        description="Per-user and per-profile usage tables from the hub's usage log (JSON lines).",
    )
    parser.add_argument("logs", nargs="+", help="usage log file(s) written by the hub (usage_log)")
    parser.add_argument("--csv", metavar="FILE", help="write one row per session as CSV")
    parser.add_argument("--html", metavar="FILE", help="write an HTML page with tables and charts")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON instead of tables")
    args = parser.parse_args(argv)
    try:
        events = read_events(args.logs)
    except OSError as e:
        parser.error(f"cannot read {e.filename}: {e.strerror}")
    rows = sessions(events)
    users, profiles = summarize(rows, "user"), summarize(rows, "profile")
    if args.json:
        print(json.dumps({"sessions": len(rows), "users": users, "profiles": profiles}, indent=2))
    else:
        print(f"{len(rows)} sessions from {len(events)} events\n")
        print("Per user\n" + table(users, SUMMARY_TABLE, "user") + "\n")
        print("Per profile\n" + table(profiles, SUMMARY_TABLE, "profile"))
    if args.csv:
        headers, cells = _shown(rows, SESSION_TABLE)
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(headers)
            w.writerows(cells)
    if args.html:
        with open(args.html, "w") as f:
            f.write(html_page(rows, users, profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
