"""PBS Professional / OpenPBS: PBSSpawner (``qsub`` / ``qstat -fx -F json`` / ``qdel``).

``qstat -f -x JOBID`` lists one job, finished ones included (``-x``, kept for
the server's ``job_history_duration``), as ``name = value`` lines under
``Job Id: 123.server``; long values continue on lines that start with a tab.
With ``-F json`` (PBS Pro >= 13, OpenPBS) the same attributes come as
``{"Jobs": {"123.server": {"job_state": "R", ...}}}``. Both are parsed.

States (qstat(1B)): B array begun, E exiting, F finished, H held, M moved,
Q queued, R running, S suspended, T transiting, U user-busy, W waiting,
X subjob finished. ``exec_host`` looks like ``node1/0*4+node2/0``.
A job the server forgot: exit 153, ``qstat: Unknown Job Id 123.server``.
"""

from __future__ import annotations

import json

from traitlets import Unicode

from batchspawner.core.hosts import pbs_first_host
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, mapped_host, short_id, status_from_native, to_int
from batchspawner.spawner import BatchSpawnerBase, _req
from batchspawner.core.states import JobState, JobStatus, missing, silent_claim
from batchspawner.core.templating import load_template
from batchspawner.schedulers.torque import TorqueSpawner

PBS_STATES = {
    "Q": JobState.PENDING,
    "H": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "S": JobState.PENDING,
    "U": JobState.PENDING,
    "M": JobState.PENDING,
    "B": JobState.RUNNING,
    "R": JobState.RUNNING,
    "E": JobState.RUNNING,
    "F": JobState.FINISHED,
    "X": JobState.FINISHED,
}


def qstat_full_jobs(text):
    """{job id: {attribute: value}} of every job in ``qstat -f`` text or ``-F json`` output.

    Raises ValueError when the output is neither; empty output gives {}.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from None
        jobs = data.get("Jobs") if isinstance(data, dict) else None
        if jobs is None:
            if isinstance(data, dict) and "pbs_server" in data:
                return {}
            raise ValueError("no 'Jobs' in the JSON")
        if not isinstance(jobs, dict):
            raise ValueError("'Jobs' is not an object")
        return {jid: attrs for jid, attrs in jobs.items() if isinstance(attrs, dict)}
    found = {}
    current = None
    last_key = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            current = found.setdefault(line.split(":", 1)[1].strip(), {})
            last_key = None
        elif current is not None and line.startswith("\t") and last_key:
            current[last_key] += line.strip()
        elif current is not None and " = " in line:
            key, value = line.strip().split(" = ", 1)
            current[key] = value
            last_key = key
        elif line.strip():
            raise ValueError(f"unexpected line {line.strip()[:60]!r}")
    return found


def parse_qstat_full(text, job_id=""):
    """{attribute: value} of one job from ``qstat -f`` text or ``-F json`` output.

    Raises ValueError when the output is neither. No job in the output -> {}.
    """
    found = qstat_full_jobs(text)
    if not found and text.strip() and not text.strip().startswith("{"):
        raise ValueError("no 'Job Id:' line")
    for jid, attrs in found.items():
        if job_id and short_id(jid) == short_id(job_id):
            return attrs
    return next(iter(found.values()), {})


class PBSSpawner(TorqueSpawner):
    """Runs the single-user server as a PBS Professional / OpenPBS job."""

    batch_script = Unicode(load_template("pbs.sh"), help=BatchSpawnerBase.batch_script.help).tag(config=True)
    batch_query_cmd = Unicode(
        "qstat -fx -F json {job_id}",
        help=BatchSpawnerBase.batch_query_cmd.help
        + " Both `qstat -fx` text and `-F json` output are parsed; drop `-F json` for PBS older than 13.",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "qstat -fx -F json {job_id_args}",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ PBS: every job the hub owns in one ``qstat -fx -F json ID ID ...`` (drop
        ``-F json`` for PBS older than 13); ids the server no longer knows are reported on
        stderr ("Unknown Job Id") and confirmed per job.""",
    ).tag(config=True)

    state_pending_re = Unicode(r"job_state = [QHWTSUM]", help=BatchSpawnerBase.state_pending_re.help).tag(config=True)
    state_running_re = Unicode(r"job_state = [BRE]", help=BatchSpawnerBase.state_running_re.help).tag(config=True)
    state_finished_re = Unicode(r"job_state = [FX]", help=BatchSpawnerBase.state_finished_re.help).tag(config=True)
    state_exechost_re = Unicode(r"exec_host = ([\w_.-]+)/", help=BatchSpawnerBase.state_exechost_re.help).tag(
        config=True
    )
    state_gone_re = Unicode(
        r"Unknown Job Id|Job has finished", help=BatchSpawnerBase.state_gone_re.help
    ).tag(config=True)

    req_project = _req("PBS project (#PBS -P; admin only); req_account sets #PBS -A", admin_only=True)

    native_states = PBS_STATES

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def read(out):
            job = parse_qstat_full(out, self.job_id)
            return self.status_from_fields(job, out) if job else None

        return parse_one_job(self, returncode, stdout, stderr, what="qstat -f output", read=read,
                             missing=silent_claim("qstat exited 0 but listed no such job"))

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``qstat -fx ID ID ...``; jobs it does not list are missing."""
        check_batch_answer(self, returncode, stdout, stderr, "qstat")
        listed = {short_id(jid): attrs for jid, attrs in qstat_full_jobs(stdout).items()}
        answer = {}
        for job_id in job_ids:
            attrs = listed.get(short_id(job_id))
            if attrs is None:
                answer[job_id] = missing()
            else:  # state_exechost_exp sees the job as plain qstat -f prints it
                raw = "\n".join(f"    {key} = {value}" for key, value in attrs.items())
                answer[job_id] = self.status_from_fields(attrs, raw)
        return answer

    def status_from_fields(self, job, raw) -> JobStatus:
        host = mapped_host(self, pbs_first_host(str(job.get("exec_host", ""))), raw)
        return status_from_native(
            str(job.get("job_state", "")),
            self.native_states,
            host=host,
            exit_code=to_int(job.get("Exit_status")),
            reason=str(job.get("comment", "")),
        )
