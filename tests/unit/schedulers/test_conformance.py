"""One conformance suite for every scheduler module, driven by a table.

Each case replays fixture files (the real tools' output formats) through the
FakeRunner: render -> submit argv -> job id -> pending -> running (host) ->
finished; cancel; unknown when a command fails in a way never seen before.
Each registered scheduler (pyproject.toml's entry points) has its case as data next to its
fixtures: ``tests/fixtures/<name>/case.toml`` (a second class on the same fixtures, as
multislurm on Slurm's, adds ``case-<name>.toml`` there); see docs/new-scheduler.md. Adding a
scheduler edits nothing here. Grid Engine's fixtures were captured from the real Son of Grid
Engine here; the other schedulers' follow their documentation (see each fixture's header).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field

import pytest
from fakes import FIXTURES, FakeRunner, Reply, fixture
from traitlets import TraitError
from unit.helpers import make_spawner


from batchspawner import JobState, schedulers
from batchspawner.core.states import MISSING

REQUESTS = dict(
    req_nprocs="4", req_memory="4gb", req_runtime="01:00:00", req_queue="short", req_account="proj7", req_ngpus="2"
)
CASE_FILES = "*/case*.toml"  # under tests/fixtures: case.toml, or case-<name>.toml for a second one


@dataclass
class Case:
    """One scheduler's conformance case, read from ``tests/fixtures/<folder>/case*.toml``."""

    id: str  # the entry point name (``scheduler`` in the file)
    cls: type
    submit: str  # argv[0] of the submit command
    query: str  # argv[0] of the query command
    cancel: str  # argv[0] of the cancel command
    job_id: str
    host: str  # the address the hub connects to (after any host mapping)
    # fixture paths (under tests/fixtures) for each phase of the query
    submit_out: str
    pending: str
    running: str
    finished: str
    # what the query answers once the scheduler forgot the job: {argv0: Reply}
    gone: dict
    # lines the rendered script must hold for REQUESTS (cores, memory, walltime, queue, account, GPUs)
    directives: tuple
    # extra commands the query may make (HTCondor asks condor_history once condor_q lost the job)
    finished_replies: dict = field(default_factory=dict)
    # site configuration every test of the case uses (names the scheduler cannot guess, host maps)
    config: dict = field(default_factory=dict)
    # requests beyond REQUESTS that only this scheduler has; their lines are in `directives` too
    requests: dict = field(default_factory=dict)
    # the query argument that picks this job (default: the job id; qstat -xml lists a user's jobs)
    query_selects: str = ""
    # {phase: job id in that fixture}: the capture holds no job in that state under the submitted
    # id, so the responder swaps the two ids (matched by `job_id_re`) and nothing else
    stand_in: dict = field(default_factory=dict)
    job_id_re: str = ""
    # the request traits tagged admin_only on the class (tests/unit/core/test_fail_closed_units.py)
    admin_only: tuple = ()
    # "module:function" reading one host field of the query's answer, and how that field holds a
    # host word (Grid Engine's queue instance: "all.q@{word}"); tests/unit/core/test_fail_closed_units.py
    host_parser: str = ""
    host_field: str = "{word}"
    # optional answer tables, each checked for the cases that have one (see the tests below):
    # [[answers]] more per-job query answers; [[confirm]] the second source's answers;
    # [batch_status] one shared status answer; [[refused]] configurations the class refuses;
    # script_exports: the script itself exports the job's variables (the scheduler passes none)
    answers: list = field(default_factory=list)
    confirm: list = field(default_factory=list)
    batch_status: dict = field(default_factory=dict)
    refused: list = field(default_factory=list)
    script_exports: bool = False
    # the scheduler's own service accounts: never a hub user's job account (denied_users)
    service_accounts: tuple = ()
    # the submit tool reads a file, not stdin (OAR's oarsub): batch_submit_cmd is a shell step that
    # writes the script to a file and ends in this tool, which gets the file's path last
    submit_file_tool: str = ""


def _f(path):
    return Reply(stdout=fixture(path))


def _reply(folder, spec):
    """``{stdout = "file", stderr = "file", returncode = N}`` (file names in the case's folder) -> Reply."""
    unknown = set(spec) - {"stdout", "stderr", "returncode"}
    assert not unknown, f"{folder}: unknown reply keys {sorted(unknown)}"
    return Reply(
        stdout=fixture(f"{folder}/{spec['stdout']}") if "stdout" in spec else "",
        stderr=fixture(f"{folder}/{spec['stderr']}") if "stderr" in spec else "",
        returncode=spec.get("returncode", 0),
    )


def load_case(path, classes):
    """The Case a ``case*.toml`` describes; ``classes`` maps entry point names to spawner classes."""
    data = tomllib.loads(path.read_text())
    folder = path.parent.name
    name = data.pop("scheduler")
    for key in ("submit_out", "pending", "running", "finished"):
        data[key] = f"{folder}/{data[key]}" if data.get(key) else ""
    for key in ("gone", "finished_replies"):
        data[key] = {argv0: _reply(folder, spec) for argv0, spec in data.get(key, {}).items()}
    data["directives"] = tuple(data["directives"])
    data["admin_only"] = tuple(data.get("admin_only", ()))
    data["service_accounts"] = tuple(data.get("service_accounts", ()))
    for key in ("answers", "confirm"):
        data[key] = [dict(entry, reply=_reply(folder, entry["reply"])) for entry in data.get(key, [])]
    if "batch_status" in data:
        data["batch_status"] = dict(data["batch_status"], reply=_reply(folder, data["batch_status"]["reply"]))
    return Case(id=name, cls=classes[name], **data)


def case_paths():
    return sorted(FIXTURES.glob(CASE_FILES))


def load_cases(classes=None):
    """One Case per registered scheduler that has a case file (the registry order).

    tests/unit/schedulers/test_schedulers_registry.py fails for a registered scheduler without a case file
    and for a case file naming no entry point of pyproject.toml (one the installed metadata does
    not list yet, before a reinstall, is left out here)."""
    classes = schedulers.spawner_classes() if classes is None else classes
    found = {}
    for path in case_paths():
        name = tomllib.loads(path.read_text())["scheduler"]
        assert name not in found, f"two case files for {name!r}"
        if name in classes:
            found[name] = load_case(path, classes)
    return [found[name] for name in classes if name in found]


CASES = load_cases()
IDS = [c.id for c in CASES]


class Cluster:
    """Answers each command by name from the current phase's replies (a scripted scheduler)."""

    def __init__(self, case):
        self.case = case
        self.phase = "pending"
        self.override = None

    def replies(self):
        c = self.case
        if self.phase == "gone":
            return c.gone
        if self.phase == "finished" and c.finished_replies:
            return c.finished_replies
        path = {"pending": c.pending, "running": c.running, "finished": c.finished}[self.phase]
        reply = _f(path)
        if self.phase in c.stand_in:
            reply.stdout = swap_ids(reply.stdout, c.job_id_re, c.job_id, c.stand_in[self.phase])
        return {c.query: reply}

    def __call__(self, argv, stdin):
        name = os.path.basename(argv[0])
        if self.override is not None and name == self.case.query:
            return self.override
        if name == self.case.submit:
            return _f(self.case.submit_out)
        if name == self.case.cancel:
            self.phase = "gone"
            return Reply()
        reply = self.replies().get(name, Reply(stderr=f"unexpected command {argv}", returncode=99))
        if name == "squeue" and any(a.startswith("%i") for a in argv) and reply.stdout.strip():
            # Slurm's shared status query (-o '%i %T %B %r') prints each job's id first
            lines = [f"{self.case.job_id} {line}" for line in reply.stdout.splitlines() if line.strip()]
            reply = Reply(stdout="\n".join(lines) + "\n", stderr=reply.stderr, returncode=reply.returncode)
        return reply


def swap_ids(text, pattern, a, b):
    """``text`` with job ids ``a`` and ``b`` exchanged where ``pattern`` matches an id."""
    swapped = re.sub(pattern, lambda m: {a: b, b: a}.get(m.group(0), m.group(0)), text)
    assert swapped != text, f"no job id {a} or {b} matched {pattern!r}"
    return swapped


def _spawner(case, **traits):
    cluster = Cluster(case)
    traits = case.config | traits
    runner = FakeRunner(responder=cluster)
    traits.setdefault("status_min_interval", 0.01)
    traits.setdefault("running_check_interval", 0.05)
    spawner = make_spawner(case.cls, runner, **traits)
    return spawner, runner, cluster


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_render_honours_every_request(case):
    spawner, _, _ = _spawner(case, **REQUESTS, **case.requests)
    script = spawner.render_script()
    for line in case.directives:
        assert line in script.splitlines(), f"{line!r} missing from:\n{script}"
    assert "secret-token-value" not in script


EMPTIED = [
    ("defaults", {}),
    # an admin may turn the job's log off, keep no variables, or have users without a home
    ("no-log-no-keepvars", {"log_path": "", "req_keepvars": ""}),
    ("no-log-no-keepvars-no-homedir", {"log_path": "", "req_keepvars": "", "req_homedir": ""}),
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("traits", [e[1] for e in EMPTIED], ids=[e[0] for e in EMPTIED])
def test_render_with_nothing_requested_has_no_broken_directive(case, traits):
    spawner, _, _ = _spawner(case, **traits)
    script = spawner.render_script()
    for line in script.splitlines():
        stripped = line.strip()
        # a directive whose value is missing: "#PBS -q", "#PBS -q @", "#BSUB -W", "request_cpus =",
        # "#SBATCH --output=", "#BSUB -cwd", "#$ -o", and cd "" in the script body
        assert not stripped.endswith(
            ("@", "=", " -q", " -A", " -P", " -W", " -n", " -M", " -o", " -e", " -v", " -cwd", " -wd", '""')
        ), line
        assert "None" not in stripped, line
        assert "@ " not in stripped and "=:" not in stripped, line


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_lifecycle_submit_pending_running_finished(case):
    # poll() here asks the scheduler each time (per-job mode); the shared poller's cache
    # is covered in test_status_poller.py
    spawner, runner, cluster = _spawner(case, shared_status=False, **REQUESTS)
    job_id = await spawner.submit_batch_script()
    assert job_id == case.job_id
    submit = runner.calls[0]
    assert os.path.basename(submit.argv[0]) == case.submit
    assert submit.stdin == spawner.render_script()  # the script goes on stdin, never to a file
    assert "secret-token-value" not in submit.stdin
    if spawner.token_via_file:  # Grid Engine: qstat -j shows any job's environment to everyone
        assert "JUPYTERHUB_API_TOKEN" not in submit.env
        assert submit.env["JUPYTERHUB_API_TOKEN_FILE"].startswith(spawner.req_homedir)
    else:
        assert submit.env["JUPYTERHUB_API_TOKEN"] == "secret-token-value"
    spawner.job_id = job_id

    status = await spawner.query_job_status()
    assert status.state is JobState.PENDING, status
    query = runner.calls[-1]
    assert os.path.basename(query.argv[0]) == case.query and (case.query_selects or case.job_id) in query.argv
    assert "JUPYTERHUB_API_TOKEN" not in query.env  # queries carry no token
    assert await spawner.poll() is None

    cluster.phase = "running"
    status = await spawner.query_job_status()
    assert (status.state, spawner.resolve_host(status.host)) == (JobState.RUNNING, case.host)
    assert await spawner.poll() is None

    cluster.phase = "finished"
    status = await spawner.query_job_status()
    assert status.state is JobState.FINISHED, status
    assert await spawner.poll() is not None


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_stop_cancels_and_waits_until_gone(case):
    spawner, runner, cluster = _spawner(case)
    spawner.job_id = case.job_id
    cluster.phase = "running"
    spawner.cancel_wait_timeout = 5
    spawner.startup_poll_interval = 0.01
    await spawner.stop()
    names = [os.path.basename(c.argv[0]) for c in runner.calls]
    assert names[0] == case.cancel and case.job_id in runner.calls[0].argv
    assert case.query in names[1:]
    assert (await spawner.query_job_status()).state is JobState.FINISHED


FAILURES = [
    ("new-error", Reply(stderr="qfoo: internal error 4242 never seen before", returncode=2)),
    ("timeout", Reply(timeout=True)),
    ("garbage", Reply(stdout="\x00\x01 <<garbage>> {not: json")),
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("reply", [f[1] for f in FAILURES], ids=[f[0] for f in FAILURES])
async def test_failed_query_is_unknown_and_keeps_the_server(case, reply):
    spawner, runner, cluster = _spawner(case)
    spawner.job_id = case.job_id
    cluster.override = reply
    status = await spawner.query_job_status()
    assert status.state is JobState.UNKNOWN, status
    assert await spawner.poll() is None  # alive: a scheduler hiccup never drops the server


# ------------------------------------------------------------------ optional answer tables

STATES = {"pending": JobState.PENDING, "running": JobState.RUNNING, "finished": JobState.FINISHED,
          "unknown": JobState.UNKNOWN}


def _with(attr):
    chosen = [c for c in CASES if getattr(c, attr)]
    return dict(argvalues=chosen, ids=[c.id for c in chosen])


def _entries(attr):
    chosen = [(c, i) for c in CASES for i in range(len(getattr(c, attr)))]
    return dict(argvalues=chosen, ids=[f"{c.id}-{i}" for c, i in chosen])


def _check(status, entry):
    assert status.state is STATES[entry["state"]], status.describe()
    if "host" in entry:
        assert status.host == entry["host"], status
    if "exit_code" in entry:
        assert status.exit_code == entry["exit_code"], status


@pytest.mark.parametrize("case,i", **_entries("answers"))
def test_more_query_answers(case, i):
    """``[[answers]]``: ``{reply = {...}, state = "finished", host = "", exit_code = 3}``."""
    entry = case.answers[i]
    spawner, _, _ = _spawner(case)
    spawner.job_id = case.job_id
    reply = entry["reply"]
    _check(spawner.read_query_result(reply.returncode, reply.stdout, reply.stderr), entry)


@pytest.mark.parametrize("case,i", **_entries("confirm"))
def test_second_source_answers(case, i):
    """``[[confirm]]``: what ``parse_confirm_output`` makes of the second source's answers."""
    entry = case.confirm[i]
    spawner, _, _ = _spawner(case)
    spawner.job_id = case.job_id
    reply = entry["reply"]
    _check(spawner.parse_confirm_output(reply.returncode, reply.stdout, reply.stderr), entry)


@pytest.mark.parametrize("case", **_with("confirm"))
@pytest.mark.parametrize("reply", [f[1] for f in FAILURES if not f[1].timeout] + [Reply()],
                         ids=[f[0] for f in FAILURES if not f[1].timeout] + ["empty"])
def test_second_source_that_cannot_tell_is_unknown(case, reply):
    spawner, _, _ = _spawner(case)
    spawner.job_id = case.job_id
    assert spawner.parse_confirm_output(reply.returncode, reply.stdout, reply.stderr).state is JobState.UNKNOWN


@pytest.mark.parametrize("case", **_with("batch_status"))
def test_shared_status_answer(case):
    """``[batch_status]``: ``reply`` and ``expected = {job id = [state or "missing", host]}``."""
    spawner, _, _ = _spawner(case)
    reply, expected = case.batch_status["reply"], case.batch_status["expected"]
    answer = spawner.parse_batch_status(reply.returncode, reply.stdout, reply.stderr, list(expected))
    seen = {j: ["missing" if s.native == MISSING else s.state.name.lower(), s.host] for j, s in answer.items()}
    assert seen == expected


@pytest.mark.parametrize("case", **_with("batch_status"))
@pytest.mark.parametrize("reply", [f[1] for f in FAILURES if not f[1].timeout],
                         ids=[f[0] for f in FAILURES if not f[1].timeout])
def test_shared_status_answer_that_cannot_be_trusted_fails_the_round(case, reply):
    spawner, _, _ = _spawner(case)
    with pytest.raises(Exception):
        spawner.parse_batch_status(reply.returncode, reply.stdout, reply.stderr, list(case.batch_status["expected"]))


@pytest.mark.parametrize("case,i", **_entries("refused"))
def test_refused_configuration(case, i):
    """``[[refused]]``: ``{config = {trait = value}, match = "words of the error"}`` raises TraitError."""
    entry = case.refused[i]
    with pytest.raises(TraitError, match=entry["match"]):
        make_spawner(case.cls, **entry["config"])


@pytest.mark.parametrize("case", **_with("service_accounts"))
def test_the_schedulers_service_accounts_are_denied(case):
    spawner, _, _ = _spawner(case)
    assert set(case.service_accounts) <= spawner.denied_users


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_script_never_holds_the_token(case):
    """No template writes a variable's value that holds the token; one whose scheduler passes the
    job no environment (``script_exports = true``) exports every kept variable but the token."""
    spawner, _, _ = _spawner(case)
    script = spawner.render_script()
    if case.script_exports:
        names = [n for n in spawner.get_req_subvars()["keepvars"].split(",") if n]
        assert names and "JUPYTERHUB_API_TOKEN" not in spawner.get_env()
        for name in names:
            assert f"export {name}=" in script, name
    assert "secret-token-value" not in script
    # a value holding the token is never written, whatever its name
    spawner.environment = {"SITE_VAR": "x-secret-token-value-y"}
    spawner.req_keepvars_extra = "SITE_VAR"
    assert "secret-token-value" not in spawner.render_script()


def _stub_tool(bindir, name, returncode):
    """A stand-in for the scheduler's submit tool: records its arguments, its stdin and the file
    its last argument names (content and mode), prints the submit answer, exits ``returncode``."""
    stub = bindir / name
    stub.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$STUB_DIR/argv"\n'
        'cat > "$STUB_DIR/stdin"\n'
        'for last in "$@"; do :; done\n'
        'if [ -f "$last" ]; then cp "$last" "$STUB_DIR/file" && stat -c %a "$last" > "$STUB_DIR/mode"; fi\n'
        'cat "$STUB_DIR/answer"\n'
        f"exit {returncode}\n"
    )
    stub.chmod(0o755)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("refused", [False, True], ids=["accepted", "refused"])
def test_the_submit_command_really_runs(case, refused, tmp_path):
    """batch_submit_cmd run for real, with a stub submit tool on PATH. A tool that reads stdin gets
    exactly the rendered script there. A tool that reads a file (``submit_file_tool``: OAR's
    oarsub) gets one that holds exactly the script, is the user's alone (0700) and lies in the
    home (the nodes run it later); it is kept when the tool accepts the job and removed when it
    refuses. Either way a refusal's exit status is the submit's and an answer gives the job id."""
    import subprocess

    from batchspawner.commands.runner import split_command

    home, bindir, stubdir = tmp_path / "home", tmp_path / "bin", tmp_path / "stub"
    for d in (home, bindir, stubdir):
        d.mkdir()
    (stubdir / "answer").write_text(fixture(case.submit_out))
    _stub_tool(bindir, case.submit_file_tool or case.submit, 3 if refused else 0)
    spawner, _, _ = _spawner(case, req_homedir=str(home), **REQUESTS, **case.requests)
    script = spawner.render_script()
    argv = split_command(spawner.batch_submit_cmd, **spawner.command_vars())
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "STUB_DIR": str(stubdir)}
    done = subprocess.run(argv, input=script, capture_output=True, text=True, env=env, cwd=home, timeout=30)
    assert done.returncode == (3 if refused else 0), done.stderr
    if case.submit_file_tool:
        given = (stubdir / "argv").read_text().splitlines()[-1]
        assert os.path.dirname(given) == str(home)
        assert (stubdir / "file").read_text() == script and (stubdir / "mode").read_text().strip() == "700"
        assert os.path.exists(given) is not refused  # accepted: the job runs it when it starts
    else:
        assert (stubdir / "stdin").read_text() == script
    if not refused:
        assert spawner.parse_job_id(done.stdout) == case.job_id
