"""Hubs, configs and scheduler shims for the benchmark (one hub per scenario and package).

Both packages get the same treatment: their scheduler commands (every configurable
SlurmSpawner command whose default starts with sbatch/squeue/scancel, read from the
class in that package's own venv) are pointed at absolute-path shims that log one
line per call and exec the real tool (or at the fake scheduler). The shims come
first on the hub's PATH too, for commands run without sudo. sudo resets PATH, hence
absolute paths.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import hubharness  # noqa: E402
from hubharness import Hub  # noqa: E402

from .benchlib import TOOLS, job_ids_from_log  # noqa: E402

REAL = {"sbatch": "/usr/bin/sbatch", "squeue": "/usr/bin/squeue", "scancel": "/usr/bin/scancel"}

SHIM = """#!/bin/sh
echo "{tool} $*" >> {log}
exec {real} "$@"
"""
# sbatch's shim also logs the job id it printed, so the benchmark can cancel every job it caused
SBATCH_SHIM = """#!/bin/sh
out=$({real} "$@"); rc=$?
echo "sbatch $out $(date +%s.%N)" >> {log}
[ -n "$out" ] && printf '%s\\n' "$out"
exit $rc
"""

TRAITS_SNIPPET = r"""
import importlib, json, sys
mod, cls = sys.argv[1].rsplit('.', 1)
klass = getattr(importlib.import_module(mod), cls)
tools = set(sys.argv[2].split(','))
out = {}
for name, trait in klass.class_traits(config=True).items():
    dv = trait.default_value
    if isinstance(dv, str) and dv.split()[:1] and dv.split()[0] in tools:
        out[name] = dv
    elif isinstance(dv, (list, tuple)) and dv and isinstance(dv[0], str) and dv[0] in tools:
        out[name] = list(dv)
print(json.dumps({'traits': out, 'file': importlib.import_module(mod).__file__}))
"""


# put in front of the job's wrapper (both packages): stamps when the job's command starts
STAMP_SHIM = """#!/bin/sh
echo "$SLURM_JOB_ID $(date +%s.%N)" >> {log}
exec "$@"
"""


class Package:
    """One side of the comparison: its venv, spawner class and the config it needs to work."""

    def __init__(self, key, label, venv_bin, spawner_class, import_path, real_server_config):
        self.key = key
        self.label = label
        self.venv_bin = Path(venv_bin)
        self.spawner_class = spawner_class
        self.import_path = import_path
        self.real_server_config = real_server_config
        self._command_traits = None

    def command_traits(self):
        """{trait: default} of the scheduler commands, read from the package in its own venv."""
        if self._command_traits is None:
            r = subprocess.run(
                [str(self.venv_bin / "python"), "-I", "-c", TRAITS_SNIPPET, self.import_path, ",".join(TOOLS)],
                capture_output=True, text=True, timeout=60, check=True, cwd="/",
            )
            data = json.loads(r.stdout.strip().splitlines()[-1])
            self._command_traits, self.module_file = data["traits"], data["file"]
        return self._command_traits

    def stack(self):
        """{package: version} of the single-user stack in this venv (bench/stack.py)."""
        r = subprocess.run([str(self.venv_bin / "python"), "-m", "bench.stack"], capture_output=True, text=True,
                           timeout=60, check=True, cwd=str(HERE.parent))
        words = r.stdout.split()
        return dict(zip(words[::2], words[1::2]))

    def source(self):
        """Where the package was imported from, and its git commit when that is a checkout."""
        self.command_traits()
        r = subprocess.run(["git", "-C", os.path.dirname(self.module_file), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=30)
        return os.path.dirname(self.module_file), r.stdout.strip() if r.returncode == 0 else ""

    def command_config(self, bindir):
        lines = []
        for name, value in sorted(self.command_traits().items()):
            if isinstance(value, str):
                first, _, rest = value.partition(" ")
                value = f"{bindir}/{first}" + (f" {rest}" if rest else "")
            else:
                value = [f"{bindir}/{value[0]}"] + value[1:]
            lines.append(f"c.SlurmSpawner.{name} = {value!r}")
        return "\n".join(lines)


def packages(ours_bin, bs13_bin):
    return {
        "bs13": Package(
            "bs13", "batchspawner 1.3.0", bs13_bin, "batchspawner.SlurmSpawner", "batchspawner.SlurmSpawner",
            # needed to work at all: sudo resets PATH, so the job must get absolute paths
            f"c.SlurmSpawner.batchspawner_singleuser_cmd = '{bs13_bin}/batchspawner-singleuser'\n"
            f"c.Spawner.cmd = ['{bs13_bin}/jupyterhub-singleuser']\n",
        ),
        "ours": Package(
            "ours", "jupyterhub-hpc", ours_bin, "slurm", "batchspawner.schedulers.slurm.SlurmSpawner", "",
        ),
    }


class RunDir:
    """The benchmark's scratch tree (readable by job users): shims, fakes, count logs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.shim_bin = self.root / "shims"
        self.count_log = self.root / "count.log"
        self.fake_bin = self.root / "fake"
        self.fake_log = self.fake_bin / "count.log"
        self.fakeserver = self.root / "fakeserver.py"
        self.stamp = self.root / "stamp"
        self.stamp_log = self.root / "stamps.log"
        self._install()

    def _install(self):
        self.shim_bin.mkdir(exist_ok=True)
        for tool, real in REAL.items():
            path = self.shim_bin / tool
            text = SBATCH_SHIM if tool == "sbatch" else SHIM
            path.write_text(text.format(tool=tool, log=self.count_log, real=real))
            path.chmod(0o755)
        _world_writable(self.count_log)
        self.stamp.write_text(STAMP_SHIM.format(log=self.stamp_log))
        self.stamp.chmod(0o755)
        _world_writable(self.stamp_log)
        shutil.copy(HERE / "fakes" / "fakeserver.py", self.fakeserver)
        self.fakeserver.chmod(0o755)
        state = self.fake_bin / "state"
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.fake_bin, 0o755)
        os.chmod(state, 0o777)
        shutil.copy(HERE / "fakes" / "fake_sched.py", self.fake_bin / "fake_sched.py")
        (self.fake_bin / "fake_sched.py").chmod(0o755)
        for tool in TOOLS:
            link = self.fake_bin / tool
            if not link.exists():
                link.symlink_to("fake_sched.py")
        for name in ("jobs.table", "counter", "lock", "shared_port"):
            _world_writable(state / name)
        _world_writable(self.fake_log)

    def reset_fake(self, shared_port):
        state = self.fake_bin / "state"
        for name in ("jobs.table", "counter"):
            (state / name).write_text("")
        (state / "shared_port").write_text(str(shared_port))

    def log_lines(self, fake=False):
        path = self.fake_log if fake else self.count_log
        return path.read_text().splitlines()

    def sbatch_times(self) -> dict[str, float]:
        """{job id: epoch seconds when sbatch returned} from the sbatch shim's log."""
        out = {}
        for line in self.log_lines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "sbatch":
                try:
                    out[parts[1].split(";")[0]] = float(parts[2])
                except ValueError:
                    pass
        return out

    def job_start_times(self) -> dict[str, float]:
        """{job id: epoch seconds when the job's command started} from the stamp shim's log."""
        out = {}
        for line in self.stamp_log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.setdefault(parts[0], float(parts[1]))
        return out

    def all_job_ids(self):
        return job_ids_from_log(self.log_lines())


def _world_writable(path):
    path.touch()
    os.chmod(path, 0o666)


class VenvHub(Hub):
    """tests/hubharness.Hub, but running jupyterhub from a given venv with the shims first on PATH."""

    def __init__(self, workdir, extra_config, venv_bin, shim_bin, env=None):
        super().__init__(workdir, extra_config, env=env)
        self.venv_bin = Path(venv_bin)
        self.shim_bin = Path(shim_bin)

    def start(self, timeout: float = 90):
        cfg = self.write_config()
        env = dict(os.environ)
        env["PATH"] = f"{self.shim_bin}:{self.venv_bin}:{env.get('PATH', os.defpath)}"
        env["JHPC_TEST_SERVICE_TOKEN"] = self.token
        env.update(self.extra_env)
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(self.venv_bin / "jupyterhub"), "-f", str(cfg)],
            cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.api_url, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"hub did not answer within {timeout} s:\n{self.log_tail()}")


# what batchspawner.hub.hubdb.sqlite_wal() does, written out: the 1.3.0 venv does not have our package
SQLITE_WAL = """
import sqlite3 as _sqlite3
from sqlalchemy import event as _event
from sqlalchemy.engine import Engine as _Engine

@_event.listens_for(_Engine, "connect")
def _wal(conn, record):
    if isinstance(conn, _sqlite3.Connection):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()
"""


def hub_config(pkg: Package, bindir, poll_interval, fake_server=None, stamp=None):
    """Config for one package: its spawner, named servers, shimmed commands, maybe the fake server."""
    cfg = f"""
c.JupyterHub.spawner_class = {pkg.spawner_class!r}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.Spawner.poll_interval = {poll_interval!r}
{pkg.command_config(bindir)}
"""
    cfg += _shared_settings()
    if fake_server:
        cfg += f"c.SlurmSpawner.batchspawner_singleuser_cmd = {('/usr/bin/python3 ' + str(fake_server))!r}\n"
        if pkg.key == "bs13":
            cfg += f"c.Spawner.cmd = ['{pkg.venv_bin}/jupyterhub-singleuser']\n"
    else:
        cfg += pkg.real_server_config
        if stamp:  # the same stamp shim in front of each package's own wrapper
            wrapper = pkg.venv_bin / "batchspawner-singleuser"
            cfg += f"c.SlurmSpawner.batchspawner_singleuser_cmd = {f'{stamp} {wrapper}'!r}\n"
            if pkg.key == "ours":
                cfg += f"c.SlurmSpawner.hub_bin_dir = {str(pkg.venv_bin)!r}\n"
    return cfg


# The storm's floor: a spawner that does no work of its own, so a storm through it costs only
# what JupyterHub itself does per spawn (API request, token, database rows, proxy route, the
# HTTP check of the server). Its servers are the benchmark's one shared HTTP server.
NOOP_SPAWNER = """
from jupyterhub.spawner import Spawner as _Spawner


class BenchNoopSpawner(_Spawner):
    _running = False

    async def start(self):
        self._running = True
        return ("127.0.0.1", {port})

    async def poll(self):
        return None if self._running else 0

    async def stop(self, now=False):
        self._running = False


c.JupyterHub.spawner_class = BenchNoopSpawner
"""


def noop_hub_config(port, poll_interval):
    """JupyterHub alone: the same hub settings as hub_config(), the no-op spawner."""
    cfg = f"""
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.Spawner.poll_interval = {poll_interval!r}
""" + NOOP_SPAWNER.format(port=int(port))
    return cfg + _shared_settings()


def _shared_settings():
    """Hub settings applied to every hub of the run, whatever its spawner."""
    cfg = ""
    if os.environ.get("JHPC_BENCH_SQLITE_WAL") == "1":
        cfg += SQLITE_WAL
    if os.environ.get("JHPC_BENCH_HUB_EXTRA"):
        with open(os.environ["JHPC_BENCH_HUB_EXTRA"]) as f:
            cfg += "\n" + f.read() + "\n"
    return cfg


class NodeCgroup:
    """The compute node's processes (slurmd, so every job it starts) in a CPU cgroup of low
    weight for the run, so the jobs get the CPU the hub leaves: on this test bed they run on the
    hub's own cores; at a site they run on other machines. Both packages (and the floor) run
    under the same setting. cgroup v1 (cpu.shares, default 1024) or v2 (cpu.weight, default 100)."""

    NAME = "jhpc-bench-node"

    def __init__(self, shares: int, pid_file="/run/slurmd.pid"):
        self.shares, self.pid_file, self.path, self.root = shares, pid_file, None, None
        self.note = "off"

    def __enter__(self):
        if not self.shares:
            return self
        try:
            pid = int(open(self.pid_file).read().split()[0])
            for root, knob, scale in (("/sys/fs/cgroup/cpu", "cpu.shares", 1),
                                      ("/sys/fs/cgroup", "cpu.weight", 100 / 1024)):
                if os.path.exists(os.path.join(root, knob if root.endswith("cpu") else "cgroup.controllers")):
                    path = os.path.join(root, self.NAME)
                    os.makedirs(path, exist_ok=True)
                    value = max(1, int(self.shares * scale))
                    with open(os.path.join(path, knob), "w") as f:
                        f.write(str(value))
                    with open(os.path.join(path, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                    self.path, self.root = path, root
                    self.note = (f"slurmd (pid {pid}) and its jobs in cgroup {path}, {knob} {value} "
                                 f"(the hub's: {1024 if knob == 'cpu.shares' else 100})")
                    break
            else:
                self.note = "not set: no cgroup cpu controller here"
        except (OSError, ValueError) as e:
            self.note = f"not set: {e}"
        return self

    def __exit__(self, *exc):
        if not self.path:
            return False
        try:
            pids = open(os.path.join(self.path, "cgroup.procs")).read().split()
            for pid in pids:  # slurmd and any job left: back to the root group
                try:
                    with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                        f.write(pid)
                except OSError:
                    pass
            os.rmdir(self.path)
        except OSError:
            pass
        return False


def job_stdout(job_id) -> str:
    """The job's output file, as Slurm knows it (wherever the package put it)."""
    r = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30)
    m = re.search(r"\bStdOut=(\S+)", r.stdout)
    return m.group(1) if m else ""


def live_job_ids(users=("alice", "bob")) -> set[str]:
    r = subprocess.run(
        [REAL["squeue"], "-h", "-u", ",".join(users), "-o", "%i"], capture_output=True, text=True, timeout=30
    )
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def cancel_jobs(job_ids, wait=60.0):
    """Cancel the given jobs (ours only) and wait until Slurm no longer lists them as live."""
    job_ids = set(job_ids)
    live = live_job_ids() & job_ids
    if live:
        subprocess.run([REAL["scancel"], *sorted(live)], capture_output=True, timeout=60)
    deadline = time.monotonic() + wait
    while live and time.monotonic() < deadline:
        time.sleep(0.5)
        live = live_job_ids() & job_ids
    return live


def remove_job_logs(job_ids, users=("alice", "bob")):
    """Delete the job output files our jobs left in the users' homes (both packages' default path)."""
    for user in users:
        home = Path(os.path.expanduser(f"~{user}"))
        for job_id in job_ids:
            try:
                (home / f"jupyterhub_slurmspawner_{job_id}.log").unlink()
            except (FileNotFoundError, PermissionError):
                pass


def shell_quote(words):
    return shlex.join(words)
