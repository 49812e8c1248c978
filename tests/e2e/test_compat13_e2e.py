"""batchspawner 1.3 configurations on site-shaped hosts (issue 13), end to end.

- A hub that is **not a Slurm client**: it runs in a private mount namespace where the machine's
  ``/etc/slurm`` is hidden (an empty directory is bound over it), so any squeue/sbatch it ran
  itself would fail. It reaches the real Slurm only through a real sshd on loopback (a "login
  node" account, ``jhpclogin``, that may sudo to the users: scripts/setup-login-node.sh), with
  1.3's ``exec_prefix = "ssh ... login1 sudo -u {username}"``: spawn ready, hub restart, poll
  notices an end, stop.
- Slurm with its config at a **non-default path**: the same hidden ``/etc/slurm``, and the hub has
  ``SLURM_CONF`` pointing at a copy. Every scheduler command (submit, query, cancel, the shared
  status query) must get it.
- FAKE Torque and LSF tools (tests/fakesched) with a 1.3 config: its own ``batch_query_cmd``
  (Torque's with shell syntax), ``state_*_re`` and ``state_exechost_exp``: spawns, and the hub
  notices when the job ends by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import fakesched
import slurmtools
import sshdtools
from e2e.conftest import require

SLURM_BASE = """
c.JupyterHub.spawner_class = 'slurm'
c.SlurmSpawner.req_runtime = '00:30:00'
c.SlurmSpawner.startup_poll_interval = 0.25
c.Spawner.poll_interval = 2
c.SlurmSpawner.status_interval = 2
"""


def job_id_of(hub, name):
    state = hub.api("GET", f"/users/{name}").json()["servers"][""]["state"]
    return state["job_id"] if "job_id" in state else state["child_state"]["job_id"]  # a wrapper's child


def wait_gone(job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and slurmtools.job_state(job_id) not in ("", "CANCELLED", "COMPLETED"):
        time.sleep(0.5)
    return slurmtools.job_state(job_id) in ("", "CANCELLED", "COMPLETED")


@pytest.fixture
def no_etc_slurm():
    """argv that runs the hub with the machine's /etc/slurm hidden (private mount namespace)."""
    require(bool(shutil.which("unshare")), "unshare (util-linux) not installed")
    empty = Path(tempfile.mkdtemp(prefix="jhpc-noslurm-"))
    empty.chmod(0o755)
    wrapper = ["unshare", "--mount", "--propagation", "private",
               "sh", "-c", f'mount --bind {empty} /etc/slurm && exec "$@"', "hide-etc-slurm"]  # fmt: skip
    probe = subprocess.run(wrapper + ["sh", "-c", "test ! -e /etc/slurm/slurm.conf"], capture_output=True, timeout=20)
    require(probe.returncode == 0, f"cannot hide /etc/slurm in a mount namespace: {probe.stderr.decode()[:200]}")
    yield wrapper
    shutil.rmtree(empty, ignore_errors=True)


@pytest.fixture
def login_node():
    ok, why = sshdtools.available()
    require(ok, why)
    try:
        import pwd

        pwd.getpwnam("jhpclogin")
    except KeyError:
        require(False, "login-node account missing (run scripts/setup-login-node.sh)")
    key = sshdtools.ClientKey()
    sshd = sshdtools.Sshd(key, login_user="jhpclogin").start()
    try:
        yield key, sshd
    finally:
        sshd.cleanup()
        key.cleanup()


def test_hub_not_a_slurm_client_reaches_slurm_through_a_login_node(slurm, hubs, login_node, no_etc_slurm):
    key, sshd = login_node
    # batchspawner 1.3's way to a login node; ssh options only make the test's sshd trusted
    prefix = (
        f"ssh -i {key.key} -p {sshd.port} -o UserKnownHostsFile={key.known_hosts} -o StrictHostKeyChecking=yes "
        "-o BatchMode=yes jhpclogin@127.0.0.1 sudo -u {username}"
    )
    config = SLURM_BASE + f"c.SlurmSpawner.exec_prefix = {prefix!r}\n"
    hub = hubs(config)
    hub.command_prefix = no_etc_slurm
    hub.start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    assert slurmtools.job_state(job_id) == "RUNNING"
    assert hub.user_request("alice", "api").status_code == 200  # the token travelled over ssh
    commands = sshd.commands()
    assert any(c.startswith("sudo -u alice") and "sbatch" in c for c in commands), commands
    # the shared status query went the same way, as alice, never squeue on the hub
    assert any(c.startswith("sudo -u alice squeue") and "%i %T %B %r" in c for c in commands), commands
    assert all("JUPYTERHUB_API_TOKEN=" not in c for c in commands)  # values ride on stdin
    assert "status query failed" not in hub.log_text()
    print(f"login node: submit->ready {seconds:.2f} s (job {job_id})")

    hub.restart()  # the restored server is polled through the login node too
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    assert job_id_of(hub, "alice") == job_id
    assert hub.stop_server("alice")
    assert any(c.startswith("sudo -u alice scancel") and job_id in c for c in sshd.commands())
    assert wait_gone(job_id)

    # poll notices a job that ended without the hub (cancelled by hand here)
    r, _ = hub.spawn("alice")
    assert hub.server_model("alice")["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    t0 = time.monotonic()
    slurmtools.cancel([job_id])
    assert hub.wait_stopped("alice", timeout=60), hub.log_tail()
    print(f"login node: job end noticed by poll in {time.monotonic() - t0:.1f} s")
    assert "status query failed" not in hub.log_text()


def test_slurm_conf_at_a_non_default_path(slurm, hubs, no_etc_slurm):
    conf_dir = Path(tempfile.mkdtemp(prefix="jhpc-slurmconf-"))
    try:
        conf_dir.chmod(0o755)
        for item in Path("/etc/slurm").iterdir():
            dest = conf_dir / item.name
            (shutil.copytree if item.is_dir() else shutil.copy)(item, dest)
        hub = hubs(SLURM_BASE, env={"SLURM_CONF": str(conf_dir / "slurm.conf")})
        hub.command_prefix = no_etc_slurm
        hub.start()
        r, seconds = hub.spawn("alice")
        assert r.status_code in (201, 202), r.text
        model = hub.server_model("alice")
        assert model and model["ready"], hub.log_tail()
        job_id = job_id_of(hub, "alice")
        assert slurmtools.job_state(job_id) == "RUNNING"
        assert "status query failed" not in hub.log_text()
        print(f"SLURM_CONF={conf_dir}/slurm.conf: submit->ready {seconds:.2f} s (job {job_id})")
        assert hub.stop_server("alice")
        assert wait_gone(job_id)
        assert "could not cancel" not in hub.log_text()
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


# batchspawner 1.3 configurations for Torque and LSF, as sites wrote them
CONFIG_13 = {
    "torque": r"""
c.TorqueSpawner.batch_query_cmd = 'qstat -x {job_id} 2>&1'
c.TorqueSpawner.state_pending_re = r'<job_state>[QH]</job_state>'
c.TorqueSpawner.state_running_re = r'<job_state>R</job_state>'
c.TorqueSpawner.state_exechost_re = r'<exec_host>((?:[\w_-]+\.?)+)/\d+'
c.TorqueSpawner.state_exechost_exp = r'\1'
""",
    "lsf": r"""
c.LsfSpawner.batch_query_cmd = 'bjobs -a -noheader -o "STAT EXEC_HOST" {job_id}'
c.LsfSpawner.state_pending_re = r'^(?:PEND|PSUSP)'
c.LsfSpawner.state_running_re = r'^RUN'
c.LsfSpawner.state_exechost_re = r'^RUN\s+(?:\d+\*)?(\S+)'
c.LsfSpawner.state_exechost_exp = r'\1'
""",
}

FAKE_BASE = """
c.JupyterHub.spawner_class = {spawner_class!r}
c.BatchSpawnerBase.exec_prefix = 'sudo -E -u {{username}} env PATH={bindir}:/usr/bin:/bin'
c.BatchSpawnerBase.status_exec_prefix = 'env PATH={bindir}:/usr/bin:/bin'
c.BatchSpawnerBase.req_runtime = '00:30:00'
c.BatchSpawnerBase.req_nprocs = '2'
c.BatchSpawnerBase.startup_poll_interval = 0.25
c.Spawner.poll_interval = 1
"""


@pytest.fixture
def fake_cluster():
    directory = tempfile.mkdtemp(prefix="jhpc-fakesched-")
    os.chmod(directory, 0o755)
    yield directory
    fakesched.kill_leftovers(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("flavour,spawner_class", [("torque", "torque"), ("lsf", "lsf")])
def test_13_config_on_fake_scheduler_spawns_and_notices_the_end(hubs, fake_cluster, flavour, spawner_class):
    require(bool(shutil.which("configurable-http-proxy")), "configurable-http-proxy not installed")
    require(bool(shutil.which("sudo")), "sudo not installed")
    bindir = fakesched.install(fake_cluster, flavour)
    config = FAKE_BASE.format(spawner_class=spawner_class, bindir=bindir) + CONFIG_13[flavour]
    hub = hubs(config).start()
    fakesched.start_call_log(fake_cluster)
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    assert hub.user_request("alice", "api").status_code == 200
    job = next(iter(fakesched.jobs(fake_cluster).values()))
    assert job["state"] == "running"
    tool = {"torque": "qstat", "lsf": "bjobs"}[flavour]
    queries = [c["argv"] for c in fakesched.calls(fake_cluster) if c["argv"][0] == tool]
    assert queries and all(q[-1].split(".")[0] == str(job["id"]) for q in queries), queries  # the site's own per-job query
    if flavour == "lsf":
        assert all(q[:4] == ["bjobs", "-a", "-noheader", "-o"] for q in queries), queries
    print(f"{flavour} 1.3 config: submit->ready {seconds:.2f} s")

    # the job ends by itself (its server process dies): the hub's poll notices it
    t0 = time.monotonic()
    os.killpg(job["pid"], 15)  # the job's whole process group: script and server
    # like a scheduler's KillWait: SIGKILL what has not ended 15 s after SIGTERM (a rare slow or stuck
    # server shutdown, seen under load, is not what this test is about; it is logged when it happens)
    deadline = time.monotonic() + 15
    while fakesched.jobs(fake_cluster)[job["id"]]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.25)
    if fakesched.jobs(fake_cluster)[job["id"]]["state"] == "running":
        print(f"{flavour} 1.3 config: job still running 15 s after SIGTERM; sent SIGKILL")
        try:
            os.killpg(job["pid"], 9)
        except ProcessLookupError:
            pass
    ok = hub.wait_stopped("alice", timeout=30)
    if not ok:  # say what the fake cluster and the tools showed, for the log
        qstat = subprocess.run(["sudo", "-u", "alice", "env", f"PATH={bindir}:/usr/bin:/bin", "qstat", "-x",
                                f"{job['id']}.fakeserver"], capture_output=True, text=True, timeout=30)
        print("fake jobs:", fakesched.jobs(fake_cluster), "\nqstat -x:", qstat.stdout[-1500:], qstat.stderr[-500:])
    assert ok, hub.log_tail()
    print(f"{flavour} 1.3 config: end noticed in {time.monotonic() - t0:.1f} s")
    assert fakesched.jobs(fake_cluster)[job["id"]]["state"] != "running"


# ------------------------------------------------------------------ issue 25: site-shaped configs on real Slurm
SITES = Path(__file__).parent.parent / "compat13" / "sites"


def site_config(name, extra=""):
    """The hub's config: the site's file loaded as it is (load_subconfig, as a site splits its
    config), then only what this machine needs (poll intervals for a quick test)."""
    return (
        f"load_subconfig({str(SITES / (name + '_config.py'))!r})\n"
        "c.SlurmSpawner.startup_poll_interval = 0.25\nc.Spawner.poll_interval = 2\n" + extra
    )


def post_form_until_ready(hub, session, form, data, user="alice", timeout=180):
    """POST the spawn form (with the page's _xsrf) and wait until the server is ready; returns the
    seconds from the post to ready."""
    xsrf = re.search(r'_xsrf=([^"&]+)', form.text) or re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    t0 = time.monotonic()
    r = session.post(f"{hub.url}/hub/spawn/{user}", data=dict(data, _xsrf=xsrf.group(1) if xsrf else ""),
                     allow_redirects=False, timeout=120)
    assert r.status_code in (302, 303), (r.status_code, r.text[:500])
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        model = hub.server_model(user)
        if model and model.get("ready"):
            break
        time.sleep(0.25)
    assert hub.server_model(user)["ready"], hub.log_tail()
    return time.monotonic() - t0


def procs_of(user, marker):
    """(proc folder, argv words) of the user's processes whose command line contains ``marker``."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if any(marker in w for w in words):
            yield proc, words


def job_argv_of(user, marker):
    """argv of the user's processes whose command line contains ``marker`` (the job's server)."""
    return [words for _, words in procs_of(user, marker)]


def test_site_slurm_config_spawns_on_real_slurm(slurm, hubs):
    """tests/compat13/sites/slurm_reqs_config.py as a site runs it: its own script, req_* resources,
    a multi-line prologue, sudo exec_prefix. The job gets what the script asked for."""
    hub = hubs(site_config("slurm_reqs")).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    assert "Partition=debug" in out and "TimeLimit=00:10:00" in out and "Comment=jupyterhub" in out, out
    assert hub.user_request("alice", "api").status_code == 200
    print(f"site slurm_reqs: submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_gone(job_id)


def test_site_string_cmd_with_argument_starts_on_real_slurm(slurm, hubs):
    """c.Spawner.cmd = "<path>/jupyterhub-singleuser --FileContentsManager.delete_to_trash=False" (one
    string): the job starts, and its server got the option as its own argument."""
    hub = hubs(site_config("string_cmd")).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice")
    assert model and model["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    servers = job_argv_of("alice", "--FileContentsManager.delete_to_trash=False")
    assert servers, "no server process of alice has the option"
    assert any(w.endswith("/jupyterhub-singleuser") for argv in servers for w in argv), servers
    assert all("--FileContentsManager.delete_to_trash=False" in argv for argv in servers), servers
    assert hub.user_request("alice", "api").status_code == 200
    print(f"site string_cmd: submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_gone(job_id)


def test_site_form_subclass_form_keys_spawn_and_raw_rest_keys_are_refused(slurm, hubs):
    """The centre's subclass (its own form yields queue, runtime, other): a form post spawns with
    {other} in the job; the same keys sent raw through the REST API are refused with 400."""
    extra = "c.CentreSpawner.startup_poll_interval = 0.25\n"
    hub = hubs(site_config("form_subclass", extra)).start()
    hub.ensure_user("alice")
    r = hub.api("POST", "/users/alice/server", json={"queue": "debug", "runtime": "00:10:00", "other": "p1"})
    assert r.status_code == 400 and "other" in r.text, (r.status_code, r.text[:300])
    session = hub.login_session("alice")
    form = session.get(f"{hub.url}/hub/spawn/alice", timeout=60)
    assert 'name="other"' in form.text, form.text[:500]
    seconds = post_form_until_ready(hub, session, form, {"queue": "debug", "runtime": "1", "other": "proj42"})
    job_id = job_id_of(hub, "alice")
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    assert "Comment=project:proj42" in out and "Partition=debug" in out and "TimeLimit=01:00:00" in out, out
    print(f"site form_subclass: form post->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_gone(job_id)


def test_13_query_template_through_a_real_login_node_parses_as_in_13(slurm, hubs, login_node, no_etc_slurm):
    """1.3's quoting through an ssh exec_prefix (issue 25 item 6): a query template written for the
    login node's shell (``-o '%T\\ %B'``) reaches it as 1.3 sent it, so squeue gets ``%T %B``;
    the hub is not a Slurm client, so every command goes through the real sshd."""
    key, sshd = login_node
    prefix = (
        f"ssh -i {key.key} -p {sshd.port} -o UserKnownHostsFile={key.known_hosts} -o StrictHostKeyChecking=yes "
        "-o BatchMode=yes jhpclogin@127.0.0.1 sudo -u {username}"
    )
    config = SLURM_BASE + f"c.SlurmSpawner.exec_prefix = {prefix!r}\n" + (
        "c.SlurmSpawner.batch_query_cmd = r\"squeue -h -j {job_id} -o '%T\\ %B'\"\n"
    )
    hub = hubs(config)
    hub.command_prefix = no_etc_slurm
    hub.start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("alice")["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    queries = [c for c in sshd.commands() if " squeue -h -j " in f" {c}"]
    assert queries, sshd.commands()
    # what the login node's shell received: the 1.3 text, parsed there once (no literal backslash left)
    assert all(c.endswith(f"squeue -h -j {job_id} -o %T\\ %B") for c in queries), queries
    print(f"1.3 query template over ssh: submit->ready {seconds:.2f} s ({len(queries)} queries)")
    t0 = time.monotonic()
    slurmtools.cancel([job_id])
    assert hub.wait_stopped("alice", timeout=60), hub.log_tail()
    print(f"1.3 query template over ssh: job end noticed in {time.monotonic() - t0:.1f} s")


def job_environ_of(user, marker):
    """The environment of the user's process whose argv contains ``marker`` (read as root)."""
    for proc, _ in procs_of(user, marker):
        try:
            pairs = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)
    return None


def test_site_batch_script_hook_spawns_with_its_exports_on_real_slurm(slurm, hubs):
    """tests/compat13/sites/batch_script_hook_config.py: the subclass's _get_batch_script adds export
    lines (a value with a space) and a footer; the job runs what the hook returned."""
    hub = hubs(site_config("batch_script_hook", "c.HookedSlurmSpawner.startup_poll_interval = 0.25\n")).start()
    r, seconds = hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("alice")["ready"], hub.log_tail()
    job_id = job_id_of(hub, "alice")
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True,
                            timeout=30).stdout
    assert "export SITE_NAME='example cluster'" in script and script.endswith("# submitted by the site's hub\n"), script
    env = job_environ_of("alice", "jupyterhub-singleuser")
    assert env and env.get("SITE_NAME") == "example cluster" and env.get("SITE_SUPPORT") == "hpc-help@example.org"
    print(f"site batch_script_hook: submit->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_gone(job_id)


def test_site_profiles_4tuple_spawns_the_chosen_slurm_profile_on_real_slurm(slurm, hubs):
    """tests/compat13/sites/profiles_4tuple_config.py (wrapspawner 1.0 4-tuples): the form offers the
    three profiles; choosing the 1-core Slurm profile submits a job with that profile's resources."""
    hub = hubs(site_config("profiles_4tuple")).start()
    hub.ensure_user("alice")
    session = hub.login_session("alice")
    form = session.get(f"{hub.url}/hub/spawn/alice", timeout=60)
    assert form.status_code == 200 and all(f'value="{k}"' in form.text for k in ("local", "slurm1c", "slurm2g"))
    seconds = post_form_until_ready(hub, session, form, {"profile": "slurm1c"})
    job_id = job_id_of(hub, "alice")
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    assert "Partition=debug" in out and "TimeLimit=01:00:00" in out and "MinMemoryNode=1G" in out, out
    assert hub.user_request("alice", "api").status_code == 200
    print(f"site profiles_4tuple: form post->ready {seconds:.2f} s (job {job_id})")
    assert hub.stop_server("alice")
    assert wait_gone(job_id)
