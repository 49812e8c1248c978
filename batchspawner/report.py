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
(sessions, failures, cancels, mean/max queue wait, total/mean run time);
``--csv FILE`` writes one row per session, ``--html FILE`` a page with the tables
and two inline SVG charts (queue wait per session, sessions started per hour).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import html
import json
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


def summarize(rows, by: str) -> list[dict]:
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.get(by) or "-", []).append(r)
    out = []
    for name in sorted(groups):
        rs = groups[name]
        waits = [r["queue_wait"] for r in rs if isinstance(r.get("queue_wait"), (int, float))]
        runs = [r["run_time"] for r in rs if isinstance(r.get("run_time"), (int, float))]
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
        })
    return out


def _cell(v):
    return "-" if v is None else str(v)


def table(rows, columns) -> str:
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows)) if rows else len(c) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


SUMMARY_COLUMNS = ["sessions", "started", "failures", "cancelled", "mean_queue_wait", "max_queue_wait",
                   "total_run_time", "mean_run_time"]
SESSION_COLUMNS = ["submitted", "user", "server", "profile", "scheduler", "job_id", "partition", "cores", "memory",
                   "gpus", "walltime", "queue_wait", "run_time", "outcome", "reason"]


def _epoch(ts):
    try:
        return _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def svg_bars(values, labels, title, unit, width=640, height=200) -> str:
    """A plain bar chart as inline SVG (no JavaScript, no external files)."""
    n = max(len(values), 1)
    top = max([v for v in values if v is not None] or [1]) or 1
    bw = (width - 60) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img" '
             f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>',
             f'<text x="4" y="14" font-size="12">{html.escape(title)} (max {top:g} {unit})</text>',
             f'<line x1="50" y1="{height + 20}" x2="{width}" y2="{height + 20}" stroke="#888"/>']
    for i, (v, lab) in enumerate(zip(values, labels)):
        h = 0 if v is None else (v / top) * (height - 10)
        x = 50 + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{height + 20 - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                     f'fill="#4a78b5"><title>{html.escape(str(lab))}: {_cell(v)} {unit}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def html_page(rows, users, profiles) -> str:
    def html_table(rs, columns):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                       for r in rs)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    waits = [r.get("queue_wait") for r in rows]
    wait_chart = svg_bars(waits, [f"{r.get('user')} job {r.get('job_id')}" for r in rows], "Queue wait per session", "s")
    hours: dict[str, int] = {}
    for r in rows:
        t = _epoch(r.get("submitted"))
        if t is not None:
            hour = time.strftime("%Y-%m-%d %H:00", time.gmtime(t))
            hours[hour] = hours.get(hour, 0) + 1
    keys = sorted(hours)
    per_hour = svg_bars([hours[k] for k in keys], keys, "Sessions per hour (UTC)", "sessions")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jupyterhub-hpc usage report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#eee}}</style></head><body>
<h1>jupyterhub-hpc usage report</h1>
<p>{len(rows)} sessions; generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.</p>
<h2>Queue wait</h2>{wait_chart}
<h2>Sessions over time</h2>{per_hour}
<h2>Per user</h2>{html_table(users, ['user'] + SUMMARY_COLUMNS)}
<h2>Per profile</h2>{html_table(profiles, ['profile'] + SUMMARY_COLUMNS)}
<h2>Sessions</h2>{html_table(rows, SESSION_COLUMNS)}
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
        print("Per user\n" + table(users, ["user"] + SUMMARY_COLUMNS) + "\n")
        print("Per profile\n" + table(profiles, ["profile"] + SUMMARY_COLUMNS))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SESSION_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    if args.html:
        with open(args.html, "w") as f:
            f.write(html_page(rows, users, profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
