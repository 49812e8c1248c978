"""Grid Engine (Son of Grid Engine 8.1, also Univa/Altair GE and OGS): GridengineSpawner.

Behaviour of SGE 8.1.9 that matters here (measured on the real daemons, see
tests/fixtures/gridengine):
- ``qsub -terse`` prints only the job id; the script is read from stdin.
- The usual queue (``shell_start_mode posix_compliant``) ignores ``#!/bin/bash``:
  the submit command passes ``-S /bin/bash``.
- ``qstat -xml`` lists running jobs under ``queue_info`` (state ``r``, ``t`` while
  transferring, ``dr`` while being deleted) with ``queue_name`` ``all.q@host``, and
  pending ones under ``job_info`` (``qw``, ``hqw``, ``Eqw`` in error state).
- A finished job simply vanishes from ``qstat``; ``qstat -j ID`` then exits 1 with
  "Following jobs do not exist".
- Plain ``qstat`` lists only the caller's jobs, so the query names the user.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from traitlets import Unicode, default

from batchspawner.schedulers.native import history_ended, history_unknown
from batchspawner.spawner import BatchSpawnerBase, _req
from batchspawner.core.states import JobState, JobStatus, missing, gone_claim
from batchspawner.core.templating import load_template

SUSPENDED_LETTERS = set("sST")


def queue_host(queue_name: str) -> str:
    """Host of a queue instance: ``all.q@node1.example.org`` -> ``node1.example.org``."""
    queue_name = (queue_name or "").strip()
    if "@" not in queue_name:
        return ""
    return queue_name.split("@", 1)[1].strip()


def all_jobs(xml_text: str) -> dict:
    """{job number: job_list element} of every job in ``qstat -xml`` output (first task wins)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ValueError(f"qstat printed no valid XML ({e})") from None
    if root.tag != "job_info":
        raise ValueError(f"unexpected qstat XML root <{root.tag}>")
    jobs = {}
    for job in root.iter("job_list"):
        jobs.setdefault((job.findtext("JB_job_number") or "").strip(), job)
    return jobs


def find_job(xml_text: str, job_id: str):
    """The ``job_list`` element of ``job_id`` in ``qstat -xml`` output, or None.

    Raises ValueError when the text is not qstat XML (so the caller reports *unknown*).
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ValueError(f"qstat printed no valid XML ({e})") from None
    if root.tag != "job_info":
        raise ValueError(f"unexpected qstat XML root <{root.tag}>")
    for job in root.iter("job_list"):
        if (job.findtext("JB_job_number") or "").strip() == str(job_id):
            return job
    return None


def parse_qacct(returncode, stdout, stderr) -> JobStatus:
    """The verdict of ``qacct -j ID`` (the accounting file) on one job.

    qacct prints one record per ended run, each after a line of ``=``, as ``key value``
    lines (``jobnumber 8``, ``failed 0``, ``exit_status 3``...); qmaster writes a record
    when the job ends, flushed to the file after ``accounting_flush_time`` (about 15 s on a
    default install). Ended: a record with ``exit_status`` (the last record counts). Before
    the flush qacct exits 1 with "error: job id N not found": no end record, UNKNOWN (kept),
    as are errors and other output. Accounting has no record of a live job, so qacct never
    shows one alive."""
    if returncode != 0:
        return history_unknown("qacct", returncode, stdout, stderr)
    records = [r for r in re.split(r"^=+\s*$", stdout, flags=re.M) if r.strip()]
    if not records:
        return history_unknown("qacct", returncode, stdout, stderr)
    fields = dict(
        (m.group(1), m.group(2).strip()) for m in re.finditer(r"^(\w+)[ \t]+(.*)$", records[-1], re.M)
    )
    exit_status = fields.get("exit_status", "").split()
    if not exit_status or not exit_status[0].lstrip("-").isdigit():
        return history_unknown("qacct", returncode, stdout, stderr, why="qacct printed no exit_status")
    failed = fields.get("failed", "0").strip()
    detail = "" if failed.split()[:1] == ["0"] else f"failed {failed}"
    return history_ended("qacct", int(exit_status[0]), detail=detail)


class GridengineSpawner(BatchSpawnerBase):
    """Runs the single-user server as a Grid Engine job (``qsub``/``qstat -xml``/``qdel``)."""

    @default("token_via_file")
    def _token_via_file_default(self):
        # qstat -j prints any job's env_list to every user: keep the token out of it
        return True

    batch_script = Unicode(
        load_template("gridengine.sh"),
        help=BatchSpawnerBase.batch_script.help,
    ).tag(config=True)

    batch_submit_cmd = Unicode(
        "qsub -terse -S /bin/bash",
        help=BatchSpawnerBase.batch_submit_cmd.help
        + " -S /bin/bash because the usual posix_compliant queues ignore the #! line.",
    ).tag(config=True)
    batch_query_cmd = Unicode(
        "qstat -xml -u {username}",
        help=BatchSpawnerBase.batch_query_cmd.help
        + """ The output is qstat XML; a job missing from a valid answer has finished.
        -u {username} makes it work whether or not exec_prefix runs it as the user
        (plain qstat lists only the caller's jobs).""",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "qstat -xml -u *",
        help=BatchSpawnerBase.batch_status_cmd.help
        + " Lists every user's jobs in one call (run as the hub's user, see status_exec_prefix).",
    ).tag(config=True)
    batch_cancel_cmd = Unicode("qdel {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help).tag(
        config=True
    )

    batch_confirm_cmd = Unicode(
        "qacct -j {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + """ Grid Engine: ``qacct -j`` reads the accounting file, not qmaster's job list: a
        record with exit_status ends the server. qmaster flushes that file every
        accounting_flush_time (about 15 s by default), so a job that just left qstat is kept
        *unknown* until its record is written. With accounting off (reporting_params
        accounting=false) no record ever comes: set this to "" there, and a job qstat no
        longer lists ends its server on that answer alone.""",
    ).tag(config=True)

    state_gone_re = Unicode(
        r"Following jobs do not exist|job \"?\d+\"? does not exist",
        help=BatchSpawnerBase.state_gone_re.help,
    ).tag(config=True)
    state_unknown_re = Unicode(
        r"unable to contact qmaster|unable to send message to qmaster|commlib error|can't unpack gdi request",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)
    state_exechost_re = Unicode(
        "",
        help="""Optional regex applied to the host taken from queue_name (``all.q@HOST`` -> HOST).

        With state_exechost_exp set, the host becomes ``re.sub(state_exechost_re,
        state_exechost_exp, HOST)``, e.g. to map node names the hub cannot resolve.""",
    ).tag(config=True)

    @default("log_path")
    def _log_path_default(self):
        return "{logdir}/jupyter-{date}-{server}-job{job_id}.log"

    job_id_placeholder = "$JOB_ID"  # a qsub -o pseudo variable

    req_pe = _req(
        """Parallel environment used to request req_nprocs slots (``#$ -pe PE N``).

        Empty (default): no -pe line, the job gets one slot whatever req_nprocs says,
        because PE names are site-specific (``smp``, ``shm``, ``mpi``...); rendering then
        logs a warning when more than one core is requested. Admin only.""",
        admin_only=True,
    )
    req_memory_resource = _req(
        "Resource complex that req_memory sets (``#$ -l NAME=VALUE``): h_vmem, mem_free, m_mem_free...",
        "h_vmem",
        admin_only=True,  # a user could name h_rt here and override the admin's walltime
    )
    req_gpu_resource = _req(
        """Consumable resource that req_ngpus sets (``#$ -l NAME=N``), e.g. ``gpu``.

        Empty (default): GPUs cannot be requested, since the name is site-specific;
        rendering then logs a warning when GPUs are requested. Admin only.""",
        admin_only=True,
    )
    req_project = _req("Project (``#$ -P``) the job is charged to (admin only).", admin_only=True)
    req_job_name = _req("Job name shown in qstat", "spawner-jupyterhub")

    def template_vars(self, user_values=None):
        subvars = super().template_vars(user_values)
        # cores and GPUs need site-specific names; without them the template writes no
        # line, which must not go unnoticed by the admin
        nprocs = str(subvars.get("nprocs") or "").strip()
        if nprocs and nprocs != "1" and not subvars.get("pe"):
            self.log.warning(
                "%s: %s cores requested but GridengineSpawner.req_pe is empty: no -pe line is written "
                "and the job gets one slot. Set GridengineSpawner.req_pe to the site's parallel environment.",
                self._log_name,
                nprocs,
            )
        ngpus = str(subvars.get("ngpus") or "").strip()
        if ngpus and ngpus != "0" and not subvars.get("gpu_resource"):
            self.log.warning(
                "%s: %s GPUs requested but GridengineSpawner.req_gpu_resource is empty: no GPU line is "
                "written. Set GridengineSpawner.req_gpu_resource to the site's GPU resource (e.g. gpu).",
                self._log_name,
                ngpus,
            )
        return subvars

    def parse_job_id(self, output):
        lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
        # -terse prints "ID" (array jobs: "ID.1-10:1"); without it "Your job ID (...) has been submitted"
        for line in lines:
            match = re.match(r"^(\d+)(?:\.\S+)?$", line) or re.match(r"^Your job(?:-array)? (\d+)", line)
            if match:
                return match.group(1)
        return super().parse_job_id(output)

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        if not stdout.lstrip().startswith("<"):
            # not XML: a failed query, or an admin-configured non-XML query command
            return super().parse_query_output(returncode, stdout, stderr)
        if returncode != 0:
            return super().parse_query_output(returncode, stdout, stderr)
        try:
            job = find_job(stdout, self.job_id)
        except ValueError as e:
            return JobStatus(JobState.UNKNOWN, reason=str(e))
        if job is None:
            return gone_claim("qstat does not list the job")
        return self.job_status_from_xml(job)

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``qacct -j ID`` about a job ``qstat`` no longer lists (see :func:`parse_qacct`)."""
        return parse_qacct(returncode, stdout, stderr)

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``qstat -xml -u '*'``.

        Ended jobs leave qstat at once; a job it does not list is marked missing. The
        spawner then runs its own per-job query, batch_query_cmd (``qstat -xml -u
        {username}``, through exec_prefix, so as the user by default), and counts the
        job finished only when that valid answer does not list it either."""
        if returncode != 0 or not stdout.lstrip().startswith("<"):
            raise RuntimeError(f"qstat exited with {returncode}: {(stderr or stdout).strip()[:200]}")
        jobs = all_jobs(stdout)  # ValueError on broken XML: the round fails, jobs stay unknown
        answer = {}
        for job_id in job_ids:
            job = jobs.get(job_id)
            answer[job_id] = self.job_status_from_xml(job) if job is not None else missing()
        return answer

    def job_status_from_xml(self, job) -> JobStatus:
        code = (job.findtext("state") or "").strip()
        host = self.map_host(queue_host(job.findtext("queue_name") or ""))
        letters = set(code)
        if "E" in letters:
            return JobStatus(
                JobState.FINISHED,
                native=code,
                reason=f"the job is in error state and will not start; `qstat -j {self.job_id}` shows why",
                extra={"still_queued": True},  # ended for the hub, but stop() must still qdel it
            )
        reason = "being deleted" if "d" in letters else ""
        if letters & SUSPENDED_LETTERS:
            return JobStatus(JobState.PENDING, native=code, host=host, reason="suspended")
        if letters & {"r", "t"} and host:
            return JobStatus(JobState.RUNNING, native=code, host=host, reason=reason)
        if letters & {"q", "w", "h", "t", "d"}:
            reason = reason or ("on hold" if "h" in letters else "")
            return JobStatus(JobState.PENDING, native=code, reason=reason)
        return JobStatus(JobState.UNKNOWN, native=code, reason=f"unrecognised Grid Engine state {code!r}")

    def map_host(self, host):
        if host and self.state_exechost_re and self.state_exechost_exp:
            return re.sub(self.state_exechost_re, self.state_exechost_exp, host).strip()
        return host
