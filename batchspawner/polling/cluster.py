"""What the cluster offers now, for the spawn form: Slurm partitions, their limits and free cores, accounts.

:class:`ClusterInfo` gathers, in a background task every ``interval`` seconds (and never
while a form renders):

- ``scontrol show partition -o``: each partition's state, MaxTime, MaxCPUsPerNode,
  MaxMemPerNode, node count;
- ``sinfo -h -o '%R|%a|%C|%G'``: CPUs allocated/idle/other/total per partition now, and its
  GRES (``gpu:a100:4(S:0-1)``: GPU types and how many one node has);
- per user, on first need and then cached: ``sacctmgr -nP show assoc user=NAME format=account,qos``
  (the user's associations: accounts and the QOS each allows). Without an accounting database
  (``sacctmgr`` says so, as on the test cluster here) they are "unknown": the form then offers only
  the user's default account and QOS; this is logged once.

The form shows each partition in words ("jhpc-small: 2 of 2 cores free now; at most 2 cores
per node and 4 h per job"), and :meth:`ClusterInfo.check` refuses, on the server, requests
above the chosen partition's maximum (HTTP 400 naming the field) before anything is submitted.
Until the first answer arrives nothing is known and nothing is refused (the scheduler still is
the judge at submission).

One ClusterInfo per cluster and identity: the hub's own Slurm under the key ``"slurm"`` (as the
hub's user, refreshed for the hub's life), a cluster reached over ssh under its own key with the
runner its spawner's status query uses (:mod:`wrapspawner.factsource` decides which serves a profile).

Another cluster of a multi-cluster client (``cluster``: a profile's ``req_cluster``, Slurm's
``--clusters``): every query names it, ``scontrol --clusters=NAME show partition -o``, ``sinfo
--clusters=NAME -o ...`` and ``sacctmgr ... cluster=NAME``. The name is checked first
(:func:`cluster_name`: letters, digits, ``_`` and ``-``, one cluster, never ``all``) and goes into
one argv word. Slurm's own format (26.05, src/sinfo/sinfo.c and src/scontrol/scontrol.c): without
``-h``, ``sinfo -M NAME`` prints ``CLUSTER: NAME`` before its column titles and partitions, so the
sinfo query leaves ``-h`` out and its answer counts only under that line naming this cluster
(:func:`cluster_table`); ``scontrol -M NAME`` prints no such line (one prints, it must name this
cluster). Another cluster's answer, none, garbage or an error: the round fails, no facts (the form
says they are not known, nothing is refused, the scheduler judges at submission).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

from batchspawner.polling.base import SharedPoller
from batchspawner.commands.runner import CommandError, CommandRunner
from batchspawner.core.durations import human_seconds, parse_duration

log = logging.getLogger("batchspawner.polling.cluster")


@dataclass
class Partition:
    name: str
    up: bool = True
    max_time: int | None = None  # seconds
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None
    nodes: int = 0
    cpus_idle: int | None = None
    cpus_total: int | None = None
    gpus: dict = field(default_factory=dict)  # GPU type ("" untyped) -> most one node has

    @property
    def cpus_free(self) -> int | None:
        """Idle cores a job here can use now (MaxCPUsPerNode caps what one partition may take)."""
        if self.cpus_idle is None:
            return None
        if self.max_cpus_per_node is not None and self.nodes:
            return min(self.cpus_idle, self.max_cpus_per_node * self.nodes)
        return self.cpus_idle

    @property
    def cpus_usable(self) -> int | None:
        if self.max_cpus_per_node is not None and self.nodes:
            return min(self.cpus_total or 10**9, self.max_cpus_per_node * self.nodes)
        return self.cpus_total

    def describe(self) -> str:
        if not self.up:
            return f"{self.name}: down (jobs wait until it is back)"
        words = []
        if self.cpus_free is not None and self.cpus_usable:
            words.append(f"{self.cpus_free} of {self.cpus_usable} cores free now")
        limits = []
        if self.max_cpus_per_node is not None:
            limits.append(f"{self.max_cpus_per_node} cores per node")
        if self.max_mem_per_node_mb is not None:
            limits.append(f"{self.max_mem_per_node_mb // 1024 if self.max_mem_per_node_mb >= 1024 else self.max_mem_per_node_mb}"
                          f"{'G' if self.max_mem_per_node_mb >= 1024 else 'M'} memory per node")
        if self.max_time:
            limits.append(f"{human_seconds(self.max_time)} per job")
        if limits:
            words.append("at most " + ", ".join(limits))
        if not self.max_time:
            words.append("no time limit")
        return f"{self.name}: " + "; ".join(words)


def _limit(value: str) -> int | None:
    if not value or value.upper() in ("UNLIMITED", "NONE", "N/A"):
        return None
    return int(value) if value.isdigit() else None


def parse_scontrol_partitions(text: str) -> dict[str, Partition]:
    """``scontrol show partition -o`` (one partition per line, KEY=VALUE words)."""
    out = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        name = fields.get("PartitionName")
        if not name:
            continue
        mem = fields.get("MaxMemPerNode", "")
        out[name] = Partition(
            name=name,
            up=fields.get("State", "UP") == "UP",
            max_time=parse_duration(fields.get("MaxTime", "")),
            max_cpus_per_node=_limit(fields.get("MaxCPUsPerNode", "")),
            max_mem_per_node_mb=_limit(mem.rstrip("M")) if mem.endswith("M") or mem.isdigit() else None,
            nodes=int(fields.get("TotalNodes", "0") or 0),
        )
    return out


def parse_sinfo_cpus(text: str) -> dict[str, tuple[int, int]]:
    """``sinfo -h -o '%R|%a|%C[|%G]'`` -> {partition: (idle cpus, total cpus)} (CPUs as A/I/O/T).

    With ``%G`` sinfo gives one line per partition and GRES set: their CPUs add up."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) not in (3, 4):
            continue
        cpus = parts[2].split("/")
        if len(cpus) == 4 and all(c.isdigit() for c in cpus):
            idle, total = out.get(parts[0], (0, 0))
            out[parts[0]] = (idle + int(cpus[1]), total + int(cpus[3]))
    return out


_GPU_GRES = re.compile(r"gpu(?::([A-Za-z0-9_.-]+))?:([0-9]{1,6})(?:\([^)]*\))?")


def parse_gres(text: str) -> dict[str, int]:
    """One node set's GRES (``gpu:a100:4(S:0-1),gpu:v100:2``, ``gpu:2``, ``(null)``) -> {type: count}."""
    out: dict[str, int] = {}
    for item in re.split(r",(?![^(]*\))", text.strip()):
        match = _GPU_GRES.fullmatch(item.strip())
        if match:
            kind = match.group(1) or ""
            out[kind] = out.get(kind, 0) + int(match.group(2))
    return out


def parse_sinfo_gres(text: str) -> dict[str, dict[str, int]]:
    """``sinfo -h -o '%R|%a|%C|%G'`` -> {partition: {GPU type: most GPUs of it one node has}}."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        gpus = out.setdefault(parts[0], {})
        for kind, count in parse_gres(parts[3]).items():
            gpus[kind] = max(gpus.get(kind, 0), count)
    return out


_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}")
# slurm.conf(5) ClusterName: at most 40 characters (stored lower case); one name, never a list or "all"
_CLUSTER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,39}")
_CLUSTER_LINE = re.compile(r"CLUSTER: (\S*)\s*")


def cluster_name(value) -> str:
    """``value`` if it names one Slurm cluster (letters, digits, ``_``, ``-``; not ``all``), else ValueError."""
    if not isinstance(value, str) or not _CLUSTER.fullmatch(value) or value.lower() == "all":
        raise ValueError(f"not one Slurm cluster name: {str(value)[:60]!r}")
    return value


def cluster_table(text: str, cluster: str, header_required: bool) -> str:
    """The lines of a ``--clusters=NAME`` answer under Slurm's ``CLUSTER: NAME`` line for ``cluster``.

    ``header_required`` (sinfo without ``-h``): no such line, or a table of another cluster, is
    ValueError; otherwise (scontrol) a ``CLUSTER:`` line, if any, must name ``cluster`` too. The
    column titles sinfo prints after it (``PARTITION|...``) are left out. Names compare without case
    (Slurm keeps cluster names in lower case)."""
    lines, seen = [], None
    for line in text.splitlines():
        header = _CLUSTER_LINE.fullmatch(line.strip())
        if header:
            seen = header.group(1)
            if seen.lower() != cluster.lower():
                raise ValueError(f"the answer is about cluster {seen[:40]!r}, not {cluster!r}")
            continue
        if not line.strip().startswith("PARTITION|"):
            lines.append(line)
    if header_required and seen is None:
        raise ValueError(f"no 'CLUSTER: {cluster}' line in the answer: {text.strip()[:120]!r}")
    return "\n".join(lines)


_CLUSTER_NAME_LINE = re.compile(r"^ClusterName\s*=\s*(\S+)\s*$", re.MULTILINE)


def parse_cluster_name(text: str) -> str:
    """``scontrol show config`` -> its ``ClusterName`` ("" when absent or not a plain cluster name)."""
    match = _CLUSTER_NAME_LINE.search(text or "")
    if not match:
        return ""
    try:
        return cluster_name(match.group(1))
    except ValueError:
        return ""


def parse_assoc(text: str) -> dict[str, set]:
    """``sacctmgr -nP show assoc user=NAME format=account,qos`` -> {account: {QOS it allows}}.

    Only plain names are kept (they reach a ``#SBATCH`` line): anything else is dropped."""
    out: dict[str, set] = {}
    for line in text.splitlines():
        account, _, qos = line.strip().partition("|")
        if not _PLAIN.fullmatch(account):
            continue
        out.setdefault(account, set()).update(q for q in qos.split(",") if _PLAIN.fullmatch(q))
    return out


class ClusterInfo(SharedPoller):
    """Background-refreshed cache of partitions and accounts for one cluster (see module docstring).

    Registry, clock, background loop and stop_all() from :class:`batchspawner.polling.base.SharedPoller`:
    a round at once when the loop starts, then one every ``interval`` seconds after the last."""

    name = "cluster info"
    log = log

    def __init__(self, runner=None, interval=120.0, accounts_ttl=3600.0, clock=None, env=None, label="",
                 idle_after=None, cluster=""):
        super().__init__(clock=clock)
        # "": the client's default cluster; else the one every query names (--clusters=NAME)
        self.cluster = cluster_name(cluster) if cluster else ""
        # None: refresh for the hub's life; else the task stops when nobody kicked it for this many
        # seconds (one task per user's ssh identity need not run for users who do not come back)
        self.idle_after = idle_after
        self._kicked_at = None
        self.label = label  # where it asks, for the log ("" the hub's own Slurm; "over ssh to login")
        self.runner = runner or CommandRunner(prefix=[], timeout=30)
        # None: the hub's own environment (the hub's Slurm); a cluster asked over ssh gets {} (its
        # login sets its own: wrapspawner.factsource)
        self.env = env
        self.interval = interval
        self.accounts_ttl = accounts_ttl
        self.partitions: dict[str, Partition] = {}
        self.updated_at = 0.0
        self.rounds = 0
        self._accounts: dict[str, tuple[list | None, float]] = {}
        # the default cluster's own name (scontrol show config), asked once for sacctmgr: without
        # cluster=NAME it lists the user's associations on every cluster of the accounting database
        self._local_cluster: tuple[str, float] | None = None
        self._accounting_missing_logged = False
        self._answered = None  # (loop, asyncio.Event), set after the first round (answer or failure)
        self._next_round = None  # clock time of the next background round (None: at once)

    @classmethod
    def get(cls, key="slurm", **kw) -> "ClusterInfo":
        return cls.for_key(key, **kw)

    def kick(self):
        """Start the background refresher if it is not running (never waits for it).

        A refresher that stopped unused (``idle_after``) forgets its old facts first: the next form
        waits for a fresh answer (bounded) or says they are not known, never shows stale ones."""
        now = self.clock.now()
        self._kicked_at = now
        if self.idle_after is not None and not self.running() and self.updated_at \
                and now - self.updated_at > 2 * self.interval:
            self.partitions, self.updated_at, self._answered, self._next_round = {}, 0.0, None, None
        self.start()

    def wanted(self) -> bool:
        if self.idle_after is None or self._kicked_at is None:
            return True
        return self.clock.now() - self._kicked_at < self.idle_after

    def _answered_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._answered is None or self._answered[0] is not loop:  # an Event belongs to one loop
            self._answered = (loop, asyncio.Event())
        return self._answered[1]

    async def first_answer(self, timeout: float = 5.0) -> bool:
        """Start the refresher if needed and wait (at most ``timeout`` s) for its first round.

        Only the first form after a hub start waits (one ``scontrol`` + one ``sinfo``, well under a
        second on a healthy cluster); every later render uses the cache at once. True when the
        partitions are known.
        """
        if self.updated_at:
            return True
        self.kick()
        event = self._answered_event()
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("cluster info%s: no answer from the scheduler within %.1f s; the form shows no "
                            "partition facts until it answers", self._where(), timeout)
        return bool(self.updated_at)

    def _where(self) -> str:
        return f" ({self.label})" if self.label else ""

    def due_in(self) -> float:
        return 0.0 if self._next_round is None else self._next_round - self.clock.now()

    async def background_round(self):
        try:
            await self.refresh()
        except Exception as e:  # keep the old answer; try again next round
            log.warning("cluster info query%s failed: %s", self._where(), str(e)[:200])
        finally:
            self._answered_event().set()
            self._next_round = self.clock.now() + self.interval

    async def refresh(self):
        self.rounds += 1
        if self.cluster:
            where = f"--clusters={self.cluster}"
            parts = await self.runner.run(["scontrol", where, "show", "partition", "-o"], env=self.env)
            text = cluster_table(parts.stdout, self.cluster, header_required=False)
            cpus = await self.runner.run(["sinfo", where, "-o", "%R|%a|%C|%G"], env=self.env)
            table = cluster_table(cpus.stdout, self.cluster, header_required=True)
        else:
            text = (await self.runner.run(["scontrol", "show", "partition", "-o"], env=self.env)).stdout
            table = (await self.runner.run(["sinfo", "-h", "-o", "%R|%a|%C|%G"], env=self.env)).stdout
        found = parse_scontrol_partitions(text)
        for name, (idle, total) in parse_sinfo_cpus(table).items():
            if name in found:
                found[name].cpus_idle, found[name].cpus_total = idle, total
        for name, gpus in parse_sinfo_gres(table).items():
            if name in found:
                found[name].gpus = gpus
        self.partitions = found
        self.updated_at = self.clock.now()

    def describe(self, name) -> str:
        p = self.partitions.get(name)
        return p.describe() if p else ""

    def check(self, partition: str, nprocs=None, memory_kib=None, runtime_s=None):
        """(field, rule) for the first request above ``partition``'s maximum, else None (also when unknown)."""
        p = self.partitions.get(partition or "")
        if p is None:
            return None
        if nprocs is not None and p.max_cpus_per_node is not None and nprocs > p.max_cpus_per_node:
            return "nprocs", f"is more than partition {p.name} allows (at most {p.max_cpus_per_node} cores per node)"
        if runtime_s is not None and p.max_time is not None and runtime_s > p.max_time:
            return "runtime", f"is longer than partition {p.name} allows (at most {human_seconds(p.max_time)})"
        if memory_kib is not None and p.max_mem_per_node_mb is not None and memory_kib > p.max_mem_per_node_mb * 1024:
            return "memory", f"is more than partition {p.name} allows (at most {p.max_mem_per_node_mb} MB per node)"
        return None

    async def user_accounts(self, username: str) -> list | None:
        """The user's Slurm accounts (sacctmgr), cached; None when there is no accounting database."""
        assoc = await self.user_associations(username)
        return None if assoc is None else sorted(assoc)

    async def user_associations(self, username: str) -> dict | None:
        """{account: {QOS}} of the user's associations (one ``sacctmgr`` argv, as this poller's identity,
        bounded, cached ``accounts_ttl``); None when there is no accounting database or it fails."""
        if not _PLAIN.fullmatch(username or ""):
            return None  # never an odd name on a command line, even as one argv word
        cached = self._accounts.get(username)
        if cached is not None and self.clock.now() - cached[1] < self.accounts_ttl:
            return cached[0]
        try:
            cluster = self.cluster or await self.local_cluster()
            where = [f"cluster={cluster}"] if cluster else []
            result = await self.runner.run(
                ["sacctmgr", "-nP", "show", "assoc", f"user={username}", *where, "format=account,qos"], timeout=20,
                env=self.env,
            )
            assoc = parse_assoc(result.stdout)
        except CommandError as e:
            assoc = None
            if not self._accounting_missing_logged:
                self._accounting_missing_logged = True
                log.info("no Slurm accounts to offer%s (sacctmgr: %s); account fields stay as configured",
                         self._where(), e.brief)
        self._accounts[username] = (assoc, self.clock.now())
        return assoc

    async def local_cluster(self) -> str:
        """The default cluster's name (``ClusterName`` of ``scontrol show config``), asked once and kept
        ``accounts_ttl``; "" when it cannot be learned (then sacctmgr is asked without a cluster, as
        before: on a site with one cluster in its accounting database that is the same answer)."""
        if self._local_cluster is not None and self.clock.now() - self._local_cluster[1] < self.accounts_ttl:
            return self._local_cluster[0]
        try:
            result = await self.runner.run(["scontrol", "show", "config"], timeout=20, env=self.env)
            name = parse_cluster_name(result.stdout)
        except CommandError as e:
            log.info("cluster info%s: no cluster name (scontrol show config: %s)", self._where(), e.brief)
            name = ""
        self._local_cluster = (name, self.clock.now())
        return name
