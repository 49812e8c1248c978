"""FAKE scheduler output, for tests only: job records printed in the real tools' formats.

Formats follow the documentation pages named in tests/fixtures/<scheduler>/*
headers (Torque qstat -x XML, PBS qstat -f / -F json, Moab mdiag -j --xml,
LSF bjobs -o/-json/-noheader, HTCondor -af:t).
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


def torque_xml(job):
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
        fields.append(("exec_host", f"{job['host']}/0-{max(job['ncpus'], 1) - 1}"))
        fields.append(("start_time", str(int(job["start_time"]))))
    if job["end_time"] and job["state"] != "running":
        fields.append(("exit_status", str(_exit(job))))
        fields.append(("comp_time", str(int(job["end_time"]))))
    body = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields)
    return f"<Data><Job>{body}</Job></Data>\n"


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


def pbs_json(job):
    data = {
        "timestamp": int(time.time()),
        "pbs_version": "22.05.11",
        "pbs_server": SERVER,
        "Jobs": {pbs_id(job): _pbs_attrs(job)},
    }
    return json.dumps(data, indent=4) + "\n"


def pbs_text(job):
    lines = [f"Job Id: {pbs_id(job)}"]
    lines += [f"    {k} = {v}" for k, v in _pbs_attrs(job).items()]
    return "\n".join(lines) + "\n\n"


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


def bjobs(job, fields, as_json):
    values = lsf_fields(job)
    if as_json:
        rec = {f: values.get(f, "") for f in fields}
        return json.dumps({"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [rec]}, indent=2) + "\n"
    return " ".join((values.get(f) or "-") for f in fields) + "\n"


def bjobs_not_found(num, as_json):
    msg = f"Job <{num}> is not found"
    if as_json:
        return json.dumps({"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{"ERROR": msg}]}, indent=2) + "\n", ""
    return "", msg + "\n"


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
