"""Moab: MoabSpawner (``msub`` / ``mdiag -j --xml`` / ``mjobctl -c``).

``mdiag -j JOBID --xml`` prints ``<Data><job JobID="123" State="Running"
EState="Running" ...><req AllocNodeList="node1:4,node2" .../></job></Data>``.
States (Moab job states): Idle, Starting, Running, Completed, Removed,
Vacated, Hold, UserHold, SystemHold, BatchHold, Deferred, Suspended,
NotQueued, Staging, Blocked, Canceling. A job Moab no longer knows is absent
from the XML (``<Data></Data>``) or reported as ``invalid job specified``.
Older Moab sites cancel with ``canceljob {job_id}``; set batch_cancel_cmd.

Moab runs over a Torque (or PBS) resource manager, and ``msub`` reads the same
``#PBS`` directives: MoabSpawner inherits TorqueSpawner's script template
(``torque.sh``), so both render the same script; set batch_script to change it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from traitlets import Unicode

from batchspawner.core.hosts import moab_first_host
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, history_ended, history_unknown, mapped_host, status_from_native, to_int
from batchspawner.spawner import BatchSpawnerBase, SpawnFailed
from batchspawner.core.states import JobState, JobStatus, missing, gone_claim
from batchspawner.schedulers.torque import TorqueSpawner

MOAB_STATES = {
    "Idle": JobState.PENDING,
    "Starting": JobState.PENDING,
    "Hold": JobState.PENDING,
    "UserHold": JobState.PENDING,
    "SystemHold": JobState.PENDING,
    "BatchHold": JobState.PENDING,
    "Deferred": JobState.PENDING,
    "NotQueued": JobState.PENDING,
    "Staging": JobState.PENDING,
    "Blocked": JobState.PENDING,
    "Suspended": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Canceling": JobState.RUNNING,
    "Completed": JobState.FINISHED,
    "Removed": JobState.FINISHED,
    "Vacated": JobState.FINISHED,
}


def mdiag_jobs(text):
    """[(job attributes, req attributes, xml)] for every ``<job>`` in ``mdiag -j --xml``."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}") from None
    if root.tag != "Data":
        raise ValueError(f"unexpected root element <{root.tag}>")
    found = []
    for job in root.iter("job"):
        req = job.find("req")
        xml = "<Data>" + ET.tostring(job, encoding="unicode") + "</Data>"
        found.append((dict(job.attrib), dict(req.attrib) if req is not None else {}, xml))
    return found


def parse_mdiag_xml(text, job_id=""):
    """(job attributes, req attributes) from ``mdiag -j --xml``; ({}, {}) when no job is listed."""
    jobs = mdiag_jobs(text)
    chosen = next((j for j in jobs if j[0].get("JobID") == job_id), jobs[0] if jobs else None)
    if chosen is None:
        return {}, {}
    return chosen[0], chosen[1]


class MoabSpawner(TorqueSpawner):
    """Runs the single-user server as a Moab job (Torque script directives, Moab commands)."""

    batch_submit_cmd = Unicode("msub", help=BatchSpawnerBase.batch_submit_cmd.help).tag(config=True)
    batch_query_cmd = Unicode(
        "mdiag -j {job_id} --xml", help=BatchSpawnerBase.batch_query_cmd.help + " Parsed as Moab XML."
    ).tag(config=True)
    batch_cancel_cmd = Unicode(
        "mjobctl -c {job_id}",
        help=BatchSpawnerBase.batch_cancel_cmd.help + " Older Moab: 'canceljob {job_id}'.",
    ).tag(config=True)
    batch_confirm_cmd = Unicode(
        "checkjob --xml {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + """ Moab: ``checkjob --xml`` reads Moab's own job record (completed jobs until
        JOBCPURGETIME), a second look that does not go through mdiag's listing: a
        Completed/Removed/Vacated job ends the server with its CompletionCode, an active one
        is kept, "invalid job specified" keeps the job *unknown* (it is not an end record).
        Both commands ask the same Moab server; where Moab runs on Torque, "tracejob -n 2
        {job_id}" on the Torque server is a more independent choice.""",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "mdiag -j --xml",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ Moab: ``mdiag -j --xml`` without an id lists every job Moab holds (completed
        ones until JOBCPURGETIME) in one answer; jobs the hub does not own are ignored.""",
    ).tag(config=True)

    state_pending_re = Unicode(r'State="Idle"', help=BatchSpawnerBase.state_pending_re.help).tag(config=True)
    state_running_re = Unicode(r'State="Running"', help=BatchSpawnerBase.state_running_re.help).tag(config=True)
    state_finished_re = Unicode(
        r'State="(?:Completed|Removed|Vacated)"', help=BatchSpawnerBase.state_finished_re.help
    ).tag(config=True)
    state_exechost_re = Unicode(
        r'AllocNodeList="([^\r\n\t\f :",]*)', help=BatchSpawnerBase.state_exechost_re.help
    ).tag(config=True)
    state_gone_re = Unicode(r"invalid job specified|cannot locate job", help=BatchSpawnerBase.state_gone_re.help).tag(
        config=True
    )
    state_unknown_re = Unicode(
        r"cannot connect to Moab|communication error|server not responding",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)

    native_states = MOAB_STATES

    def parse_job_id(self, output):
        # msub prints the id alone on a line, after a blank line: "\n123\n" (or "Moab.123")
        words = output.split()
        if len(words) == 1 and words[0].replace(".", "").replace("-", "").isalnum():
            return words[0]
        raise SpawnFailed(f"Could not find a job id in the msub output: {output.strip()[:200]!r}")

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def read(out):
            job, req = parse_mdiag_xml(out, self.job_id)
            return self.status_from_attrs(job, req, out) if job else None

        return parse_one_job(self, returncode, stdout, stderr, what="mdiag XML", read=read,
                             missing=gone_claim("mdiag lists no such job"))

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``checkjob --xml ID``: the job's Moab state, FINISHED only for a terminal one.

        ``<Data><job JobID=.. State="Completed" CompletionCode="0" .../></Data>``, the same job
        element mdiag prints. No job, an error or other output: UNKNOWN (kept)."""
        if returncode != 0 or not stdout.lstrip().startswith("<"):
            return history_unknown("checkjob", returncode, stdout, stderr)
        try:
            job, req = parse_mdiag_xml(stdout, self.job_id)
        except ValueError:
            return history_unknown("checkjob", returncode, stdout, stderr, why="checkjob printed no valid XML")
        if not job:
            return history_unknown("checkjob", returncode, stdout, stderr, why="checkjob lists no such job")
        status = self.status_from_attrs(job, req, stdout)
        if status.state is JobState.FINISHED:
            return history_ended("checkjob", status.exit_code, detail=f"state {status.native}")
        if status.state is JobState.UNKNOWN:
            return history_unknown("checkjob", returncode, stdout, stderr, why=f"checkjob: {status.reason}")
        return status

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``mdiag -j --xml``; jobs it does not list are missing."""
        check_batch_answer(self, returncode, stdout, stderr, "mdiag")
        listed = {job.get("JobID", ""): (job, req, xml) for job, req, xml in mdiag_jobs(stdout)}
        return {j: self.status_from_attrs(*listed[j]) if j in listed else missing() for j in job_ids}

    def status_from_attrs(self, job, req, raw) -> JobStatus:
        host = mapped_host(self, moab_first_host(req.get("AllocNodeList", "")), raw)
        return status_from_native(
            job.get("State", ""),
            self.native_states,
            host=host,
            exit_code=to_int(job.get("CompletionCode")),
            reason=job.get("BlockReason", ""),
        )
