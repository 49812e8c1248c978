"""Pure helpers of the benchmark: parsing counts and /proc, percentiles, the table.

Nothing here starts a process or touches the network, so tests/unit can check it.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections import Counter

TOOLS = ("sbatch", "squeue", "scancel")


def count_calls(lines) -> Counter:
    """Count scheduler calls in shim log lines (``<tool> [details]`` per call)."""
    counts = Counter()
    for line in lines:
        word = line.split(None, 1)[0] if line.strip() else ""
        if word in TOOLS:
            counts[word] += 1
    return counts


def job_ids_from_log(lines) -> list[str]:
    """Job ids the sbatch shim saw (``sbatch 123`` or ``sbatch 123;cluster``), in order, unique."""
    seen = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "sbatch":
            job_id = parts[1].split(";")[0]
            if job_id.isdigit() and job_id not in seen:
                seen.append(job_id)
    return seen


def parse_proc_stat(text: str) -> dict[str, int]:
    """utime, stime, cutime, cstime (clock ticks) from the text of /proc/PID/stat.

    The command name (field 2) is in parentheses and may hold spaces or ')',
    so the fields are counted from the last ')'.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14
    utime, stime, cutime, cstime = (int(rest[i]) for i in range(11, 15))
    return {"utime": utime, "stime": stime, "cutime": cutime, "cstime": cstime}


def cpu_seconds(stat: dict[str, int], ticks: int | None = None) -> tuple[float, float]:
    """(own, children) CPU seconds from parse_proc_stat's dict."""
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    return (stat["utime"] + stat["stime"]) / ticks, (stat["cutime"] + stat["cstime"]) / ticks


def percentile(values, pct: float) -> float:
    """Nearest-rank percentile (pct in 0-100) of a non-empty sequence."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(pct / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def median(values) -> float:
    return statistics.median(values)


def parse_node_cpus(scontrol_text: str) -> tuple[int, int]:
    """(CPUTot, CPUAlloc) summed over the nodes of ``scontrol show node`` output."""
    tot = sum(int(m) for m in re.findall(r"\bCPUTot=(\d+)", scontrol_text))
    alloc = sum(int(m) for m in re.findall(r"\bCPUAlloc=(\d+)", scontrol_text))
    return tot, alloc


def fmt_calls(counts: Counter, rounds: float) -> str:
    """Calls per round as ``total (squeue a, sbatch b, scancel c)``; only non-zero tools listed."""
    total = sum(counts[t] for t in TOOLS) / rounds
    parts = [f"{t} {counts[t] / rounds:g}" for t in TOOLS if counts[t]]
    return f"{total:g}" + (f" ({', '.join(parts)})" if parts else "")


def render_table(rows, headers) -> str:
    """A Markdown table; rows are lists of cells (str)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


# ------------------------------------------------------------------ spawn phases (both packages alike)
PHASES = ("submit", "job start", "server listening", "port reported", "ready after both")

_LOG_TIME = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})")


def log_time(line: str) -> float | None:
    """Epoch seconds of a JupyterHub / Jupyter Server log line (``[I 2026-12-02 05:42:05.380 ...``)."""
    import time as _time

    m = _LOG_TIME.match(line)
    if not m:
        return None
    return _time.mktime(_time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def first_after(lines, needle: str, after: float) -> float | None:
    """Time of the first log line containing ``needle`` stamped at or after ``after``."""
    for line in lines:
        if needle in line:
            t = log_time(line)
            if t is not None and t >= after - 0.002:
                return t
    return None


def spawn_phases(t_post, t_sbatch, t_job, t_listen, t_report, t_ready) -> dict[str, float]:
    """Seconds of each phase of one spawn, from wall-clock stamps taken the same way for both
    packages: POST, sbatch returned (shim), job command started (stamp shim in the job), server
    listening (its own log line), port report answered (hub access log), ready (API).
    ``ready after both`` runs from the later of listening and report to ready: 1.3.0 reports
    before its server starts, jupyterhub-hpc after its server listens."""
    out = {}
    if t_sbatch is not None:
        out["submit"] = t_sbatch - t_post
    if t_sbatch is not None and t_job is not None:
        out["job start"] = t_job - t_sbatch
    if t_job is not None and t_listen is not None:
        out["server listening"] = t_listen - t_job
    if t_job is not None and t_report is not None:
        out["port reported"] = t_report - t_job
    if t_listen is not None and t_report is not None and t_ready is not None:
        out["ready after both"] = t_ready - max(t_listen, t_report)
    return out


def fmt_phases(samples: list[dict]) -> str:
    """Median of each phase over the spawns that have it: ``submit 0.06, job start 1.02, ...``."""
    parts = []
    for phase in PHASES:
        values = [s[phase] for s in samples if phase in s]
        if values:
            parts.append(f"{phase} {median(values):.2f}")
    return ", ".join(parts) if parts else "not measured"


def nth_ready(ready_times, n: int) -> float | None:
    """Seconds until the n-th server was ready (1-based), or None when fewer became ready."""
    data = sorted(ready_times)
    return data[n - 1] if 0 < n <= len(data) else None


# ------------------------------------------------------------------ a failed spawn, as the hub logged it
_START_ERROR = re.compile(r"[Ee]rror starting \S+'s server(?: [^:]+)?: (.+)$")
_LOG_LINE = re.compile(r"^\[(\w) \d{4}-\d\d-\d\d [\d:.]+ \S+ [^\]]*\] ?(.*)$")


def spawn_failure_message(lines) -> str:
    """Why a spawn failed, from the hub's log lines: JupyterHub's ``Unhandled error starting
    USER's server[ NAME]: REASON``, and when a scheduler command failed before (1.3.0 logs
    ``Subprocess returned exitcode N`` and then the command's stderr) and said something else,
    `` (REASON; before it: STDERR)``. "" when the lines hold no such error."""
    cause = ""
    for i, line in enumerate(lines):
        m = _LOG_LINE.match(line)
        if m and "Subprocess returned exitcode" in m.group(2) and not cause:
            nxt = _LOG_LINE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if nxt and nxt.group(1) == "E":
                cause = nxt.group(2).strip()
        m = _START_ERROR.search(line)
        if m:
            reason = m.group(1).strip()
            return f"{reason} (before it: {cause})" if cause and cause != reason else reason
    return ""


# ------------------------------------------------------------------ job end -> route gone
def route_target(routes, user: str, server: str = "", base_url: str = "/"):
    """The target of a user's server in the proxy's ``GET /api/routes`` answer (JSON: {spec:
    {"target": ...}}): "" when the route has no target, None when there is no route for it.
    A spec is ``[host]BASE_URL/user/USER[/SERVER]/``: it matches only exactly, so ``/user/al``
    is not ``/user/alice`` and a user's default server is not one of their named servers."""
    want = base_url.rstrip("/") + f"/user/{user}" + (f"/{server}" if server else "")
    for spec, route in (routes or {}).items():
        path = spec if spec.startswith("/") else "/" + spec.partition("/")[2]  # host routing: drop the host
        if path.rstrip("/") == want:
            return (route.get("target") or "") if isinstance(route, dict) else ""
    return None


def fmt_ends(times, not_gone: int, bound: float) -> str:
    """``median 1.23 s, p90 2.34 s (min 0.9, max 2.5, n=10)``, and how many routes were still
    there after ``bound`` seconds (not in the figures: they are at least ``bound``)."""
    parts = []
    if times:
        parts.append(f"median {median(times):.2f} s, p90 {percentile(times, 90):.2f} s "
                     f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)})")
    if not_gone:
        parts.append(f"{not_gone} route(s) still there after {bound:g} s")
    return "; ".join(parts) if parts else "not measured"
