"""IBM Spectrum LSF: LsfSpawner (``bsub`` / ``bjobs -o ... -json`` / ``bkill``).

``bsub < script`` prints ``Job <1234> is submitted to default queue <normal>.``
``bjobs -o 'jobid stat exec_host exit_code pend_reason' -json 1234`` prints
``{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"1234","STAT":"RUN",
"EXEC_HOST":"2*host1:host2",...}]}``; a job LSF forgot gives a record
``{"ERROR":"Job <1234> is not found"}`` (exit 255). Without ``-json`` (LSF
before 10.1.0.6) use ``-noheader``: ``1234 RUN 2*host1:host2 - -``.
States (bjobs): PEND, PSUSP, WAIT pending; RUN, USUSP, SSUSP, PROV started;
DONE, EXIT finished; UNKWN, ZOMBI the daemons lost touch (unknown).
"""

from __future__ import annotations

import json
import re

from traitlets import Unicode, default

from batchspawner.core.hosts import lsf_first_host
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, history_ended, history_unknown, mapped_host, status_from_native, to_int
from batchspawner.spawner import BatchSpawnerBase, SpawnFailed, _req
from batchspawner.core.states import JobState, JobStatus, missing, gone_claim
from batchspawner.core.templating import load_template

LSF_STATES = {
    "PEND": JobState.PENDING,
    "PSUSP": JobState.PENDING,
    "WAIT": JobState.PENDING,
    "PROV": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "USUSP": JobState.RUNNING,
    "SSUSP": JobState.RUNNING,
    "DONE": JobState.FINISHED,
    "EXIT": JobState.FINISHED,
    "UNKWN": JobState.UNKNOWN,
    "ZOMBI": JobState.UNKNOWN,
}
FIELDS = ("JOBID", "STAT", "EXEC_HOST", "EXIT_CODE", "PEND_REASON")
NOT_FOUND = re.compile(r"Job <[^>]*> is not found")


def parse_bjobs(text, job_id=""):
    """{FIELD: value} of the job from ``bjobs -o ... -json`` or ``-noheader`` output.

    Returns {"ERROR": message} for an error record; raises ValueError on garbage.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            records = json.loads(text)["RECORDS"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"not bjobs JSON: {e}") from None
        records = [r for r in records if isinstance(r, dict)]
        for rec in records:
            if not job_id or rec.get("JOBID") == job_id or "ERROR" in rec:
                return {k: str(v) for k, v in rec.items()}
        raise ValueError("no record for the job")
    for line in text.splitlines():
        if NOT_FOUND.search(line):
            return {"ERROR": line.strip()}
        words = line.split(None, len(FIELDS) - 1)
        if len(words) >= 2 and words[0] == (job_id or words[0]):
            rec = dict(zip(FIELDS, words))
            return {k: ("" if v == "-" else v) for k, v in rec.items()}
    raise ValueError("no line for the job")


def bjobs_records(text):
    """Every job record ({FIELD: value}) in ``bjobs -o ... -json`` output.

    Error records ``Job <ID> is not found`` are skipped (the job is then not
    listed); any other error record raises ValueError, as does garbage.
    """
    try:
        data = json.loads(text.strip())
        records = data["RECORDS"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"not bjobs JSON: {e}") from None
    if not isinstance(records, list):
        raise ValueError("RECORDS is not a list")
    found = []
    for rec in records:
        if not isinstance(rec, dict):
            raise ValueError("a record is not an object")
        if "ERROR" in rec:
            if not NOT_FOUND.fullmatch(str(rec["ERROR"]).strip()):
                raise ValueError(f"bjobs error: {str(rec['ERROR'])[:120]}")
        else:
            found.append({k: str(v) for k, v in rec.items()})
    return found


def lsf_walltime(runtime: str) -> str:
    """``HH:MM:SS`` (or ``D-HH:MM:SS``) -> LSF ``-W`` ``HH:MM``, rounding seconds up; else unchanged."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", runtime.strip())
    if not match:
        return runtime
    days, hours, minutes, seconds = (int(x or 0) for x in match.groups())
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    return f"{total // 60}:{total % 60:02d}"


def parse_bhist_long(returncode, stdout, stderr) -> JobStatus:
    """The verdict of ``bhist -l ID`` (LSF's event log, lsb.events) on one job.

    bhist -l prints one paragraph of dated events per job, wrapped at 80 columns with
    continuation lines indented: "Submitted from host", "Dispatched to", "Starting (Pid",
    and at the end "Done successfully." (exit 0), "Exited with exit code N.", "Exited; job
    has been forced to exit with exit code N." or "Completed <done|exit>". Ended: one of
    those. Alive: dispatched/started (running) or only submitted (pending). "No matching
    job found", errors or other output: UNKNOWN (kept)."""
    text = re.sub(r"\n {10,}", "", stdout.replace("\r", ""))  # undo the 80-column wrapping
    if returncode != 0 or not re.search(r"^Job <\d+(?:\[\d+\])?>", text, re.M):
        return history_unknown("bhist", returncode, stdout, stderr)
    code = re.search(r"[Ee]xit(?:ed)? with exit code (\d+)|forced to exit with exit code (\d+)", text)
    if code:
        return history_ended("bhist", int(code.group(1) or code.group(2)))
    if re.search(r"Done successfully", text):
        return history_ended("bhist", 0)
    if re.search(r"Completed <(?:done|exit)>|Exited by (?:LSF )?signal|\bExited\b", text):
        return history_ended("bhist", detail="exited")
    if re.search(r"Dispatched to|Starting \(Pid|Running with execution home", text):
        return JobStatus(JobState.RUNNING, native="RUN", reason="bhist shows it running")
    if re.search(r"Submitted from host", text):
        return JobStatus(JobState.PENDING, native="PEND", reason="bhist shows it pending")
    return history_unknown("bhist", returncode, stdout, stderr, why="bhist shows neither a start nor an end")


class LsfSpawner(BatchSpawnerBase):
    """Runs the single-user server as an LSF job (``bsub``, ``bjobs``, ``bkill``)."""

    batch_script = Unicode(load_template("lsf.sh"), help=BatchSpawnerBase.batch_script.help).tag(config=True)
    batch_submit_cmd = Unicode("bsub", help=BatchSpawnerBase.batch_submit_cmd.help).tag(config=True)
    batch_query_cmd = Unicode(
        "bjobs -o 'jobid stat exec_host exit_code pend_reason' -json {job_id}",
        help=BatchSpawnerBase.batch_query_cmd.help
        + " JSON or -noheader text with fields jobid stat exec_host exit_code pend_reason, in that order.",
    ).tag(config=True)
    batch_cancel_cmd = Unicode("bkill {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help).tag(config=True)
    batch_confirm_cmd = Unicode(
        "bhist -l {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + """ LSF: ``bhist -l`` reads the event log (lsb.events), not mbatchd's job list
        that bjobs prints: "Done successfully" or "Exited with exit code N" ends the server,
        a job it shows pending or running is kept, "No matching job found" (e.g. the event
        log switched: add ``-n 0`` to search every file) keeps the job *unknown*.""",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "bjobs -u all -o 'jobid stat exec_host exit_code pend_reason' -json {job_id_args}",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ LSF: every job the hub owns in one ``bjobs -u all ... -json ID ID ...`` (LSF
        10.1.0.6 or later); a job past CLEAN_PERIOD comes back as a "not found" record and
        is confirmed per job.""",
    ).tag(config=True)

    state_pending_re = Unicode(r"^(?:PEND|PSUSP|WAIT)", help=BatchSpawnerBase.state_pending_re.help).tag(config=True)
    state_running_re = Unicode(r"^RUN", help=BatchSpawnerBase.state_running_re.help).tag(config=True)
    state_finished_re = Unicode(r"^(?:DONE|EXIT)", help=BatchSpawnerBase.state_finished_re.help).tag(config=True)
    state_exechost_re = Unicode(r"^\S+\s+(?:\d+\*)?([^\s:]+)", help=BatchSpawnerBase.state_exechost_re.help).tag(
        config=True
    )
    state_gone_re = Unicode(r"Job <[^>]*> is not found", help=BatchSpawnerBase.state_gone_re.help).tag(config=True)
    state_unknown_re = Unicode(
        r"LSF is down|Cannot connect to LSF|batch system daemon not responding",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)

    req_job_name = _req("Job name (#BSUB -J)", "jupyterhub-singleuser")

    native_query_parser = True  # shared_status_fits: configured regexes need per-job queries

    @default("log_path")
    def _log_path_default(self):
        return "{logdir}/jupyter-{date}-{server}-job{job_id}.log"

    job_id_placeholder = "%J"

    def template_vars(self, user_values=None):
        subvars = super().template_vars(user_values)
        subvars["runtime_lsf"] = lsf_walltime(subvars.get("runtime") or "")
        return subvars

    def parse_job_id(self, output):
        match = re.search(r"Job <(\d+)> is submitted", output)
        if not match:
            raise SpawnFailed(f"Could not find a job id in the bsub output: {output.strip()[:200]!r}")
        return match.group(1)

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def first(rc, out, err):
            if rc != 0 and out.strip().startswith("{") and NOT_FOUND.search(out):
                return gone_claim("bjobs: job not found")
            return None

        def read(out):
            rec = parse_bjobs(out, self.job_id)
            if "ERROR" in rec:
                if NOT_FOUND.search(rec["ERROR"]):
                    return gone_claim(rec["ERROR"])
                return JobStatus(JobState.UNKNOWN, reason=rec["ERROR"][:200])
            return self.status_from_record(rec, out)

        return parse_one_job(self, returncode, stdout, stderr, what="bjobs output", read=read, first=first)

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``bhist -l`` about a job ``bjobs`` no longer knows (see :func:`parse_bhist_long`)."""
        return parse_bhist_long(returncode, stdout, stderr)

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``bjobs ... -json ID ID ...``; unlisted jobs are missing.

        bjobs exits 255 when any id is not found; its JSON still lists the others."""
        if returncode != 0 and stdout.lstrip().startswith("{"):
            returncode = 0  # judged by the records: only "not found" errors are accepted
        check_batch_answer(self, returncode, stdout, stderr, "bjobs")
        listed = {rec.get("JOBID", ""): rec for rec in bjobs_records(stdout)}
        answer = {}
        for job_id in job_ids:
            rec = listed.get(job_id)
            if rec is None:
                answer[job_id] = missing()  # "not found" included: the per-job query confirms it
            else:
                # state_exechost_exp sees "STAT EXEC_HOST", as batchspawner 1.3's query printed it
                raw = f"{rec.get('STAT', '')} {rec.get('EXEC_HOST', '')}"
                answer[job_id] = self.status_from_record(rec, raw)
        return answer

    def status_from_record(self, rec, raw) -> JobStatus:
        host = mapped_host(self, lsf_first_host(rec.get("EXEC_HOST", "")), raw)
        exit_code = to_int(rec.get("EXIT_CODE"))
        if rec.get("STAT") == "DONE" and exit_code is None:
            exit_code = 0
        return status_from_native(
            rec.get("STAT", ""), LSF_STATES, host=host, exit_code=exit_code, reason=rec.get("PEND_REASON", "")
        )
