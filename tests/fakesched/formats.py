"""FAKE scheduler output, for tests only: job records printed in the real tools' formats.

Formats follow the documentation pages named in tests/fixtures/<scheduler>/*
headers (Torque qstat -x XML, PBS qstat -f / -F json, Moab mdiag -j --xml,
LSF bjobs -o/-json/-noheader, HTCondor -af:t) and the history commands the spawner
asks as its second source (Torque/PBS ``tracejob``, Moab ``checkjob --xml``, LSF
``bhist -l``): the fakes print those documented layouts, they are not real schedulers.
"""

from __future__ import annotations

import json
import time
from xml.sax.saxutils import escape, quoteattr

SERVER = "fakeserver"

TORQUE = {"exiting": "E", "queued": "Q", "running": "R", "done": "C", "exited": "C", "cancelled": "C"}
PBS = {"exiting": "E", "queued": "Q", "running": "R", "done": "F", "exited": "F", "cancelled": "F"}
MOAB = {"exiting": "Running", "queued": "Idle", "running": "Running", "done": "Completed", "exited": "Completed", "cancelled": "Removed"}
LSF = {"exiting": "RUN", "queued": "PEND", "running": "RUN", "done": "DONE", "exited": "EXIT", "cancelled": "EXIT"}
CONDOR = {"exiting": "3", "queued": "1", "running": "2", "done": "4", "exited": "4", "cancelled": "3"}


def phase(job):
    """The state to print: a cancelled job whose process has not ended yet is still exiting."""
    if job["state"] == "cancelled" and job["end_time"] is None and job["start_time"]:
        return "exiting"
    return job["state"]


def pbs_id(job):
    return f"{job['id']}.{SERVER}"


def _exit(job):
    if job["state"] == "cancelled":
        return 271 if job["exit"] is None else job["exit"]
    return job["exit"]


def torque_xml(jobs):
    """``qstat -x`` of one or more jobs: one line, one ``<Data>`` holding a ``<Job>`` each."""
    return "<Data>" + "".join(_torque_job(job) for job in jobs) + "</Data>\n"


def _torque_job(job):
    fields = [
        ("Job_Id", pbs_id(job)),
        ("Job_Name", job["name"]),
        ("Job_Owner", f"{job['owner']}@{job['host']}"),
        ("job_state", TORQUE[phase(job)]),
        ("queue", "batch"),
        ("server", SERVER),
        ("ctime", str(int(job["submit_time"]))),
    ]
    if job["start_time"]:
        cores = "0" if job["ncpus"] <= 1 else f"0-{job['ncpus'] - 1}"
        fields.append(("exec_host", f"{job['host']}/{cores}"))
        fields.append(("start_time", str(int(job["start_time"]))))
    if job["end_time"] and job["state"] != "running":
        fields.append(("exit_status", str(_exit(job))))
        fields.append(("comp_time", str(int(job["end_time"]))))
    body = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields)
    return f"<Job>{body}</Job>"


def _pbs_attrs(job):
    attrs = {
        "Job_Name": job["name"],
        "Job_Owner": f"{job['owner']}@{job['host']}",
        "job_state": PBS[phase(job)],
        "queue": "workq",
        "server": SERVER,
        "ctime": time.ctime(job["submit_time"]),
    }
    if job["start_time"]:
        attrs["exec_host"] = f"{job['host']}/0*{job['ncpus']}"
        attrs["exec_vnode"] = f"({job['host']}:ncpus={job['ncpus']})"
        attrs["stime"] = time.ctime(job["start_time"])
    if job["state"] == "queued":
        attrs["comment"] = "Not Running: Job is waiting in the fake queue"
    if job["end_time"] and job["state"] != "running":
        attrs["Exit_status"] = _exit(job)
    return attrs


def pbs_json(jobs):
    """``qstat -f -F json`` of one or more jobs: one document, a ``Jobs`` entry each."""
    data = {
        "timestamp": int(time.time()),
        "pbs_version": "22.05.11",
        "pbs_server": SERVER,
        "Jobs": {pbs_id(job): _pbs_attrs(job) for job in jobs},
    }
    return json.dumps(data, indent=4) + "\n"


def pbs_text(jobs):
    """``qstat -f`` of one or more jobs: a ``Job Id:`` block each, blank line after."""
    blocks = []
    for job in jobs:
        lines = [f"Job Id: {pbs_id(job)}"]
        lines += [f"    {k} = {v}" for k, v in _pbs_attrs(job).items()]
        blocks.append("\n".join(lines) + "\n\n")
    return "".join(blocks)


def moab_xml(jobs):
    parts = []
    for job in jobs:
        attrs = {
            "JobID": str(job["id"]),
            "JobName": job["name"],
            "User": job["owner"],
            "State": MOAB[phase(job)],
            "EState": MOAB[phase(job)],
            "SubmissionTime": str(int(job["submit_time"])),
        }
        if job["end_time"] and job["state"] != "running":
            attrs["CompletionCode"] = str(_exit(job))
        req = {"Index": "0"}
        if job["start_time"]:
            req["AllocNodeList"] = f"{job['host']}:{job['ncpus']}" if job["ncpus"] > 1 else job["host"]
        a = " ".join(f"{k}={quoteattr(v)}" for k, v in sorted(attrs.items()))
        r = " ".join(f"{k}={quoteattr(v)}" for k, v in sorted(req.items()))
        parts.append(f"<job {a}><req {r}></req></job>")
    return "<Data>" + "".join(parts) + "</Data>\n"


def _stamp(t, pbs=False):
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(t)) + (".000" if pbs else "")


def tracejob(job, pbs=False):
    """FAKE ``tracejob -n DAYS ID``: the job's server/accounting log lines (Torque, PBS layout)."""
    lines = [f"Job: {pbs_id(job)}", ""]
    ev = lambda t, kind, msg: lines.append(f"{_stamp(t, pbs)}  {kind}    {msg}")  # noqa: E731
    ev(job["submit_time"], "S", "enqueuing into batch, state 1 hop 1")
    ev(job["submit_time"], "S", f"Job Queued at request of {job['owner']}@{SERVER}, owner = {job['owner']}@{SERVER}, "
       f"job name = {job['name']}, queue = batch")
    if job["start_time"]:
        ev(job["start_time"], "S", f"Job Run at request of root@{SERVER}")
    if job["state"] == "cancelled":
        ev(job.get("cancel_time") or job["end_time"], "S", f"Job deleted at request of {job['owner']}@{SERVER}")
    if job["end_time"] and job["start_time"] and phase(job) != "exiting":
        ev(job["end_time"], "S", f"Exit_status={_exit(job)} resources_used.walltime=00:00:01")
        ev(job["end_time"], "A", f"user={job['owner']} jobname={job['name']} queue=batch exec_host={job['host']}/0 "
           f"Exit_status={_exit(job)}")
    return "\n".join(lines) + "\n"


def bhist_long(job):
    """FAKE ``bhist -l ID``: the job's events from lsb.events (LSF layout, 80-column wrapping)."""
    day = lambda t: time.strftime("%a %b %e %H:%M:%S", time.localtime(t))  # noqa: E731
    events = [f"Job <{job['id']}>, Job Name <{job['name']}>, User <{job['owner']}>, Project <default>, Command <#!/bin/bash>"]
    events.append(f"{day(job['submit_time'])}: Submitted from host <{SERVER}>, to Queue <normal>, CWD <{job['cwd']}>;")
    if job["start_time"]:
        events.append(f"{day(job['start_time'])}: Dispatched 1 Task(s) on Host(s) <{job['host']}>, Allocated "
                      f"{job['ncpus']} Slot(s) on Host(s) <{job['host']}>;")
        events.append(f"{day(job['start_time'])}: Starting (Pid {job.get('pid') or 0});")
    if job["state"] == "cancelled":
        events.append(f"{day(job.get('cancel_time') or time.time())}: Signal <KILL> requested by user or "
                      f"administrator <{job['owner']}>;")
    if job["end_time"] and phase(job) != "exiting":
        end = day(job["end_time"])
        if job["state"] == "done":
            events.append(f"{end}: Done successfully. The CPU time used is 0.1 seconds;")
        elif job["state"] == "exited":
            events.append(f"{end}: Exited with exit code {_exit(job)}. The CPU time used is 0.1 seconds;")
        else:
            events.append(f"{end}: Exited; job has been forced to exit with exit code 130. The CPU time used is 0.1 seconds;")
        events.append(f"{end}: Completed <{'done' if job['state'] == 'done' else 'exit'}>;")
    out = []
    for event in events:  # bhist wraps at 80 columns, continuation lines indented by 21 spaces
        out.append(event[:80])
        rest = event[80:]
        while rest:
            out.append(" " * 21 + rest[:59])
            rest = rest[59:]
    return "\n" + "\n".join(out) + "\n\nSummary of time in seconds spent in various states by  " + day(time.time()) + "\n"


def lsf_fields(job):
    host = ""
    if job["start_time"]:
        host = f"{job['ncpus']}*{job['host']}" if job["ncpus"] > 1 else job["host"]
    exit_code = ""
    if job["state"] in ("exited", "cancelled"):
        exit_code = str(_exit(job) if job["state"] == "exited" else 130)
    return {
        "JOBID": str(job["id"]),
        "STAT": LSF[phase(job)],
        "EXEC_HOST": host,
        "EXIT_CODE": exit_code,
        "PEND_REASON": "New job is waiting for scheduling;" if job["state"] == "queued" else "",
        "JOB_NAME": job["name"],
        "USER": job["owner"],
    }


def bjobs(entries, fields, as_json):
    """(stdout, stderr) of ``bjobs -o FIELDS [-json] ID ...``; each entry a job or a not-found id."""
    records, lines, errors = [], [], []
    for entry in entries:
        if isinstance(entry, dict):
            values = lsf_fields(entry)
            records.append({f: values.get(f, "") for f in fields})
            lines.append(" ".join((values.get(f) or "-") for f in fields) + "\n")
        else:
            msg = f"Job <{entry}> is not found"
            records.append({"ERROR": msg})
            errors.append(msg + "\n")
    if as_json:
        return json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2) + "\n", ""
    return "".join(lines), "".join(errors)


def condor_attr(job, name):
    slot = f"slot1@{job['host']}"
    values = {
        "JobStatus": CONDOR[phase(job)],
        "ClusterId": str(job["id"]),
        "ProcId": "0",
        "Owner": job["owner"],
        "JobBatchName": job["name"],
        "RemoteHost": slot if job["state"] == "running" else None,
        "LastRemoteHost": slot if job["start_time"] else None,
        "ExitCode": str(job["exit"]) if job["state"] in ("done", "exited") else None,
        "HoldReason": None,
    }
    value = values.get(name)
    return "undefined" if value is None else value
