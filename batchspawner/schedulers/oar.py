"""OAR 2.5 / 3: OarSpawner (``oarsub -S`` / ``oarstat -f -J -j`` / ``oardel``).

Added as the worked example of docs/new-scheduler.md: this module, its template
(``templates/oar.sh``), one line in pyproject.toml's entry points and ``tests/fixtures/oar/``.
No OAR daemon runs here: the parsers are tested on fixtures in OAR's documented formats.

Submitting. ``oarsub`` reads no script on stdin: it takes a command (a script path), scans
that file for ``#OAR`` directives (``-S``) at submit time, and runs the path on the first node
when the job starts. OAR also hands the job none of the submit environment. So:

- the submit command (run as the user, like every submit) writes the rendered script to a new
  file in the user's home (``mktemp``: mode 0600, then 0700 so OAR can run it), submits it, and
  removes it again if ``oarsub`` refuses the job; the script deletes its own file when it starts
  (a job cancelled while it waits leaves it behind: mode 0700, no secret in it);
- the job's variables (``keepvars``) are written into the script as ``export`` lines, except
  the API token, which never is: ``token_via_file`` is always on (the hub writes the token, as
  the user, to a new 0600 file; the job's wrapper reads and deletes it), and a value equal to the
  token is never written.

Status. ``oarstat -f -J -j ID`` prints ``{"ID": {"state": "Running",
"assigned_network_address": ["node1"], "exit_code": null, "message": "...", ...}}`` (the fields
of OAR::Stat's full view; ``exit_code`` is the wait status, exit value << 8 | signal). States:
Waiting, Hold, toLaunch, Launching, toAckReservation, Suspended, Resuming (pending); Running,
Finishing, toError (running, or ending); Terminated, Error (finished: OAR keeps ended jobs in its
database, so the end is seen positively, with its exit code). An id OAR does not know prints
``{}`` or ``null``: silence, confirmed with ``oarstat -s -j ID -J`` (a terminal state ends the
server, an active one keeps it, ``{}`` keeps it *unknown*: it reads the same database, so its
silence is not evidence). oardel'd jobs end in Error.
"""

from __future__ import annotations

import json
import re
import shlex

from traitlets import TraitError, Unicode, default, validate

from batchspawner.core import accounts
from batchspawner.core.states import JobState, JobStatus, missing, silent_claim
from batchspawner.core.templating import load_template
from batchspawner.schedulers.native import parse_one_job, check_batch_answer, history_ended, history_unknown, mapped_host, status_from_native, to_int
from batchspawner.spawner import BatchSpawnerBase, SpawnFailed, _req

OAR_STATES = {
    "Waiting": JobState.PENDING,
    "Hold": JobState.PENDING,
    "toLaunch": JobState.PENDING,
    "Launching": JobState.PENDING,
    "toAckReservation": JobState.PENDING,
    "Suspended": JobState.PENDING,
    "Resuming": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Finishing": JobState.RUNNING,
    "toError": JobState.RUNNING,  # on its way to Error: the next answer ends it
    "Terminated": JobState.FINISHED,
    "Error": JobState.FINISHED,
}

# Names the job's script never exports (the token travels in its 0600 file).
SECRET_NAMES = frozenset({"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"})


def oarstat_jobs(text):
    """{job id: fields} from ``oarstat -J`` JSON; {} for ``{}`` or ``null``. ValueError otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return {str(jid): fields for jid, fields in data.items() if isinstance(fields, dict)}


def first_address(addresses) -> str:
    """``assigned_network_address`` (a list of host names; ``node1+node2`` in oarstat's text view)
    -> the first host (the spawner's one check, ``usable_host``, then judges it)."""
    if isinstance(addresses, str):
        addresses = addresses.replace("+", " ").split()
    if not isinstance(addresses, list) or not addresses:
        return ""
    return str(addresses[0]).strip()


def exit_value(wait_status):
    """OAR's ``exit_code`` is the wait status (value << 8 | signal): the exit value, or None."""
    code = to_int(wait_status)
    return None if code is None else code >> 8


class OarSpawner(BatchSpawnerBase):
    """Runs the single-user server as an OAR job (``oarsub -S``, ``oarstat -f -J``, ``oardel``)."""

    batch_script = Unicode(load_template("oar.sh"), help=BatchSpawnerBase.batch_script.help).tag(config=True)
    batch_submit_cmd = Unicode(
        'umask 077 && f=$(mktemp {homedir}/.jupyterhub-oar-job.XXXXXXXX) && cat > "$f" && chmod 700 "$f" && '
        'if oarsub -S "$f"; then :; else rc=$?; rm -f "$f"; exit "$rc"; fi',
        help=BatchSpawnerBase.batch_submit_cmd.help
        + """ OAR: oarsub takes a script file, not stdin, and runs that file when the job starts;
        this writes the script (no token in it) to a new 0700 file in the user's home, as the
        user, and submits it with -S (#OAR directives). The home must be seen by the nodes and
        its path must hold no white space (oarsub splits the path).""",
    ).tag(config=True)
    batch_query_cmd = Unicode(
        "oarstat -f -J -j {job_id}", help=BatchSpawnerBase.batch_query_cmd.help + " Parsed as oarstat JSON."
    ).tag(config=True)
    batch_cancel_cmd = Unicode("oardel {job_id}", help=BatchSpawnerBase.batch_cancel_cmd.help).tag(config=True)
    batch_confirm_cmd = Unicode(
        "oarstat -s -J -j {job_id}",
        help=BatchSpawnerBase.batch_confirm_cmd.help
        + """ OAR: ``oarstat -s`` (the job's state alone) when ``oarstat -f`` listed nothing: a
        Terminated/Error state ends the server, an active one keeps it; ``{}`` keeps the job
        *unknown* (the same database answers both, so its silence is no evidence).""",
    ).tag(config=True)
    batch_status_cmd = Unicode(
        "",
        help=BatchSpawnerBase.batch_status_cmd.help
        + """ OAR: off by default (one ``oarstat -f -J -j ID`` per job). ``oarstat -J`` lists every
        active job in one answer and is parsed (a job it does not list is asked about per job);
        set it where oarstat prints ``null`` for an empty listing (Perl JSON 4): with an older
        JSON module oarstat fails when no job is active, and a failing shared query keeps every
        job *unknown*.""",
    ).tag(config=True)

    # batchspawner 1.3-style regexes over the JSON, for sites that set state_exechost_exp or
    # print a fragment of it; the JSON parser decides the state
    state_pending_re = Unicode(
        r'"state"\s*:\s*"(?:Waiting|Hold|toLaunch|Launching|toAckReservation|Suspended|Resuming)"',
        help=BatchSpawnerBase.state_pending_re.help,
    ).tag(config=True)
    state_running_re = Unicode(
        r'"state"\s*:\s*"(?:Running|Finishing|toError)"', help=BatchSpawnerBase.state_running_re.help
    ).tag(config=True)
    state_finished_re = Unicode(
        r'"state"\s*:\s*"(?:Terminated|Error)"', help=BatchSpawnerBase.state_finished_re.help
    ).tag(config=True)
    state_exechost_re = Unicode(
        r'"assigned_network_address"\s*:\s*\[\s*"([^"\s]+)"', help=BatchSpawnerBase.state_exechost_re.help
    ).tag(config=True)
    state_unknown_re = Unicode(
        r"DB connection error|cannot connect to executor|Cannot connect to",
        help=BatchSpawnerBase.state_unknown_re.help,
    ).tag(config=True)

    req_job_name = _req("Job name (#OAR -n)", "jupyterhub-singleuser")

    native_states = OAR_STATES
    native_query_parser = True  # shared_status_fits: configured regexes need per-job queries
    job_id_placeholder = "%jobid%"  # oarsub -O replaces it

    @default("log_path")
    def _log_path_default(self):
        return "{logdir}/jupyter-{date}-{server}-job{job_id}.log"

    @default("token_via_file")
    def _token_via_file_default(self):
        return True  # OAR passes the job no environment: the token goes in a 0600 file

    @validate("token_via_file")
    def _check_token_via_file(self, proposal):
        if not proposal["value"]:
            raise TraitError(
                f"{type(self).__name__}.token_via_file must stay True: OAR hands the job no environment, "
                "and the script file must never hold the token"
            )
        return True

    @default("denied_users")
    def _denied_users_default(self):
        return set(accounts.DEFAULT_DENIED_USERS) | {"oar"}  # OAR's service account

    def template_vars(self, user_values=None):
        subvars = super().template_vars(user_values)
        subvars["job_env"] = self.job_exports(subvars.get("keepvars", ""))
        return subvars

    def job_exports(self, keepvars) -> list:
        """[(name, shell-quoted value)] of the kept variables the script exports (never the token)."""
        env = self.get_env()
        token = self.api_token or ""
        exports = []
        for name in (n.strip() for n in str(keepvars).split(",")):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in SECRET_NAMES or name not in env:
                continue
            value = str(env[name])
            if token and token in value:
                continue
            exports.append((name, shlex.quote(value)))
        return exports

    def parse_job_id(self, output):
        # oarsub prints admission rule notes, then "OAR_JOB_ID=42"
        found = re.findall(r"^OAR_JOB_ID=(\d+)\s*$", output, re.M)
        if len(found) != 1:
            raise SpawnFailed(f"Could not find one job id in the oarsub output: {output.strip()[:200]!r}")
        return found[0]

    def parse_query_output(self, returncode, stdout, stderr) -> JobStatus:
        def read(out):
            job = oarstat_jobs(out).get(str(self.job_id))
            return self.status_from_fields(job, out) if job is not None else None

        return parse_one_job(self, returncode, stdout, stderr, what="oarstat JSON", read=read,
                             missing=silent_claim("oarstat exited 0 but listed no such job"))

    def parse_confirm_output(self, returncode, stdout, stderr) -> JobStatus:
        """``oarstat -s -J -j ID``: ``{"ID": "Terminated"}``; FINISHED only for a terminal state."""
        if returncode != 0:
            return history_unknown("oarstat -s", returncode, stdout, stderr)
        try:
            data = json.loads(stdout)
        except json.JSONDecodeError:
            return history_unknown("oarstat -s", returncode, stdout, stderr, why="oarstat -s printed no JSON")
        state = data.get(str(self.job_id)) if isinstance(data, dict) else None
        if not isinstance(state, str):
            return history_unknown("oarstat -s", returncode, stdout, stderr, why="oarstat -s lists no such job")
        status = status_from_native(state, self.native_states)
        if status.state is JobState.FINISHED:
            return history_ended("oarstat -s", detail=f"state {state}")
        if status.state is JobState.UNKNOWN:
            return history_unknown("oarstat -s", returncode, stdout, stderr, why=status.reason)
        return status

    def parse_batch_status(self, returncode, stdout, stderr, job_ids):
        """Every active job's state from one ``oarstat -J``; jobs it does not list are missing."""
        check_batch_answer(self, returncode, stdout, stderr, "oarstat")
        listed = oarstat_jobs(stdout) if stdout.strip() else {}
        return {j: self.status_from_fields(listed[str(j)], stdout) if str(j) in listed else missing() for j in job_ids}

    def status_from_fields(self, job, raw) -> JobStatus:
        host = mapped_host(self, first_address(job.get("assigned_network_address")), raw)
        return status_from_native(
            str(job.get("state", "")),
            self.native_states,
            host=host,
            exit_code=exit_value(job.get("exit_code")),
            reason=str(job.get("message") or ""),
        )
