#!/usr/bin/python3 -S
"""A FAKE Slurm (sbatch, squeue, scancel) answering from a table file (benchmark only).

Invoked through symlinks named sbatch/squeue/scancel. Nothing is scheduled:
- ``sbatch`` reads the script from stdin, gives the next id, records
  ``ID RUNNING localhost`` in the table and, in a detached child, reports the
  port of ONE shared HTTP server (run by the benchmark) to the hub as the job's
  server would (``POST $JUPYTERHUB_API_URL/batchspawner``).
- ``squeue`` prints the table rows asked for with ``-j`` (or all), formatted
  with ``-o`` (%i %T %B %N %r %j %u %t), like squeue 22.05 does.
- ``scancel`` marks ids CANCELLED.
Every call appends one line to the count log. Environment: FAKE_SCHED_DIR
(table, counter, log) is baked in by the benchmark at install time.
"""

import fcntl
import os
import re
import sys

DIR = os.path.dirname(os.path.realpath(__file__)) + "/state"
TABLE = DIR + "/jobs.table"
LOG = DIR + "/../count.log"
SHARED_PORT_FILE = DIR + "/shared_port"
FINISHED = ("CANCELLED", "COMPLETED", "FAILED", "TIMEOUT")


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


def read_table():
    rows = {}
    try:
        with open(TABLE) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    rows[parts[0]] = parts[1:3]
    except FileNotFoundError:
        pass
    return rows


def locked(fn):
    with open(DIR + "/lock", "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        return fn()


def sbatch(argv):
    sys.stdin.read()

    def add():
        try:
            with open(DIR + "/counter") as f:
                n = int(f.read().strip() or 0) + 1
        except FileNotFoundError:
            n = 1
        job_id = str(1_000_000 + n)
        with open(DIR + "/counter", "w") as f:
            f.write(str(n))
        with open(TABLE, "a") as f:
            f.write(f"{job_id} RUNNING localhost\n")
        return job_id

    job_id = locked(add)
    log(f"sbatch {job_id}")
    sys.stdout.write(job_id + "\n")
    sys.stdout.flush()
    if os.fork() == 0:  # detached reporter: the hub must not wait for it
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        report_port()
        os._exit(0)
    return 0


def report_port():
    import json  # here, not at the top: squeue must start fast
    import time
    import urllib.request

    with open(SHARED_PORT_FILE) as f:
        port = int(f.read().strip())
    url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner"
    tok = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    time.sleep(0.3)
    for _ in range(240):
        req = urllib.request.Request(
            url, data=json.dumps({"port": port}).encode(), method="POST",
            headers={"Authorization": f"token {tok}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
                return
        except Exception:  # noqa: BLE001
            time.sleep(0.5)


def squeue(argv):
    log(("squeue " + " ".join(argv))[:200])
    ids, fmt, states, i = None, None, None, 0
    fields = None  # -O/--Format: "Name:|,Name:|" (each value followed by its suffix)
    while i < len(argv):
        a = argv[i]
        val = argv[i + 1] if i + 1 < len(argv) else ""
        if a in ("-j", "--jobs"):
            ids, i = val.split(","), i + 1
        elif a.startswith("--jobs="):
            ids = a.split("=", 1)[1].split(",")
        elif a in ("-o", "--format"):
            fmt, i = val, i + 1
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a in ("-O", "--Format"):
            fields, i = val.split(","), i + 1
        elif a.startswith("--Format="):
            fields = a.split("=", 1)[1].split(",")
        elif a in ("-t", "--states"):
            states, i = val.upper().split(","), i + 1
        elif a in ("-u", "--user", "-n", "--name", "-M", "--clusters", "-p", "--partition"):
            i += 1
        i += 1
    table = read_table()
    wanted = ids if ids is not None else list(table)
    if ids is not None and len(ids) == 1 and ids[0] not in table:
        sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
        return 1
    show_all = states is not None and "ALL" in states
    out = []
    for job_id in wanted:
        if job_id not in table:
            continue
        state, host = table[job_id]
        if not show_all and (state in FINISHED if states is None else state not in states):
            continue
        if fields is not None:
            out.append(format_fields(fields, job_id, state, host))
        else:
            out.append(format_row(fmt or "%i %T %B", job_id, state, host))
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


def format_row(fmt, job_id, state, host):
    values = {"i": job_id, "A": job_id, "T": state, "t": state[:2] if state != "RUNNING" else "R",
              "B": host, "N": host, "r": "None", "j": "spawner-jupyterhub", "u": "alice"}
    return re.sub(r"%\.?\d*([a-zA-Z])", lambda m: values.get(m.group(1), "n/a"), fmt)


# squeue -O field names (lower case) -> value; a field squeue knows but the table does not is N/A
def format_fields(fields, job_id, state, host):
    started = state not in ("PENDING",)
    values = {"jobid": job_id, "state": state, "partition": "debug", "numcpus": "1", "minmemory": "1G",
              "tres-per-node": "N/A", "timelimit": "UNLIMITED",
              "starttime": "2026-01-01T00:00:00" if started else "N/A", "submittime": "2026-01-01T00:00:00",
              "nodelist": host if started else "", "reason": "None", "exit_code": "0"}
    out = []
    for spec in fields:
        name, _, rest = spec.partition(":")
        suffix = rest.lstrip(".0123456789")
        out.append(values.get(name.lower(), "N/A") + suffix)
    return "".join(out)


def scancel(argv):
    ids = [a for a in argv if a.split(";")[0].isdigit()]
    log("scancel " + " ".join(ids))

    def cancel():
        table = read_table()
        for job_id in ids:
            if job_id in table:
                table[job_id][0] = "CANCELLED"
        with open(TABLE, "w") as f:
            f.writelines(f"{k} {v[0]} {v[1]}\n" for k, v in table.items())

    locked(cancel)
    return 0


if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    sys.exit({"sbatch": sbatch, "squeue": squeue, "scancel": scancel}[tool](sys.argv[1:]))
