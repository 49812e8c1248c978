"""Torque: TorqueSpawner (``qsub`` / ``qstat -x`` / ``qdel``).

Torque's ``qstat -x JOBID`` prints the job as XML::

    <Data><Job><Job_Id>123.server</Job_Id>...<job_state>R</job_state>
    <exec_host>node1/0-3+node2/0</exec_host>...</Job></Data>

States (qstat man page, Torque 6): C completed, E exiting, H held, Q queued,
R running, T moving, W waiting, S suspended. Completed jobs stay listed for
``keep_completed`` seconds, with ``exit_status``; later ``qstat`` exits 153
with ``qstat: Unknown Job Id Error 123.server``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from traitlets import TraitError, Unicode, default, validate

from batchspawner.core.hosts import torque_first_host
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, history_ended, history_unknown, mapped_host, short_id, status_from_native, to_int
from batchspawner.spawner import BatchSpawnerBase, _req
from batchspawner.core.states import JobState, JobStatus, missing, silent_claim
from batchspawner.core.templating import load_template

TORQUE_STATES = {
    "Q": JobState.PENDING,
    "H": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "S": JobState.PENDING,
    "R": JobState.RUNNING,
    "E": JobState.RUNNING,
    "C": JobState.FINISHED,
}


def qstat_xml_jobs(text):
    """[(fields, xml)] for every ``<Job>`` in ``qstat -x`` output.

    ``fields`` is {tag: text} of the job's direct children; ``xml`` is the job
    alone (for ``state_exechost_exp``). Several ``<Data>`` documents one after
    the other (one per queried id) are accepted. Raises ValueError when the
    output is not Torque XML; empty output gives [].
    """
    text = re.sub(r"<\?xml[^>]*\?>", "", text).strip()
    if not text:
        return []
    try:
        root = ET.fromstring(f"<qstat>{text}</qstat>")
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}") from None
    jobs = []
    for data in root:
        if data.tag != "Data":
            raise ValueError(f"unexpected root element <{data.tag}>")
        for job in data.iter("Job"):
            fields = {child.tag: (child.text or "").strip() for child in job}
            jobs.append((fields, "<Data>" + ET.tostring(job, encoding="unicode") + "</Data>"))
    return jobs


def parse_qstat_xml(text, job_id=""):
    """{field: text} of the job in ``qstat -x`` output (the one matching job_id, else the first).

    Raises ValueError when the output is not Torque XML. An empty ``<Data/>``
    gives ``{}``.
    """
    jobs = [fields for fields, _ in qstat_xml_jobs(text)]
    if not text.strip():
        raise ValueError("no output")
    for job in jobs:
        if job_id and short_id(job.get("Job_Id", "")) == short_id(job_id):
            return job
    return jobs[0] if jobs else {}


TRACEJOB_LINE = re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d(?:\.\d+)?\s+([SAMLCJ])\s+(.*)$", re.M)


def parse_tracejob(returncode, stdout, stderr, tool="tracejob") -> JobStatus:
    """The verdict of ``tracejob -n DAYS ID`` (Torque and PBS Professional) on one job.

    tracejob prints the job's lines from the server, MOM and accounting logs, one per event:
    ``MM/DD/YYYY HH:MM:SS  S    Exit_status=0 resources_used...`` (S server, A accounting,
    M MOM, L scheduler). Ended: an ``Exit_status=N`` line (the job's exit status; 271 after a
    qdel of a running job) or "Job deleted at request of" for a job that never ran. Alive:
    "Job Run" without an exit (running, or deleted and still exiting) or "Job Queued"
    (pending). Anything else, including no
    log line at all (logs rotated or unreadable to this user), cannot tell: UNKNOWN."""
    events = TRACEJOB_LINE.findall(stdout)
    if not events:
        return history_unknown(tool, returncode, stdout, stderr)
    text = "\n".join(message for _, message in events)
    exits = re.findall(r"\bExit_status=(-?\d+)", text)
    if exits:
        return history_ended(tool, int(exits[-1]))
    ran = re.search(r"\bJob Run\b", text)
    if re.search(r"\bJob deleted at request of\b", text):
        if not ran:
            return history_ended(tool, detail="deleted before it ran")
        return JobStatus(JobState.RUNNING, native="E", reason=f"{tool} shows it deleted but not yet exited")
    if ran:
        return JobStatus(JobState.RUNNING, native="R", reason=f"{tool} shows it running")
    if re.search(r"\bJob Queued\b|enqueuing into", text):
        return JobStatus(JobState.PENDING, native="Q", reason=f"{tool} shows it queued")
    return history_unknown(tool, returncode, stdout, stderr, why=f"{tool} shows neither a start nor an end")


class TorqueSpawner(BatchSpawnerBase):
    """Runs the single-user server as a Torque job (``qsub``, ``qstat -x``, ``qdel``)."""

    batch_script = Unicode(load_template("torque.sh"), help=BatchSpawnerBase.batch_script.help).tag(config=True)
    batch_submit_cmd = Unicode("qsub", help=BatchSpawnerBase.batch_submit_cmd.help).tag(config=True)
    batch_query_cmd = Unicode(
        "qstat -x {job_id}",
        help=BatchSpawnerBase.batch_query_cmd.help + " Parsed as Torque XML (state, exec_host, exit_status).",
    ).tag(config=True)
    batch_cancel_cmd = Unicode("qdel {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help).tag(config=True)
    batch_confirm_cmd = Unicode(
        "tracejob -n 2 {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + """ Torque/PBS: ``tracejob`` reads the server's and the accounting logs (not the
        job table ``qstat`` asks), two days back: an ``Exit_status=`` line ends the server,
        a job it shows queued or running is kept, no record keeps the job *unknown*. It must
        run where those logs are readable (the server host, or via exec_prefix/ssh); set ""
        to let a per-job "Unknown Job Id" end a server on its own.""",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "qstat -x {job_id_args}",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ Torque: every job the hub owns in one ``qstat -x ID ID ...``; ids the server
        no longer knows are reported on stderr ("Unknown Job Id") and confirmed per job.""",
    ).tag(config=True)

    # batchspawner 1.3 regexes, kept so configurations that set state_exechost_exp work;
    # the XML parser decides the state.
    state_pending_re = Unicode(r"<job_state>[QHWTS]</job_state>", help=BatchSpawnerBase.state_pending_re.help).tag(
        config=True
    )
    state_running_re = Unicode(r"<job_state>[RE]</job_state>", help=BatchSpawnerBase.state_running_re.help).tag(
        config=True
    )
    state_finished_re = Unicode(r"<job_state>C</job_state>", help=BatchSpawnerBase.state_finished_re.help).tag(
        config=True
    )
    state_exechost_re = Unicode(r"<exec_host>((?:[\w_-]+\.?)+)/\d+", help=BatchSpawnerBase.state_exechost_re.help).tag(
        config=True
    )
    state_gone_re = Unicode(r"Unknown Job Id", help=BatchSpawnerBase.state_gone_re.help).tag(config=True)
    state_unknown_re = Unicode(
        r"cannot connect to server|Communication failure|Premature end of message",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)

    req_job_name = _req("Job name (#PBS -N)", "jupyterhub-singleuser")

    @default("log_path")
    def _log_path_default(self):
        # #PBS -o takes a plain path (no job-id placeholder): one log per start, named by its time
        return "{logdir}/jupyter-{date}-{server}.log"

    @validate("log_path")
    def _check_log_path(self, proposal):
        if "{job_id}" in proposal["value"]:
            raise TraitError(
                f"{type(self).__name__}.log_path cannot contain {{job_id}}: #PBS -o takes a plain path "
                "(the job id is not known when the script is written). Use e.g. {homedir}/jupyterhub.log."
            )
        return proposal["value"]

    native_states = TORQUE_STATES
    native_query_parser = True  # shared_status_fits: configured regexes need per-job queries

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def read(out):
            job = parse_qstat_xml(out, self.job_id)
            return self.status_from_fields(job, out) if job else None

        return parse_one_job(self, returncode, stdout, stderr, what="qstat XML", read=read,
                             missing=silent_claim("qstat exited 0 but listed no such job"))

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``tracejob`` about a job ``qstat`` no longer knows (see :func:`parse_tracejob`)."""
        return parse_tracejob(returncode, stdout, stderr)

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``qstat -x ID ID ...``; jobs it does not list are missing."""
        check_batch_answer(self, returncode, stdout, stderr, "qstat")
        listed = {short_id(fields.get("Job_Id", "")): (fields, xml) for fields, xml in qstat_xml_jobs(stdout)}
        answer = {}
        for job_id in job_ids:
            found = listed.get(short_id(job_id))
            answer[job_id] = self.status_from_fields(*found) if found else missing()
        return answer

    def status_from_fields(self, job, raw) -> JobStatus:
        host = mapped_host(self, torque_first_host(job.get("exec_host", "")), raw)
        return status_from_native(
            job.get("job_state", ""),
            self.native_states,
            host=host,
            exit_code=to_int(job.get("exit_status")),
            reason=job.get("comment", ""),
        )
