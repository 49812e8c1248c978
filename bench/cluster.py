"""Spawn latency on a test cluster (scripts/cluster/), the hub off the nodes, every scheduler
command over ssh to the cluster's login node: jupyterhub-hpc against batchspawner 1.3.0.

    bash bench/run.sh --cluster current [--cluster-n 5]

The cluster must be up (``bash scripts/cluster/cluster.sh start current``; started here when
it is not). The hub runs on this host from each package's own venv, its API on the bridge
address; the jobs run on the nodes from the nodes' own Python:

- ``ours``: jupyterhub-hpc's MultiSlurmSpawner, the node venv /opt/jhpc/venv (built with the
  cluster; it holds this checkout's job side).
- ``bs13``: batchspawner 1.3.0's MultiSlurmSpawner with its default template, as shipped.
- ``bs13-template``: 1.3.0 with only its template fixed (plain ``--get-user-env``).
- ``bs13-site``: 1.3.0 with what a site must add to run it over ssh on Slurm >= 25.05: the fixed
  template, its squeue query quoted once more for the login node's shell, and the hub's variables
  for the job written into the script (1.3.0 hands them to sbatch in its own process environment,
  which ssh does not carry to the login node), through a subclass in the hub's config. Its job side is a venv of 1.3.0 built
  here in the nodes' running roots (/opt/jhpc-bs13/venv, the node root's python3, the same
  single-user stack as /opt/jhpc/venv); it lasts until the cluster is restarted.

Both packages get the same settings otherwise (each package's defaults, the same node-name to
address map, the same user, one spawn at a time), and N spawns after one warm-up spawn each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .benchlib import median, render_table, spawn_failure_message
from .hubs import VenvHub, remove_job_logs
from .scenarios import log

import clustertools  # noqa: E402  (tests/ is on sys.path through bench.hubs)

REPO = Path(__file__).resolve().parent.parent
USER = "carol"  # not a user the cluster e2e tests spawn as, so their jobs and ours never mix
NODE_OURS = "/opt/jhpc/venv"
NODE_BS13 = "/opt/jhpc-bs13/venv"

BASE = """
c.JupyterHub.hub_ip = {hub_ip!r}
c.JupyterHub.spawner_class = 'batchspawner.MultiSlurmSpawner'
c.JupyterHub.allow_named_servers = True
c.Spawner.poll_interval = 30
c.SlurmSpawner.exec_prefix = {prefix!r}
c.MultiSlurmSpawner.daemon_resolver = {resolver!r}
"""

OURS = BASE + "c.SlurmSpawner.batchspawner_singleuser_cmd = '" + NODE_OURS + "/bin/batchspawner-singleuser'\n"

BS13 = BASE + f"""
c.SlurmSpawner.batchspawner_singleuser_cmd = '{NODE_BS13}/bin/batchspawner-singleuser'
c.Spawner.cmd = ['{NODE_BS13}/bin/jupyterhub-singleuser']
"""

# What a site has to add to run 1.3.0 over ssh on Slurm >= 25.05 (written here, not copied:
# the template is 1.3.0's own default, read from its class at hub start and changed in one place)
BS13_TEMPLATE = """
from batchspawner import MultiSlurmSpawner as _Multi

_template = _Multi.class_traits()['batch_script'].default_value
assert '--get-user-env=L' in _template and '{{prologue}}' in _template
c.SlurmSpawner.batch_script = _template.replace('--get-user-env=L', '--get-user-env')
"""

# ... and what else 1.3.0 needs over ssh: its commands are shell strings run by the hub's shell,
# then ssh hands their words to the login node's shell, which splits them again (so squeue's
# -o '%T %B' arrives as two words), and the hub's variables for the job (API URL, token...)
# travel in the environment of its sbatch process, which ssh does not forward: a subclass
# writes them into the script
BS13_SITE = BS13_TEMPLATE + """
import shlex as _shlex


class SiteSshSlurmSpawner(_Multi):
    async def _get_batch_script(self, **subvars):
        env = self.get_env()
        subvars['site_exports'] = '\\n'.join(
            f'export {k}={_shlex.quote(v)}' for k, v in sorted(env.items()) if k.startswith(('JUPYTERHUB_', 'JPY_')))
        return await super()._get_batch_script(**subvars)


c.JupyterHub.spawner_class = SiteSshSlurmSpawner
c.SlurmSpawner.batch_script = c.SlurmSpawner.batch_script.replace('{{prologue}}', '{{site_exports}}\\n{{prologue}}')
c.SlurmSpawner.batch_query_cmd = \"squeue -h -j {job_id} -o \\"'%T %B'\\"\"
"""

VARIANTS = {
    # key: (column, config formatted with the cluster's facts, config appended as it is)
    "ours": ("jupyterhub-hpc (MultiSlurmSpawner, ssh exec_prefix)", OURS, ""),
    "bs13": ("batchspawner 1.3.0, default template", BS13, ""),
    "bs13-template": ("batchspawner 1.3.0, template fixed (plain --get-user-env)", BS13, BS13_TEMPLATE),
    "bs13-site": ("batchspawner 1.3.0, template fixed + query quoted for ssh + env in the script", BS13,
                  BS13_SITE),
}


def machine_root(cluster, machine) -> Path:
    return clustertools.CACHE / "run" / cluster.name / "m" / machine / "merged"


def node_pins(cluster) -> str:
    """The single-user stack of the nodes' own venv as pip pins (bench/stack.py run by it)."""
    root = machine_root(cluster, cluster.nodes[0])
    with open(REPO / "bench" / "stack.py") as src:
        r = subprocess.run(["chroot", str(root), f"{NODE_OURS}/bin/python", "-", "--pins"], stdin=src,
                           capture_output=True, text=True, timeout=120, check=True)
    return r.stdout.strip()


def ensure_bs13_on_nodes(cluster) -> str:
    """1.3.0's job side in every node's running root, with the node venv's stack; its pins."""
    pins = node_pins(cluster)
    want = f"batchspawner==1.3.0 {pins}"
    first = machine_root(cluster, cluster.nodes[0])
    stamp = first / NODE_BS13.lstrip("/") / "bench-pins"
    if not (stamp.exists() and stamp.read_text() == want):
        log(f"building {NODE_BS13} in {cluster.name}/{cluster.nodes[0]} ({want})")
        shutil.rmtree(first / NODE_BS13.lstrip("/"), ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}  # the host's wheel folder
        subprocess.run(["chroot", str(first), "python3", "-m", "venv", NODE_BS13], check=True, timeout=300)
        r = subprocess.run(["chroot", str(first), f"{NODE_BS13}/bin/pip", "install", "-q", "--no-cache-dir",
                            "--disable-pip-version-check", *want.split()], env=env,
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"pip in {cluster.nodes[0]}'s root failed: {r.stderr[-2000:]}")
        stamp.write_text(want)
    for node in cluster.nodes[1:]:
        other = machine_root(cluster, node) / NODE_BS13.lstrip("/")
        if not ((other / "bench-pins").exists() and (other / "bench-pins").read_text() == want):
            shutil.rmtree(other, ignore_errors=True)
            other.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(first / NODE_BS13.lstrip("/")), str(other)], check=True, timeout=300)
    return pins


def live_jobs(cluster) -> set[str]:
    return {j[0] for j in cluster.live_jobs(USER)}


def spawn_series(cluster, key, hub_config, venv_bin, workdir, n, warmup, timeout):
    """``warmup`` + ``n`` spawns one at a time, each stopped before the next; times of the ``n``."""
    hub = VenvHub(workdir / f"hub-{key}", hub_config, venv_bin, workdir / "no-shims")
    before = live_jobs(cluster)
    out = {"times": [], "failures": [], "warmup": None}
    hub.start()
    try:
        hub.ensure_user(USER)
        for i in range(warmup + n):
            name = f"c{i:02d}"
            lines_before = len(hub.log_text().splitlines())
            t_post = time.time()
            r = hub.api("POST", f"/users/{USER}/servers/{name}", json={}, timeout=timeout)
            t_ready, message = None, ""
            deadline = time.monotonic() + timeout
            if r.status_code in (201, 202):
                while time.monotonic() < deadline:
                    model = hub.server_model(USER, name)
                    if model and model.get("ready"):
                        t_ready = time.time()
                        break
                    if model is None or not model.get("pending"):
                        break
                    time.sleep(0.05)
            else:
                message = (r.json() if r.headers.get("content-type", "").startswith("application/json")
                           else {}).get("message", r.text[:300])
            if t_ready is None:
                message = spawn_failure_message(hub.log_text().splitlines()[lines_before:]) or message or (
                    f"not ready within {timeout:.0f} s")
            label = "warm-up" if i < warmup else f"{i - warmup + 1}/{n}"
            if t_ready is None:
                log(f"{key}: spawn {label} FAILED after {time.time() - t_post:.1f} s: {message}")
                out["failures"].append(message)
            else:
                log(f"{key}: spawn {label} ready in {t_ready - t_post:.2f} s")
                if i >= warmup:
                    out["times"].append(t_ready - t_post)
                elif out["warmup"] is None:
                    out["warmup"] = t_ready - t_post
            hub.stop_server(USER, name)
            for job_id in live_jobs(cluster) - before:  # a job its spawner left behind
                cluster.run("ctl", ["scancel", job_id], check=False)
    finally:
        hub.stop()
        for job_id in live_jobs(cluster) - before:
            cluster.run("ctl", ["scancel", job_id], check=False)
        # the job output files 1.3.0's template leaves in the user's home (the shared /home)
        ids = re.findall(r"(?:Job submitted\. output: |Job )(\d+)", hub.log_text())
        remove_job_logs(set(ids), users=(USER,))
    return out


def cell(res) -> str:
    if res is None:
        return "not measured"
    t, fails = res["times"], res["failures"]
    if not t:
        msgs = sorted(set(fails))
        return f"all {len(fails)} spawns failed: " + "; ".join(f"`{m}`" for m in msgs)
    text = f"{median(t):.2f} s (min {min(t):.2f}, max {max(t):.2f}, n={len(t)})"
    if fails:
        text += f"; {len(fails)} failed: " + "; ".join(f"`{m}`" for m in sorted(set(fails)))
    return text


def main(opts, bs13_bin: Path, ours_bin: Path) -> int:
    ok, why = clustertools.available()
    if not ok:
        log(f"cluster bench cannot run here: {why}")
        return 2
    t0 = time.monotonic()
    # a cluster already up is used as it is (other runs may be using it: never restarted here)
    up = subprocess.run(["bash", str(REPO / "scripts" / "cluster" / "cluster.sh"), "status", opts.cluster],
                        capture_output=True, timeout=120).returncode == 0
    cluster = clustertools.describe(opts.cluster) if up else clustertools.start(opts.cluster)
    workdir = Path(opts.workdir or f"/tmp/jhpc-bench-cluster-{int(time.time())}")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "no-shims").mkdir(exist_ok=True)
    os.chmod(workdir, 0o755)
    prefix = cluster.ssh_prefix(str(workdir / "known_hosts"))
    resolver = {node: cluster.addr[node] for node in cluster.nodes}
    fmt = dict(hub_ip=cluster.hub_ip, prefix=prefix, resolver=resolver)
    version = cluster.run("login", ["sbatch", "--version"]).stdout.strip()
    keys = [k for k in opts.cluster_variants.split(",") if k]
    pins = None
    if any(k.startswith("bs13") for k in keys):
        pins = ensure_bs13_on_nodes(cluster)
        log(f"node stacks: {NODE_OURS} and {NODE_BS13} both {pins}")
    results = {}
    for key in keys:
        label, template, extra = VARIANTS[key]
        venv_bin = bs13_bin if key.startswith("bs13") else ours_bin
        # the default template fails at sbatch: no warm-up needed to show it
        warmup = 0 if key == "bs13" else 1
        try:
            results[key] = spawn_series(cluster, key, template.format(**fmt) + extra, venv_bin, workdir,
                                        opts.cluster_n, warmup, opts.spawn_timeout)
        except Exception as e:  # noqa: BLE001
            log(f"{key} FAILED: {type(e).__name__}: {str(e)[:2000]}")
            results[key] = None
    print()
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; cluster {cluster.name} "
          f"({version}; nodes {', '.join(cluster.nodes)}, 1 CPU each; login {cluster.addr['login']}); "
          f"hub on this host at {cluster.hub_ip}, every scheduler command over ssh to the login node; "
          f"run took {(time.monotonic() - t0) / 60:.1f} min")
    if pins:
        print(f"node single-user stack (both venvs on the nodes): {pins}")
    rows = [[f"spawn latency POST->ready on `{cluster.name}`, median of {opts.cluster_n} after one warm-up"]
            + [cell(results.get(k)) for k in keys]]
    print(render_table(rows, ["measure"] + [VARIANTS[k][0] for k in keys]))
    if opts.smoke:
        return 0 if results.get("ours") and results["ours"]["times"] else 1
    return 0
