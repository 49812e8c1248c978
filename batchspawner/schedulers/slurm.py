"""Slurm: SlurmSpawner and MultiSlurmSpawner.

Behaviour of Slurm 22.05 that matters here (measured on the real daemons):
- ``sbatch --parsable`` prints ``ID`` (or ``ID;CLUSTER`` with --clusters).
- For ``MinJobAge`` (300 s) after a job ends, ``squeue -h -j ID`` exits 0 and
  prints nothing; with ``-t all`` it prints COMPLETED/CANCELLED/FAILED...
- Later ``squeue -j ID`` exits 1 with "Invalid job id specified".
- With slurmctld down: "Unable to contact slurm controller" (state unknown).
- With ``--clusters``/``-M``, squeue (and sinfo) print a ``CLUSTER: name`` line first, only
  without ``-h`` (26.05 measured: the queries here use ``-h`` and get none; the parsers skip one).
"""

from __future__ import annotations

import re

from traitlets import Dict, Unicode, default, validate

from batchspawner.compat import UserEnvMixin
from batchspawner.core.parsing import configured
from batchspawner.spawner import BatchSpawnerBase, _req
from batchspawner.core.states import JobState, JobStatus, missing
from batchspawner.core.templating import load_template

PENDING_STATES = (
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
    "SUSPENDED",
    "STOPPED",
    "RESIZING",
)
RUNNING_STATES = ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT")
FINISHED_STATES = (
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "SPECIAL_EXIT",
    "REVOKED",
)


# what Slurm's most common pending reasons mean, for the spawn page
# A job that ran and is PENDING again: Slurm gives a requeued job a begin time (reason BeginTime)
# whatever requeued it (node failure, preemption, `scontrol requeue`); `requeuehold` holds it.
REQUEUE_CAUSES = {
    "BeginTime": "a node failure, a preemption or an administrator put it back",
    "JobHeldAdmin": "an administrator put it back and holds it",
    "JobHeldUser": "it was put back and is held",
}

REASONS = {
    "Resources": "waiting for free nodes or cores",
    "Priority": "other jobs are ahead in the queue",
    "BeginTime": "the job may not start before its requested begin time",
    "JobHeldUser": "held by the user (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "Dependency": "waiting for another job to finish",
    "PartitionDown": "the partition is down",
    "PartitionNodeLimit": "more nodes requested than the partition allows",
    "PartitionTimeLimit": "the wall time asked for is longer than the partition allows",
    "QOSMaxJobsPerUserLimit": "you already have the most jobs your QoS allows",
    "AssocGrpCPULimit": "your account's CPU limit is reached",
    "ReqNodeNotAvail": "a requested node is not available",
    "Reservation": "waiting for its reservation to start",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "the request cannot be satisfied; check the requested resources",
}


# squeue -O fields of the session card (batchspawner/hub/sessions.py), '|'-separated
DETAILS_COLUMNS = ["JobID", "State", "Partition", "NumCPUs", "MinMemory", "tres-per-node", "TimeLimit",
                   "StartTime", "SubmitTime", "NodeList", "Reason", "exit_code"]
DETAILS_FIELDS = ",".join(c + ":|" for c in DETAILS_COLUMNS)


# "#SBATCH --get-user-env=L" (batchspawner 1.3's template): the argument Slurm 25.05 removed
_GET_USER_ENV_ARG = re.compile(r"^#SBATCH[ \t]+(?:.*\s)?--get-user-env=", re.M)
_GET_USER_ENV_WARNED = False


def _alternatives(words):
    return r"^(?:%s)\b" % "|".join(words)


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``node[01-04,07]`` -> ``node01``.

    Every bracket group is reduced to its first value, so ``rack[1-2]-n[01-04]``
    (racks 1-2, nodes 01-04 in each) gives ``rack1-n01``.
    """
    nodelist = nodelist.strip()
    if not nodelist or nodelist in ("n/a", "(null)"):
        return ""
    # the first element before a comma that is not inside brackets
    depth = 0
    for i, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            nodelist = nodelist[:i]
            break
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0].strip(), nodelist)


class SlurmSpawner(UserEnvMixin, BatchSpawnerBase):
    """Runs the single-user server as a Slurm batch job (``sbatch``/``squeue``/``scancel``)."""

    # the partition facts of batchspawner.polling.cluster (sinfo, sacctmgr) describe this scheduler's
    # cluster: a profile form checks this class's fields against them (wrapspawner asks this
    # attribute, it names no scheduler)
    cluster_facts = "slurm"

    batch_script = Unicode(
        load_template("slurm.sh"),
        help=BatchSpawnerBase.batch_script.help,
    ).tag(config=True)

    @validate("batch_script")
    def _removed_get_user_env_argument(self, proposal):
        """A script kept from batchspawner 1.3 (``#SBATCH --get-user-env=L``) fails every spawn on
        Slurm >= 25.05, which removed the option's argument: said once per hub, at start."""
        global _GET_USER_ENV_WARNED
        if not _GET_USER_ENV_WARNED and _GET_USER_ENV_ARG.search(proposal["value"]):
            _GET_USER_ENV_WARNED = True
            self.log.warning(
                "SlurmSpawner.batch_script has '#SBATCH --get-user-env=...': Slurm 25.05 and later refuse"
                " the argument (sbatch: option '--get-user-env' doesn't allow an argument), so every spawn"
                " fails there. Write plain '#SBATCH --get-user-env': the login-shell environment on every"
                " Slurm version (the package's own template does)."
            )
        return proposal["value"]

    batch_submit_cmd = Unicode(
        "sbatch --parsable", help=BatchSpawnerBase.batch_submit_cmd.help
    ).tag(config=True)
    batch_query_cmd = Unicode(
        "squeue -h -t all -j {job_id} -o '%T %B %r' {cluster_opt}",
        help=BatchSpawnerBase.batch_query_cmd.help + " {cluster_opt} is --clusters=NAME when req_cluster is set.",
    ).tag(config=True)
    batch_cancel_cmd = Unicode(
        "scancel {cluster_opt} {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help
    ).tag(config=True)

    batch_confirm_cmd = Unicode(
        "scontrol {cluster_opt} -o show job {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + " Slurm: scontrol asks the controller's job table directly (squeue's -j filter is"
        " not involved) and still shows a job for MinJobAge after it ended; with"
        " AccountingStorageType=none there is no sacct record to ask.",
    ).tag(config=True)

    batch_status_cmd = Unicode(
        "squeue -h -t all -j {job_ids} -o '%i %T %B %r' {cluster_opt}",
        help=BatchSpawnerBase.batch_status_cmd.help,
    ).tag(config=True)

    batch_details_cmd = Unicode(
        "squeue -h -t all -j {job_ids} -O '" + DETAILS_FIELDS + "' {cluster_opt}",
        help=BatchSpawnerBase.batch_details_cmd.help,
    ).tag(config=True)
    batch_queue_cmd = Unicode(
        "squeue -h -t PENDING -o '%i|%P' --sort=-p,i {cluster_opt}",
        help=BatchSpawnerBase.batch_queue_cmd.help,
    ).tag(config=True)

    state_pending_re = Unicode(_alternatives(PENDING_STATES), help=BatchSpawnerBase.state_pending_re.help).tag(
        config=True
    )
    state_running_re = Unicode(_alternatives(RUNNING_STATES), help=BatchSpawnerBase.state_running_re.help).tag(
        config=True
    )
    state_finished_re = Unicode(
        _alternatives(FINISHED_STATES), help=BatchSpawnerBase.state_finished_re.help
    ).tag(config=True)
    state_gone_re = Unicode("Invalid job id specified", help=BatchSpawnerBase.state_gone_re.help).tag(config=True)
    state_unknown_re = Unicode(
        r"^slurm_load_jobs error: (?:Socket timed out on send/recv|Unable to contact slurm controller)",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)
    # the whole line matches, so a 1.3-style state_exechost_exp (re.sub on the output) yields just the host
    state_exechost_re = Unicode(
        r"^\S+\s+(\S+)(?:\s.*)?$", help=BatchSpawnerBase.state_exechost_re.help
    ).tag(config=True)

    @default("empty_query_means_finished")
    def _empty_finished(self):
        # squeue -h -j ID (without -t all, as 1.3 configurations have it) exits 0 with no
        # output for MinJobAge after the job ended: worth asking scontrol, never proof alone
        return True

    @default("log_path")
    def _log_path_default(self):
        return "{logdir}/jupyter-{date}-{server}-job{job_id}.log"

    job_id_placeholder = "%j"

    req_partition = _req("Partition name to submit job to resource manager")
    req_qos = _req("QoS name to submit job to resource manager (admin only: a policy)", admin_only=True)
    req_gres = _req(
        "Additional resources (gres) requested, e.g. gpu:1 (admin only: it names resources; users ask for GPUs with ngpus)",
        admin_only=True,
    )
    req_gpu_type = _req("GPU type (a GRES type of the partition, e.g. a100): --gpus=TYPE:ngpus")
    req_reservation = _req("Reservation name to submit to resource manager (admin only: a policy)", admin_only=True)
    req_srun = _req(
        "Command that launches the server inside the allocation; empty runs it directly.", "srun"
    )
    req_cluster = _req(
        "Cluster name (sbatch/squeue/scancel --clusters) for multi-cluster Slurm (admin only)", admin_only=True
    )
    req_job_name = _req("Job name shown in squeue", "spawner-jupyterhub")

    job_cluster = Unicode("", help="Cluster sbatch placed the job on (from 'ID;cluster'); kept in state.")

    def command_vars(self, job_id=""):
        cluster = self.job_cluster or self.req_cluster
        extra = {"cluster_opt": f"--clusters={cluster}" if cluster else ""}
        return super().command_vars(job_id) | extra

    def parse_job_id(self, output):
        lines = [line for line in output.strip().splitlines() if line.strip()]
        if not lines:
            return super().parse_job_id(output)
        # sbatch --parsable prints "ID" or "ID;CLUSTER"; warnings may come before it
        job_id, _, cluster = lines[-1].strip().partition(";")
        if not job_id.isdigit():
            return super().parse_job_id(output)
        self.job_cluster = cluster.strip()
        return job_id

    def load_state(self, state):
        super().load_state(state)
        self.job_cluster = state.get("job_cluster", "")

    def get_state(self):
        state = super().get_state()
        if self.job_id and self.job_cluster:
            state["job_cluster"] = self.job_cluster
        return state

    def clear_state(self):
        super().clear_state()
        self.job_cluster = ""

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        stdout = "\n".join(line for line in stdout.splitlines() if not line.startswith("CLUSTER:"))
        status = super().parse_query_output(returncode, stdout, stderr)
        if status.state is JobState.RUNNING:
            status.host = self._host(stdout, status.host)
        if status.state is JobState.PENDING:
            status.reason = self.pending_reason(stdout)
        return status

    def _host(self, output, found, rule=None):
        """The host of a running job: the first node of %B with the default regex; else the
        configured state_exechost_re/_exp (batchspawner 1.3's rules). A host regex kept from 1.3
        sees what 1.3's query printed ("STATE HOST", without the reason column added here) first,
        then the whole line (a regex written for this package's three columns). ``rule``: the
        answer of _host_rule(), when a caller parsing many lines asked it once."""
        rule = rule or self._host_rule()
        if rule == "first-node":
            return first_host(found)
        if rule == "1.3-view":
            view = "\n".join(" ".join(line.split()[:2]) for line in output.splitlines())
            host = self.state_gethost(view)
            if host:
                return host
        return self.state_gethost(output)

    def _host_rule(self) -> str:
        """Which of _host()'s rules the settings select (comparing traits with their defaults
        costs more than parsing a line: asked once per answer, not per job)."""
        if not self.state_exechost_exp and not configured(self, ("state_exechost_re",)):
            return "first-node"
        return "1.3-view" if not configured(self, ("batch_query_cmd",)) else "line"

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Parse ``squeue -h -t all -j ID,ID,... -o '%i %T %B %r'``.

        Exit 0: every listed job is described; a job missing from the list is
        marked missing (purged, or hidden from the status identity), which the
        spawner confirms with a per-job query. Exit 1 with "Invalid job id specified"
        is about the whole batch (squeue prints it when *none* of the ids is known,
        or when its job table could not be read right): no evidence about any one
        job, so every job is marked missing and confirmed alone. Anything else raises,
        so the round counts as failed and every job stays *unknown*.
        """
        if returncode != 0:
            both = f"{stdout}\n{stderr}"
            if self.state_gone_re and re.search(self.state_gone_re, both) and not (
                self.state_unknown_re and re.search(self.state_unknown_re, both, re.M)
            ):
                return {j: missing("squeue reported the whole batch unknown") for j in job_ids}
            raise RuntimeError(f"squeue exited with {returncode}: {(stderr or stdout).strip()[:200]}")
        wanted = set(job_ids)
        answer = {}
        host_rule = self._host_rule()
        for line in stdout.splitlines():
            if not line.strip() or line.startswith("CLUSTER:"):
                continue
            job_id, _, rest = line.strip().partition(" ")
            if not re.fullmatch(r"\d+(?:_\d+)?(?:\+\d+)?", job_id):
                raise RuntimeError(f"unexpected squeue line: {line[:120]!r}")
            if job_id not in wanted:
                continue
            status = super().parse_query_output(0, rest, "")
            if status.state is JobState.RUNNING:
                status.host = self._host(rest, status.host, host_rule)
            if status.state is JobState.PENDING:
                status.reason = self.pending_reason(rest)
            answer[job_id] = status
        for job_id in wanted - answer.keys():
            # purged after MinJobAge, or hidden from this identity (PrivateData=jobs): the
            # spawner confirms with its own per-job query
            answer[job_id] = missing()
        return answer

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``scontrol -o show job ID``: its JobState, or "Invalid job id specified" (confirmed gone)."""
        both = f"{stdout}\n{stderr}"
        if self.state_unknown_re and re.search(self.state_unknown_re, both, re.M):
            return JobStatus(JobState.UNKNOWN, reason=f"scontrol could not answer: {both.strip()[:200]}")
        if returncode != 0:
            if self.state_gone_re and re.search(self.state_gone_re, both, re.M):
                return JobStatus(JobState.FINISHED, native="gone", reason="neither squeue nor scontrol knows the job")
            return JobStatus(JobState.UNKNOWN, reason=f"scontrol exited with {returncode}: {both.strip()[:200]}")
        fields = dict(re.findall(r"(?:^|\s)(JobState|NodeList|Reason|ExitCode)=(\S*)", stdout))
        word = fields.get("JobState", "")
        if not word:
            return JobStatus(JobState.UNKNOWN, reason=f"no JobState in scontrol output: {stdout.strip()[:120]!r}")
        status = self.parse_query_output(0, f"{word} {fields.get('NodeList', '') or 'n/a'} {fields.get('Reason', 'None')}", "")
        return status

    def parse_job_details(self, returncode, stdout, stderr):
        """``squeue -O JobID:|,State:|,...`` (DETAILS_COLUMNS) -> {job_id: facts for the session card}."""
        from batchspawner.core.durations import parse_duration, parse_timestamp

        if returncode != 0:
            if self.state_gone_re and re.search(self.state_gone_re, f"{stdout}\n{stderr}"):
                return {}
            raise RuntimeError(f"squeue exited with {returncode}: {(stderr or stdout).strip()[:200]}")
        out = {}
        for line in stdout.splitlines():
            if not line.strip() or line.startswith("CLUSTER:"):
                continue
            cols = [c.strip() for c in line.split("|")]
            if len(cols) < len(DETAILS_COLUMNS) or not re.fullmatch(r"\d+(?:_\d+)?(?:\+\d+)?", cols[0]):
                raise RuntimeError(f"unexpected squeue line: {line[:120]!r}")
            (job_id, native, partition, cpus, mem, tres, limit, start, submit, nodes, reason,
             exit_code) = cols[: len(DETAILS_COLUMNS)]
            gpus = ""
            m = re.search(r"gpu(?::[^:,=]+)?[:=](\d+)", tres)
            if m:
                gpus = m.group(1)
            out[job_id] = {
                "native": native,
                "partition": partition,
                "cores": cpus,
                "memory": "" if mem in ("0", "N/A") else mem,
                "gpus": gpus,
                "time_limit": parse_duration(limit),
                "start": parse_timestamp(start),
                "submit": parse_timestamp(submit),
                "node": first_host(nodes) if native != "PENDING" else "",
                "reason": "" if reason in ("None", "(null)") else reason,
                # squeue prints the raw wait status: exit code << 8, or the signal number
                "exit_code": (int(exit_code) >> 8) if exit_code.isdigit() and int(exit_code) & 0x7F == 0 else "",
                "signal": (int(exit_code) & 0x7F) if exit_code.isdigit() and int(exit_code) & 0x7F else "",
            }
        return out

    def parse_queue_order(self, stdout):
        """``squeue -h -t PENDING -o '%i|%P' --sort=-p,i`` -> [(job_id, partition)] by priority."""
        order = []
        for line in stdout.splitlines():
            if not line.strip() or line.startswith("CLUSTER:"):
                continue
            job_id, _, partition = line.strip().partition("|")
            order.append((job_id, partition))
        return order

    def pending_reason(self, output):
        fields = output.strip().split(None, 2)
        if len(fields) == 3 and fields[2] not in ("None", "(null)"):
            return fields[2]
        return ""

    def explain_reason(self, reason):
        code = reason.split(",")[0]
        return f"{reason}: {REASONS[code]}" if code in REASONS else reason

    def requeue_cause(self, reason):
        code = reason.split(",")[0]
        return REQUEUE_CAUSES.get(code) or super().requeue_cause(reason)


class MultiSlurmSpawner(SlurmSpawner):
    """SlurmSpawner for clusters whose node names the hub cannot resolve.

    ``daemon_resolver`` maps a node name as Slurm reports it (for example the
    ``slurmd -N`` name of a multiple-slurmd setup) to a host name or address the
    hub can reach.
    """

    daemon_resolver = Dict(
        {}, help="Map node names reported by Slurm to host names the hub can connect to."
    ).tag(config=True)

    def resolve_host(self, host):
        return super().resolve_host(self.daemon_resolver.get(host, host))
