"""Test clusters made of real machines in namespaces (scripts/cluster/), for the e2e tests.

``start(name)`` brings a cluster up (idempotent: scripts/cluster/cluster.sh keeps a healthy
running one; the roots are built once per machine in JHPC_CLUSTER_CACHE) and returns a
:class:`Cluster` describing it. ``slurm_targets()`` lists the Slurm versions this machine has
(the host's, and each cached root's) for option checks that need no controller.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
SCRIPTS = CHECKOUT / "scripts" / "cluster"
CACHE = Path(os.environ.get("JHPC_CLUSTER_CACHE", "/var/cache/jupyterhub-hpc/clusters"))
SUITES = {"current": "sid", "lts": "trixie", "condor": "condor"}


def available() -> tuple[bool, str]:
    """Whether clusters can be built and run here (root, debootstrap, overlayfs, ip netns)."""
    if os.geteuid() != 0:
        return False, "clusters need root (network namespaces, mounts)"
    for tool in ("debootstrap", "ip", "nsenter", "unshare", "chroot"):
        if not shutil.which(tool):
            return False, f"{tool} missing (apt-get install debootstrap iproute2 util-linux)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        subprocess.run(["modprobe", "overlay"], capture_output=True)
        if "overlay" not in Path("/proc/filesystems").read_text():
            return False, "no overlayfs in this kernel"
    return True, ""


def root(suite: str) -> Path:
    """The suite's root file system, built (once, cached) by scripts/cluster/build-root.sh."""
    out = subprocess.run(["bash", str(SCRIPTS / "build-root.sh"), suite], capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"build-root.sh {suite} failed: {out.stderr.strip()[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Cluster:
    name: str
    hub_ip: str
    hub_ip6: str
    hub_key: str
    nodes: list[str]
    addr: dict[str, str] = field(default_factory=dict)
    addr6: dict[str, str] = field(default_factory=dict)
    holder: dict[str, str] = field(default_factory=dict)

    def run(self, machine: str, argv: list[str], user: str | None = None, timeout: float = 60,
            check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        """argv in ``machine`` (its network, hostname and root), as root or as ``user``."""
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        full = ["bash", str(SCRIPTS / "cluster.sh"), "exec", self.name, machine, *argv]
        out = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and out.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} on {self.name}/{machine} exited {out.returncode}: "
                               f"{(out.stderr or out.stdout).strip()[-1000:]}")  # fmt: skip
        return out

    def jobs(self, user: str | None = None) -> list[tuple[str, str, str]]:
        """(job id, state, node list) of every job the controller still lists (all states)."""
        argv = ["squeue", "-h", "-t", "all", "-o", "%i %T %N"] + (["-u", user] if user else [])
        out = self.run("ctl", argv).stdout
        return [tuple((line.split() + ["", ""])[:3]) for line in out.splitlines() if line.strip()]

    def live_jobs(self, user: str | None = None) -> list[tuple[str, str, str]]:
        return [j for j in self.jobs(user) if j[1] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]

    def ssh_prefix(self, known_hosts: str, ipv6: bool = False) -> str:
        """exec_prefix for the hub: ssh to the login node as the user, with the cluster's hub key."""
        login = self.addr6["login"] if ipv6 else self.addr["login"]
        return (f"ssh -i {self.hub_key} -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
                f"-o UserKnownHostsFile={known_hosts} -o ConnectTimeout=5 {{username}}@{login}")  # fmt: skip


def start(name: str) -> Cluster:
    """Bring cluster ``name`` up (building what is missing) and describe it."""
    out = subprocess.run(["bash", str(SCRIPTS / "cluster.sh"), "start", name], capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"cluster.sh start {name} failed: {(out.stderr or out.stdout).strip()[-2000:]}")
    return describe(name)


def describe(name: str) -> Cluster:
    out = subprocess.run(["bash", str(SCRIPTS / "cluster.sh"), "env", name], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"cluster {name} is not up: {out.stderr.strip()}")
    env = dict(re.findall(r"^(\w+)=(.*)$", out.stdout, re.M))
    cluster = Cluster(
        name=name,
        hub_ip=env["JHPC_CLUSTER_HUB_IP"],
        hub_ip6=env["JHPC_CLUSTER_HUB_IP6"],
        hub_key=env["JHPC_CLUSTER_HUB_KEY"],
        nodes=env["JHPC_CLUSTER_NODES"].strip("'").split(),
    )
    for key, value in env.items():
        for prefix, target in (("JHPC_CLUSTER_ADDR6_", cluster.addr6), ("JHPC_CLUSTER_ADDR_", cluster.addr),
                               ("JHPC_CLUSTER_HOLDER_", cluster.holder)):  # fmt: skip
            if key.startswith(prefix):
                target[key[len(prefix):]] = value
                break
    return cluster


# ------------------------------------------------------------------ option checks per version
PARSE_CONF = """\
# parse-only check: a controller nobody runs, so sbatch/squeue stop right after parsing options
ClusterName=parsecheck
SlurmctldHost=parsecheck(127.0.0.1)
SlurmctldPort=9
SelectType=select/cons_tres
GresTypes=gpu
# give up on the absent controller at once (defaults retry for 18 s per command)
MessageTimeout=1
SlurmctldTimeout=1
TCPTimeout=1
NodeName=pn1 CPUs=1
PartitionName=debug Nodes=pn1 Default=YES
"""

# what a command prints once its options were accepted and it tried to reach the controller
# (or, for --clusters, the accounting database that names the clusters)
CONTACT_FAILED = re.compile(
    r"Unable to contact slurm controller|Problem talking to database",
    re.I,
)


@dataclass
class SlurmTarget:
    label: str
    argv_prefix: list[str]
    confdir: Path

    def run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        full = [*self.argv_prefix, *argv]
        env = dict(os.environ, SLURM_CONF=str(self.confdir / "slurm.conf"))
        if self.argv_prefix:
            env["SLURM_CONF"] = "/etc/slurm/slurm.conf"
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SQUEUE_")) and key != "SLURM_CONF":
                env.pop(key)
        return subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=60, env=env)


def slurm_targets(confdir: Path) -> list[SlurmTarget]:
    """The Slurm clients this machine has: the host's, and the sid/trixie roots' (chroot, with
    ``confdir`` bind-mounted on their /etc/slurm in a private mount namespace)."""
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "slurm.conf").write_text(PARSE_CONF)
    targets = []
    if shutil.which("sbatch"):
        targets.append(SlurmTarget("host", [], confdir))
    for name, suite in (("lts", "trixie"), ("current", "sid")):
        r = root(suite)
        # sh -c SCRIPT sh CONFDIR ROOT CMD...: $1 confdir, $2 root, then the command
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                  'mount --bind "$1" "$2/etc/slurm" && r="$2" && shift 2 && exec chroot "$r" "$@"',
                  "parse-check", str(confdir), str(r)]  # fmt: skip
        targets.append(SlurmTarget(f"{name} ({suite})", prefix, confdir))
    return targets


def slurm_version(target: SlurmTarget) -> str:
    out = target.run(["sbatch", "--version"])
    return out.stdout.strip()


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="jhpc-cluster-"))


# ------------------------------------------------------------------ this version's outputs, parsed
def parsed_views(cluster: Cluster, job_ids: list[str], user: str = "alice") -> dict:
    """Run the package's own status, session-card and partition queries on the cluster's login node
    as ``user`` (as the hub does over ssh) and parse the answers with the package's parsers."""
    from jupyterhub.objects import Hub
    from types import SimpleNamespace

    from batchspawner.commands.runner import split_command
    from batchspawner.schedulers.slurm import MultiSlurmSpawner

    owner = SimpleNamespace(name=user, escaped_name=user, url=f"/user/{user}/", base_url="/",
                            public_url=lambda *a, **k: "", spawners={}, server=None, kind="user")  # fmt: skip
    spawner = MultiSlurmSpawner(user=owner, hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"))
    variables = spawner.command_vars(job_ids[0]) | {"job_ids": ",".join(job_ids)}
    views = {}
    status = cluster.run("login", split_command(spawner.batch_status_cmd, **variables), user=user, check=False)
    views["status"] = spawner.parse_batch_status(status.returncode, status.stdout, status.stderr, job_ids)
    details = cluster.run("login", split_command(spawner.batch_details_cmd, **variables), user=user, check=False)
    views["details"] = spawner.parse_job_details(details.returncode, details.stdout, details.stderr)
    views["raw"] = {"details": details.stdout + details.stderr}
    views.update(form_facts(cluster, user, views["raw"]))
    return views


def form_facts(cluster: Cluster, user: str, raw: dict) -> dict:
    """The spawn form's partition facts as the package gathers them (batchspawner.polling.cluster.ClusterInfo:
    ``scontrol show partition -o``, ``sinfo``, ``sacctmgr``), its commands run on the cluster's
    login node as ``user``; each command's answer is kept in ``raw`` (for failure messages)."""
    import asyncio

    from batchspawner.polling.cluster import ClusterInfo
    from batchspawner.commands.runner import CommandError, CommandRunner

    class Recording(CommandRunner):
        async def run(self, argv, **kw):
            try:
                result = await super().run(argv, **kw)
            except CommandError as e:
                raw[argv[0]] = f"exit {e.returncode}: {e.stdout}{e.stderr}"
                raise
            raw[argv[0]] = result.stdout + result.stderr
            return result

    prefix = ["bash", str(SCRIPTS / "cluster.sh"), "exec", cluster.name, "login", "runuser", "-u", user, "--"]
    info = ClusterInfo(runner=Recording(prefix=prefix, timeout=60))

    async def gather():
        await info.refresh()
        return await info.user_accounts(user)

    accounts = asyncio.run(gather())
    return {"partitions": info.partitions, "accounts": accounts,
            "form": {name: info.describe(name) for name in info.partitions}}  # fmt: skip


# ------------------------------------------------------------------ a hub on a cluster (e2e modules)
# the head of a ProfilesSpawner hub's config for cluster tests (cluster_hub formats it): named
# servers, quick polls and status rounds, 30 min jobs; a module adds its profiles
PROFILES_HUB = """
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.spawner_class = 'profiles'
c.JupyterHub.allow_named_servers = True
c.Spawner.poll_interval = 2
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.status_interval = 2
c.SlurmSpawner.req_runtime = '00:30:00'
"""


def cluster_hub(cluster: Cluster, config: str, workdir: Path, **fmt):
    """A hub (tests/hubharness.Hub, not started yet) that reaches ``cluster`` through its login node.

    ``config`` is formatted with the cluster's ``hub_ip``, its ssh ``prefix`` (known hosts kept in
    ``workdir``), the nodes' ``resolver`` and ``fmt``; the hub gets its own proxy token."""
    import secrets

    from hubharness import Hub

    token = secrets.token_hex(16)
    text = config.format(hub_ip=cluster.hub_ip, prefix=cluster.ssh_prefix(str(Path(workdir) / "known_hosts")),
                         resolver={n: cluster.addr[n] for n in cluster.nodes}, **fmt)  # fmt: skip
    hub = Hub(workdir, text, env={"CONFIGPROXY_AUTH_TOKEN": token})
    hub.proxy_token = token
    return hub


def finish_hub(hub, log_name: str, clusters=(), user: str | None = None, only=None, cancel=None) -> None:
    """Stop ``hub``, keep its log as test-artifacts/hub-logs/``log_name``.log, then cancel what is still
    alive on ``clusters`` (Slurm: ``scancel`` on the controller): the jobs of ``user`` (None: all),
    only those in ``only`` when given. ``cancel``: another way to clean up (HTCondor), called instead."""
    from hubharness import ARTIFACTS

    try:
        hub.stop()
    finally:
        ARTIFACTS.joinpath("hub-logs").mkdir(parents=True, exist_ok=True)
        if hub.log_path.exists():
            shutil.copy(hub.log_path, ARTIFACTS / "hub-logs" / f"{log_name}.log")
        if cancel is not None:
            cancel()
        for cluster in clusters:
            for job_id, _, _ in cluster.live_jobs(user):
                if only is None or job_id in only:
                    cluster.run("ctl", ["scancel", job_id], check=False)
