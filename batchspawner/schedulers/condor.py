"""HTCondor: CondorSpawner (``condor_submit`` / ``condor_q``, then ``condor_history`` / ``condor_rm``).

``condor_submit`` reads the submit description from stdin and prints
``1 job(s) submitted to cluster 42.``. ``condor_q 42 -af:t JobStatus
RemoteHost ExitCode HoldReason`` prints one tab-separated line per job
(``undefined`` for unset attributes); JobStatus is 1 Idle, 2 Running,
3 Removed, 4 Completed, 5 Held, 6 Transferring Output, 7 Suspended.
A job that left the queue makes ``condor_q`` print nothing (exit 0): then
``condor_history`` is asked, so the job is found finished, not unknown forever.
``RemoteHost`` is ``slot1@host.domain`` (or ``slot1_2@host`` for dynamic slots).

Held jobs (JobStatus 5). HTCondor holds a job it cannot run (the executable
cannot start, a policy expression fired, ...) or one held with ``condor_hold``;
``HoldReason`` says why, and the job stays in the queue until ``condor_release``
or ``condor_rm``. What that means here depends on when it happens:
- While a spawn waits (the job never ran, or ran but its server is not up yet),
  a held job with a HoldReason fails the spawn at once with the reason in the
  message (``start_blocker``) rather than waiting out start_timeout, since the
  spawn page offers no way to release it. The hub then stops the server: ``condor_rm``.
- Once the server runs, poll() keeps the server while the job is held. A hold
  is not an end: the job is still in the queue, and the admin or user who held
  it may mean to release it; ending the server would make the hub ``condor_rm``
  the job and undo their decision (Slurm and Grid Engine suspensions are kept
  alive the same way). HTCondor kills a running job's processes when it is held,
  though, so the user cannot reach the server meanwhile; after ``condor_release``
  the job starts over from the beginning, its wrapper finds the hub not waiting
  for a port and exits, and the next poll ends the server. Stopping the server
  from the hub ends a held job at once (``condor_rm``).
"""

from __future__ import annotations

import base64
import re

from traitlets import Unicode, default

from batchspawner.core.hosts import condor_host
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, mapped_host, status_from_native, to_int
from batchspawner.commands.runner import CommandError, split_command
from batchspawner.compat import UserEnvMixin
from batchspawner.spawner import BatchSpawnerBase, SpawnFailed, _req
from batchspawner.core.states import JobState, JobStatus, missing
from batchspawner.core.templating import load_template

CONDOR_STATES = {
    "1": JobState.PENDING,
    "5": JobState.PENDING,
    "7": JobState.PENDING,
    "2": JobState.RUNNING,
    "6": JobState.RUNNING,
    "3": JobState.FINISHED,
    "4": JobState.FINISHED,
}
STATE_NAMES = {"1": "Idle", "2": "Running", "3": "Removed", "4": "Completed", "5": "Held", "6": "Transferring", "7": "Suspended"}


def condor_quote_args(argv):
    """Quote argv in HTCondor's "new" ``arguments`` syntax (condor_submit manual).

    The list is enclosed in double quotes; each argument in single quotes; a
    literal ``'`` is written ``''`` and a literal ``"`` is written ``""``.
    """
    quoted = []
    for arg in argv:
        if "\n" in arg or "\r" in arg:
            raise ValueError("a newline cannot be passed in HTCondor arguments")
        quoted.append("'" + arg.replace("'", "''").replace('"', '""') + "'")
    return '"' + " ".join(quoted) + '"'


def parse_af_line(text):
    """(JobStatus, RemoteHost, ExitCode, HoldReason) from ``-af:t`` output; None when empty."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    fields = lines[0].split("\t")
    if len(fields) < 2 or not fields[0].strip().isdigit():
        raise ValueError("not condor -af:t output")
    fields = [f.strip() for f in fields] + [""] * 4
    return tuple("" if f == "undefined" else f for f in fields[:4])


class CondorSpawner(UserEnvMixin, BatchSpawnerBase):
    """Runs the single-user server as an HTCondor vanilla-universe job."""

    batch_script = Unicode(load_template("condor.sub"), help=BatchSpawnerBase.batch_script.help).tag(config=True)
    batch_submit_cmd = Unicode("condor_submit", help=BatchSpawnerBase.batch_submit_cmd.help).tag(config=True)
    batch_query_cmd = Unicode(
        "condor_q {job_id} -af:t JobStatus RemoteHost ExitCode HoldReason",
        help=BatchSpawnerBase.batch_query_cmd.help + " Must print the same four attributes as batch_history_cmd.",
    ).tag(config=True)
    batch_history_cmd = Unicode(
        "condor_history {job_id} -limit 1 -af:t JobStatus LastRemoteHost ExitCode HoldReason",
        help="""Command asked when condor_q no longer lists the job (it left the queue).

        Same four attributes as batch_query_cmd. A job in neither counts as finished,
        because the schedd answered both queries.""",
    ).tag(config=True)
    batch_cancel_cmd = Unicode("condor_rm {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help).tag(config=True)
    batch_status_cmd = Unicode(
        "condor_q {job_id_args} -af:t ClusterId JobStatus RemoteHost ExitCode HoldReason",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ HTCondor: every job the hub owns in one ``condor_q ID ID ... -af:t``, ClusterId
        first, then the four attributes of batch_query_cmd. A job that left the queue is not
        listed; its own query then asks condor_history.""",
    ).tag(config=True)

    state_pending_re = Unicode(r"^[157]\b", help=BatchSpawnerBase.state_pending_re.help).tag(config=True)
    state_running_re = Unicode(r"^[26]\b", help=BatchSpawnerBase.state_running_re.help).tag(config=True)
    state_finished_re = Unicode(r"^[34]\b", help=BatchSpawnerBase.state_finished_re.help).tag(config=True)
    state_exechost_re = Unicode(r"^\d+(?:\t|,\s*)[^@\t]*@([^\t\s,]+)", help=BatchSpawnerBase.state_exechost_re.help).tag(
        config=True
    )
    state_unknown_re = Unicode(
        r"Failed to fetch ads|Can't find address for schedd|Failed to connect",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)

    req_job_name = _req("Batch name shown by condor_q (batch_name)", "jupyterhub-singleuser")

    native_query_parser = True  # shared_status_fits: configured regexes need per-job queries

    @default("log_path")
    def _log_path_default(self):
        return "{logdir}/jupyter-{date}-{server}-job{job_id}.log"

    job_id_placeholder = "$(Cluster)"

    def template_vars(self, user_values=None):
        subvars = super().template_vars(user_values)
        # The whole job body (prologue, server, epilogue) goes through base64, so no
        # character in it can break the one-line `arguments` of the submit description.
        body = "\n".join(
            part for part in (subvars.get("prologue"), subvars["cmd"], subvars.get("epilogue")) if part
        )
        encoded = base64.b64encode(body.encode()).decode()
        subvars["condor_arguments"] = condor_quote_args(
            ["-c", f'eval "$(printf %s {encoded} | base64 -d)"']
        )
        runtime = subvars.get("runtime") or ""
        subvars["runtime_seconds"] = _seconds(runtime) if runtime else ""
        return subvars

    def parse_job_id(self, output):
        match = re.search(r"submitted to cluster (\d+)", output)
        if not match:
            raise SpawnFailed(f"Could not find a job id in the condor_submit output: {output.strip()[:200]!r}")
        return match.group(1)

    def start_blocker(self, status):
        # see the module docstring: a hold with a reason fails a spawn, never drops a running server
        if status.native == STATE_NAMES["5"] and status.reason:
            return f"HTCondor put it on hold ({status.reason})"
        return ""

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def configured(verdict):
            if verdict.state is JobState.UNKNOWN and returncode == 0 and not stdout.strip():
                # condor_q prints nothing once the job left the queue: ask condor_history
                verdict.extra["left_queue"] = True
            return verdict

        def read(out):
            fields = parse_af_line(out)
            if fields is None:
                return JobStatus(JobState.UNKNOWN, reason="not in the queue", extra={"left_queue": True})
            return self.status_from_fields(fields, out)

        return parse_one_job(self, returncode, stdout, stderr, what="condor_q output", read=read,
                             configured=configured)

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every job's state from one ``condor_q ID ID ... -af:t ClusterId ...``; unlisted jobs are missing."""
        check_batch_answer(self, returncode, stdout, stderr, "condor_q")
        listed = {}
        for line in stdout.splitlines():
            if not line.strip():
                continue
            cluster, sep, rest = line.partition("\t")
            if not sep or not cluster.strip().isdigit():
                raise RuntimeError(f"unexpected condor_q line: {line[:120]!r}")
            fields = parse_af_line(rest)  # ValueError on garbage: the round fails
            if fields is not None:
                listed[cluster.strip()] = (fields, rest)
        answer = {}
        for job_id in job_ids:
            found = listed.get(job_id.split(".")[0])
            answer[job_id] = self.status_from_fields(*found) if found else missing()
        return answer

    def status_from_fields(self, fields, raw) -> JobStatus:
        code, remote, exit_code, hold = fields
        host = mapped_host(self, condor_host(remote), raw)
        status = status_from_native(code, CONDOR_STATES, host=host, exit_code=to_int(exit_code), reason=hold)
        status.native = STATE_NAMES.get(code, code)
        return status

    async def _query(self, template) -> JobStatus:
        argv = split_command(template, **self.command_vars(self.job_id))
        try:
            result = await self.query_runner.run(argv, env=self.runner_policy.env_for(self.query_runner), check=False)
        except CommandError as e:  # timeout or could not start
            return JobStatus(JobState.UNKNOWN, reason=e.reason or str(e))
        return self.read_query_result(result.returncode, result.stdout, result.stderr)

    async def query_job_status(self, job_id=None) -> JobStatus:
        """condor_q; when the job left the queue, condor_history (one recorded status)."""
        if not self.job_id or (job_id is not None and job_id != self.job_id):
            return await super().query_job_status(job_id)
        job_id = self.job_id
        status = await self._query(self.batch_query_cmd)
        if status.extra.get("left_queue"):
            status = await self._query(self.batch_history_cmd)
            if status.extra.get("left_queue"):
                status = JobStatus(JobState.FINISHED, native="gone", reason="in neither condor_q nor condor_history")
        return self._record_status(status, job_id)

def _seconds(runtime):
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d{1,2})", runtime.strip())
    if not match:
        return runtime if runtime.isdigit() else ""
    days, hours, minutes, seconds = (int(x or 0) for x in match.groups())
    return str(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
