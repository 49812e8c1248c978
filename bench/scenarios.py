"""The measurements. Each function starts its own hub(s), measures, stops them and
cancels every job they caused (tracked through the sbatch shim's log)."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from .benchlib import (
    count_calls,
    cpu_seconds,
    first_after,
    median,
    parse_node_cpus,
    parse_proc_stat,
    percentile,
    route_target,
    spawn_phases,
)
from .hubs import VenvHub, cancel_jobs, hub_config, job_stdout, noop_hub_config, remove_job_logs

USERS = ("alice", "bob")
# storms: the API latency that counts is the one while the spawns are in flight; a storm that
# drags on (a job that starts late) would otherwise dilute its p99 with idle seconds
BUSY_WINDOW = 20.0


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, rundir, opts):
        self.run = rundir
        self.opts = opts
        self.hubs = []
        self._n = 0

    # ------------------------------------------------------------ hubs and cleanup
    def hub(self, pkg, poll_interval, fake_server=None, bindir=None, stamp=False, env=None):
        self._n += 1
        cfg = hub_config(pkg, bindir or self.run.shim_bin, poll_interval, fake_server,
                         stamp=self.run.stamp if stamp else None)
        hub = VenvHub(self.run.root / f"hub{self._n:02d}-{pkg.key}", cfg, pkg.venv_bin, self.run.shim_bin, env=env)
        self.hubs.append(hub)
        t0 = time.monotonic()
        hub.start()
        log(f"{pkg.label}: hub {hub.workdir.name} up in {time.monotonic() - t0:.1f} s")
        for user in USERS:
            hub.ensure_user(user)
        return hub

    def wait_restored(self, hub, after_line, timeout):
        """Wait for JupyterHub's "Initialized N spawners" (its startup check of every restored
        server, which goes on in the background after the API answers); how long it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            lines = hub.log_text().splitlines()[after_line:]
            for line in lines:
                m = re.search(r"Initialized (\d+) spawners in ([\d.]+) seconds", line)
                if m:
                    return f"in {float(m.group(2)):.0f} s ({m.group(1)} servers)"
            time.sleep(2)
        return f"NOT within {timeout:.0f} s (the window below includes that check)"

    def finish(self, hub):
        hub.stop()
        ids = self.run.all_job_ids()
        left = cancel_jobs(ids)
        remove_job_logs(ids)
        if left:
            log(f"WARNING: jobs still live after cancel: {sorted(left)}")

    def cleanup_all(self):
        for hub in self.hubs:
            try:
                hub.stop()
            except Exception as e:  # noqa: BLE001
                log(f"could not stop {hub.workdir}: {e}")
        ids = self.run.all_job_ids()
        cancel_jobs(ids)
        remove_job_logs(ids)

    # ------------------------------------------------------------ helpers
    def spawn_many(self, hub, targets, timeout):
        """POST all (user, server) targets at once; wait until each is ready or gone."""
        def post(target):
            user, name = target
            try:
                return hub.api("POST", f"/users/{user}/servers/{name}", json={}, timeout=timeout).status_code
            except requests.RequestException as e:
                return str(e)

        t0 = time.monotonic()
        ready, failed = set(), set()
        self.last_ready_times = ready_times = []
        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            futures = {t: pool.submit(post, t) for t in targets}
            while time.monotonic() - t0 < timeout and len(ready) + len(failed) < len(targets):
                time.sleep(0.5)
                t_get = time.monotonic()
                models = servers_by_target(hub)
                if time.monotonic() - t_get > 2:
                    log(f"  (the hub took {time.monotonic() - t_get:.1f} s to list the servers at "
                        f"+{t_get - t0:.1f} s; {len(ready)} ready before)")
                for t, fut in futures.items():
                    if t in ready or t in failed:
                        continue
                    model = models.get(t)
                    if model and model.get("ready"):
                        ready.add(t)
                        ready_times.append(time.monotonic() - t0)
                    elif fut.done() and (fut.result() not in (201, 202) or model is None):
                        failed.add(t)
            settled = time.monotonic() - t0
        return ready, failed, settled

    def window(self, hub, rounds, poll_interval, fake=False):
        """Scheduler calls and hub CPU over `rounds` poll intervals."""
        before = len(self.run.log_lines(fake))
        stat0 = parse_proc_stat(open(f"/proc/{hub.proc.pid}/stat").read())
        time.sleep(rounds * poll_interval)
        stat1 = parse_proc_stat(open(f"/proc/{hub.proc.pid}/stat").read())
        counts = count_calls(self.run.log_lines(fake)[before:])
        own0, kids0 = cpu_seconds(stat0)
        own1, kids1 = cpu_seconds(stat1)
        return {"counts": counts, "rounds": rounds, "own": (own1 - own0) / rounds, "kids": (kids1 - kids0) / rounds}

    # ------------------------------------------------------------ scenarios
    def scheduler_side(self, pkg):
        """N running servers (tiny fake single-user server, real Slurm); restart with restart_n on the way."""
        o = self.opts
        hub = self.hub(pkg, o.poll_interval, fake_server=self.run.fakeserver)
        out = {}
        try:
            have = 0
            checkpoints = sorted(set(o.ns) | {o.restart_n})
            for target in checkpoints:
                tot, alloc = parse_node_cpus(subprocess.run(
                    ["scontrol", "show", "node"], capture_output=True, text=True, timeout=30).stdout)
                need = target - have
                if need > tot - alloc - 2:
                    log(f"{pkg.label}: N={target} skipped: needs {need} more CPUs, Slurm has {tot - alloc} free")
                    for n in [x for x in checkpoints if x >= target]:
                        out[("n", n)] = f"not run: node has {tot} CPUs, {tot - alloc} free"
                    break
                names = [(USERS[i % 2], f"f{i:03d}") for i in range(have, target)]
                for k in range(0, len(names), o.batch):
                    ready, failed, secs = self.spawn_many(hub, names[k:k + o.batch], o.spawn_timeout)
                    if failed or len(ready) < len(names[k:k + o.batch]):
                        raise RuntimeError(f"{pkg.label}: {len(failed)} fake servers failed to spawn:\n"
                                           + hub.log_tail(30))
                have = target
                log(f"{pkg.label}: {have} fake servers running")
                if target in o.ns:
                    if target:  # the new servers' first rounds pass first: status, and their
                        time.sleep(max(o.poll_interval, 20))  # first session details (every 15 s)
                    out[("n", target)] = self.window(hub, o.rounds, o.poll_interval)
                    log(f"{pkg.label}: N={target}: {out[('n', target)]}")
                if target == o.restart_n:
                    runs = [self.restart(hub, have) for _ in range(o.restarts)]
                    out["restart"] = {"kept": min(r["kept"] for r in runs), "of": have,
                                      "api_s": [r["api_s"] for r in runs]}
                    log(f"{pkg.label}: restart x{o.restarts}: {out['restart']}")
        finally:
            self.finish(hub)
        return out

    def restart(self, hub, n):
        t_stop = time.monotonic()
        hub.stop()
        stop_s = time.monotonic() - t_stop
        t0 = time.monotonic()
        hub.start()
        api_s = time.monotonic() - t0
        time.sleep(2)
        models = servers_by_target(hub)
        kept = 0
        for (user, name), model in models.items():
            if model.get("ready") and hub.user_request(user, "api", server=name).status_code == 200:
                kept += 1
        log(f"  restart: stopped in {stop_s:.2f} s, API answered {api_s:.2f} s after the start")
        return {"kept": kept, "of": n, "api_s": api_s, "stop_s": stop_s}

    def latency(self, pkg):
        """POST -> ready with the real jupyterhub-singleuser, one at a time, with the phases
        of each spawn stamped the same way for both packages (see benchlib.spawn_phases)."""
        hub = self.hub(pkg, 30, stamp=True)
        times, failures, phases = [], 0, []
        try:
            for i in range(self.opts.latency_n):
                name = f"lat{i:02d}"
                t_post = time.time()
                r = hub.api("POST", f"/users/alice/servers/{name}", json={}, timeout=self.opts.spawn_timeout)
                t_ready = None
                deadline = time.monotonic() + self.opts.spawn_timeout
                while r.status_code in (201, 202) and time.monotonic() < deadline:
                    model = hub.server_model("alice", name)
                    if model and model.get("ready"):
                        t_ready = time.time()
                        break
                    if model is None or not model.get("pending"):
                        break
                    time.sleep(0.05)
                if t_ready is None:
                    failures += 1
                else:
                    times.append(t_ready - t_post)
                    phases.append(self._phases(hub, t_post, t_ready))
                hub.stop_server("alice", name)
        finally:
            self.finish(hub)
        log(f"{pkg.label}: latency {['%.2f' % t for t in times]} failures {failures}")
        log(f"{pkg.label}: phases {phases}")
        return {"times": times, "failures": failures, "phases": phases}

    def _phases(self, hub, t_post, t_ready):
        sbatch = {j: t for j, t in self.run.sbatch_times().items() if t >= t_post}
        if not sbatch:
            return {}
        job_id = min(sbatch, key=sbatch.get)
        t_job = self.run.job_start_times().get(job_id)
        hub_lines = hub.log_text().splitlines()
        t_report = first_after(hub_lines, "POST /hub/api/batchspawner", t_post)
        t_listen = None
        out_path = job_stdout(job_id)
        try:
            job_lines = open(out_path, errors="replace").read().splitlines() if out_path else []
        except OSError:
            job_lines = []
        t_listen = first_after(job_lines, "is running at", t_post)
        return spawn_phases(t_post, sbatch[job_id], t_job, t_listen, t_report, t_ready)

    def end_to_route(self, pkg):
        """Job end -> proxy route gone: start `ends` real servers (bench users, as a site runs
        them: poll_interval as given, 30 s by default, every other setting the package's
        default), then `scancel` their jobs as root one every `end_spacing` s, and time each
        until the proxy (its own REST API, GET /api/routes every 0.1 s) no longer routes to that
        server, bounded at `end_timeout` s. Each end has its own clock; the hub polls each
        server on its own timer, so spaced ends do not share a poll."""
        o = self.opts
        token = secrets.token_hex(24)  # the proxy's API token: in the hub's env, not in a file or argv
        hub = self.hub(pkg, o.end_poll_interval, env={"CONFIGPROXY_AUTH_TOKEN": token})
        proxy = f"http://127.0.0.1:{hub.proxy_api_port}/api/routes"
        headers = {"Authorization": f"token {token}"}

        def routes():
            r = requests.get(proxy, headers=headers, timeout=10)
            r.raise_for_status()
            return r.json()

        try:
            targets = [(USERS[i % 2], f"e{i:02d}") for i in range(o.ends)]
            ready = set()
            for k in range(0, len(targets), o.end_batch):
                got, failed, secs = self.spawn_many(hub, targets[k:k + o.end_batch], o.spawn_timeout)
                ready |= got
                log(f"{pkg.label}: {len(got)}/{len(targets[k:k + o.end_batch])} servers ready in {secs:.1f} s")
            if not ready:
                raise RuntimeError(f"{pkg.label}: no server became ready:\n" + hub.log_tail(30))
            time.sleep(5)  # let the spawns' own follow-ups pass (first polls, session details)
            models = servers_by_target(hub)
            table = routes()
            ends = []
            for t in targets:
                job = str(((models.get(t) or {}).get("state") or {}).get("job_id") or "")
                if t in ready and job and route_target(table, *t):
                    ends.append((t, job))
                else:
                    log(f"{pkg.label}: {t} not measured: ready {t in ready}, job {job!r}, "
                        f"route {route_target(table, *t)!r}")
            times, not_gone, pending, scancel_failed = {}, [], {}, []
            reports_before = hub.log_text().count("job end reported")
            todo = list(ends)
            next_cancel = time.monotonic()
            while todo or pending:
                if todo and time.monotonic() >= next_cancel:
                    t, job = todo.pop(0)
                    t0 = time.monotonic()
                    r = subprocess.run(["/usr/bin/scancel", job], capture_output=True, text=True, timeout=30)
                    next_cancel = t0 + o.end_spacing
                    if r.returncode != 0:  # no end to time (e.g. slurmctld restarted by someone else)
                        scancel_failed.append(t)
                        log(f"{pkg.label}: scancel {job} failed, not measured: {r.stderr.strip()}")
                        continue
                    pending[t] = (t0, job)
                table = routes()
                now = time.monotonic()
                for t, (t0, job) in list(pending.items()):
                    if route_target(table, *t) is None:
                        times[t] = now - t0
                        del pending[t]
                        log(f"{pkg.label}: job {job} ({t[0]}/{t[1]}) cancelled -> route gone {times[t]:.2f} s")
                    elif now - t0 > o.end_timeout:
                        not_gone.append(t)
                        del pending[t]
                        log(f"{pkg.label}: job {job} ({t[0]}/{t[1]}): route still there after {o.end_timeout:g} s")
                time.sleep(0.1)
            reports = hub.log_text().count("job end reported") - reports_before
        finally:
            self.finish(hub)
        out = {"times": [times[t] for t, _ in ends if t in times], "not_gone": len(not_gone),
               "of": o.ends, "measured": len(ends) - len(scancel_failed), "reports": reports,
               "scancel_failed": len(scancel_failed)}
        log(f"{pkg.label}: end -> route gone: {out}")
        return out

    def storm(self, pkg, size, tiny=False):
        """`size` concurrent spawns, each package's default settings: of the real single-user
        server, or (``tiny``) of bench/fakes/fakeserver.py, so the hub's own cost is measured."""
        hub = self.hub(pkg, 30, fake_server=self.run.fakeserver if tiny else None)
        try:
            return self._storm(hub, size, pkg.label)
        finally:
            self.finish(hub)

    def storm_floor(self, size, venv_bin):
        """JupyterHub alone: the same storm through a spawner that does no work (no job, no
        scheduler), so what is left is JupyterHub's own cost per spawn on this machine."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _OK)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._n += 1
        hub = VenvHub(self.run.root / f"hub{self._n:02d}-noop", noop_hub_config(server.server_address[1], 30),
                      venv_bin, self.run.shim_bin)
        self.hubs.append(hub)
        hub.start()
        for user in USERS:
            hub.ensure_user(user)
        try:
            return self._storm(hub, size, "JupyterHub alone")
        finally:
            hub.stop()
            server.shutdown()

    def _storm(self, hub, size, label):
        samples, stop = [], threading.Event()
        timeline = []  # (seconds since the POSTs, latency) of each probe GET

        def probe():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    requests.get(hub.api_url, timeout=60)
                except requests.RequestException:
                    pass
                samples.append(time.monotonic() - t0)
                timeline.append((t0 - t_posts, samples[-1]))
                time.sleep(0.05)

        t_posts = time.monotonic()
        thread = threading.Thread(target=probe, daemon=True)
        try:
            thread.start()
            targets = [(USERS[i % 2], f"s{i:03d}") for i in range(size)]
            before = len(self.run.log_lines())
            sched0 = main_thread_schedstat(hub.proc.pid)
            t_posts = time.monotonic()
            ready, failed, secs = self.spawn_many(hub, targets, self.opts.storm_timeout)
            sched1 = main_thread_schedstat(hub.proc.pid)
            ready_times = list(self.last_ready_times)
            calls = count_calls(self.run.log_lines()[before:])
        finally:
            stop.set()
            thread.join(70)
        res = {"ready": len(ready), "of": size, "secs": secs, "p99": percentile(samples, 99) if samples else None,
               "max": max(samples) if samples else None,
               "samples": len(samples), "timed_out": len(ready) + len(failed) < size, "calls": calls,
               "ready_times": ready_times}
        busy = [d for t, d in timeline if t < BUSY_WINDOW]
        res["busy_p99"] = percentile(busy, 99) if busy else None
        res["busy_samples"] = len(busy)
        if sched0 and sched1:
            # the hub's main thread (its event loop): CPU it used, and time it was runnable but
            # waited for a CPU (other processes on the node: the scheduler tools, the jobs)
            res["loop_cpu_s"] = (sched1[0] - sched0[0]) / 1e9
            res["loop_runq_s"] = (sched1[1] - sched0[1]) / 1e9
            log(f"{label}: storm {size}: the hub's event-loop thread used {res['loop_cpu_s']:.2f} s of CPU "
                f"and waited {res['loop_runq_s']:.2f} s for a CPU in {secs:.1f} s")
        slow = sorted(timeline, key=lambda x: -x[1])[:5]
        log(f"{label}: storm {size}: slowest API GETs (sent at +s: took s): "
            + ", ".join(f"+{t:.1f}: {d:.2f}" for t, d in sorted(slow)))
        log(f"{label}: storm {size}: {res}")
        return res

    def fake_scale(self, pkg):
        """Many servers on the FAKE scheduler (table-driven squeue), all served by one shared HTTP server."""
        o = self.opts
        server = ThreadingHTTPServer(("127.0.0.1", 0), _OK)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.run.reset_fake(server.server_address[1])
        hub = self.hub(pkg, o.fake_poll_interval, fake_server=self.run.fakeserver, bindir=self.run.fake_bin)
        out = {}
        try:
            have = 0
            for target in sorted(o.fake_ns):
                if pkg.key == "bs13" and target > o.fake_max_bs13:
                    out[target] = (f"not run: at {o.fake_max_bs13} servers 1.3.0 already makes one squeue "
                                   "per server per round")
                    continue
                if target > o.fake_seed_above:
                    # too many to spawn through the API on 2 cores: seed the database, restart
                    hub.stop()
                    t0 = time.monotonic()
                    self.seed(pkg, hub, target - have, server.server_address[1], have)
                    log_lines = len(hub.log_text().splitlines())
                    try:
                        hub.start(timeout=900)
                    except RuntimeError as e:
                        out[target] = f"failed: the hub did not come back with {target} servers"
                        log(f"{pkg.label}: {out[target]}: {str(e)[-1500:]}")
                        break
                    log(f"{pkg.label}: {target} servers seeded; hub up after {time.monotonic() - t0:.0f} s")
                    # JupyterHub answers after init_spawners_timeout (10 s) and goes on checking
                    # every restored server in the background: measure after that, not during it
                    restored = self.wait_restored(hub, log_lines, timeout=900)
                    log(f"{pkg.label}: every restored server checked {restored} after the start")
                else:
                    names = [(USERS[i % 2], f"x{i:05d}") for i in range(have, target)]
                    for k in range(0, len(names), o.fake_batch):
                        ready, failed, secs = self.spawn_many(hub, names[k:k + o.fake_batch], o.spawn_timeout)
                        if failed:
                            raise RuntimeError(f"{pkg.label}: {len(failed)} fake-scheduler spawns failed:\n"
                                               + hub.log_tail(30))
                have = target
                log(f"{pkg.label}: {have} servers on the fake scheduler")
                time.sleep(o.fake_poll_interval)  # let the restored servers' first rounds pass
                out[target] = self.window(hub, o.rounds, o.fake_poll_interval, fake=True)
                log(f"{pkg.label}: fake N={target}: {out[target]}")
        finally:
            hub.stop()
            server.shutdown()
        return out


def _seed(self, pkg, hub, n, port, have):
    state = self.run.fake_bin / "state"
    start_id = 5_000_000 + have
    subprocess.run(
        [str(pkg.venv_bin / "python"), "-m", "bench.seed", f"sqlite:///{hub.workdir}/hub.sqlite", str(n),
         str(port), ",".join(USERS), str(start_id), str(state / "jobs.table"), "s"],
        check=True, timeout=600, cwd=str(Path(__file__).resolve().parent.parent),
    )


Bench.seed = _seed


class _OK(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main_thread_schedstat(pid):
    """(CPU ns, run-queue wait ns) of a process's main thread (/proc/PID/schedstat), or None."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            cpu, wait, _ = f.read().split()
        return int(cpu), int(wait)
    except (OSError, ValueError):
        return None


def servers_by_target(hub):
    models = {}
    for user in USERS:
        r = hub.api("GET", f"/users/{user}", timeout=60)
        if r.status_code == 200:
            for name, model in (r.json().get("servers") or {}).items():
                models[(user, name)] = model
    return models


def cpu_count_text():
    return os.cpu_count()


def slurm_version():
    r = subprocess.run(["sinfo", "--version"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def mem_total():
    text = open("/proc/meminfo").read()
    kb = int(re.search(r"MemTotal:\s+(\d+)", text).group(1))
    return f"{kb / 1024 / 1024:.1f} GiB"
