"""Benchmark jupyterhub-hpc against jupyterhub/batchspawner 1.3.0 on the real Slurm, in one run.

Run through bench/run.sh (it builds the 1.3.0 venv). Prints one table, both packages side by side.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .benchlib import fmt_calls, fmt_ends, fmt_phases, median, nth_ready, render_table
from .hubs import NodeCgroup, RunDir, packages
from .scenarios import BUSY_WINDOW, Bench, log, mem_total, slurm_version

REPO = Path(__file__).resolve().parent.parent


def ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--smoke", action="store_true",
                   help="one real spawn per package, nothing else; exit 1 if one fails (CI)")
    p.add_argument("--bs13-venv", default="/opt/jhpc-bench-bs13/venv")
    p.add_argument("--ns", type=ints, default=[0, 10, 50, 100],
                   help="running servers for the per-round counts (0: the hub's own floor)")
    p.add_argument("--restart-n", type=int, default=20)
    p.add_argument("--restarts", type=int, default=9,
                   help="hub restarts per package (the median of 9 is steadier than of 5: one restart "
                        "varies by +-0.4 s here)")
    p.add_argument("--latency-n", type=int, default=20)
    p.add_argument("--storms", type=ints, default=[30, 50])
    p.add_argument("--tiny-storms", type=ints, default=[100], help="storms of the tiny fake server (real Slurm)")
    p.add_argument("--fake-ns", type=ints, default=[1000, 10000])
    p.add_argument("--fake-seed-above", type=int, default=100,
                   help="fake sizes above this are seeded into the hub database (bench/seed.py), not spawned")
    p.add_argument("--fake-max-bs13", type=int, default=1000, help="largest fake size run for 1.3.0")
    p.add_argument("--poll-interval", type=float, default=10, help="hub poll_interval for the real-Slurm rounds")
    p.add_argument("--fake-poll-interval", type=float, default=20, help="hub poll_interval on the fake scheduler")
    p.add_argument("--rounds", type=int, default=2, help="poll rounds per measuring window")
    p.add_argument("--batch", type=int, default=10, help="concurrent spawns while filling up (real Slurm)")
    p.add_argument("--fake-batch", type=int, default=50, help="concurrent spawns while filling up (fake)")
    p.add_argument("--spawn-timeout", type=float, default=180)
    p.add_argument("--storm-timeout", type=float, default=300)
    p.add_argument("--end-to-route", action="store_true",
                   help="only 'job end -> route gone': scancel each of --ends ready servers' jobs (as root) "
                        "and time until the proxy no longer routes to it, both packages in the same run")
    p.add_argument("--ends", type=int, default=10, help="servers started, then ended, per package (--end-to-route)")
    p.add_argument("--end-batch", type=int, default=2,
                   help="servers started at once before the ends (10 real servers at once on 2 cores overran "
                        "1.3.0's http_timeout of 30 s: none became ready)")
    p.add_argument("--end-spacing", type=float, default=5,
                   help="seconds between two scancels (each end is timed on its own clock)")
    p.add_argument("--end-timeout", type=float, default=90, help="longest wait for one route to go")
    p.add_argument("--end-poll-interval", type=float, default=30,
                   help="both hubs' poll_interval for --end-to-route (30 s: JupyterHub's default, as sites run it)")
    p.add_argument("--only", default="sched,latency,storm,tiny,fake", help="comma list of scenarios (or ends)")
    p.add_argument("--packages", default="bs13,ours")
    p.add_argument("--workdir", default="")
    p.add_argument("--sqlite-wal", action="store_true",
                   help="both hubs' SQLite in WAL mode, every commit synced (batchspawner/hub/hubdb.py; the "
                        "example config's setting); default: JupyterHub's default journal")
    p.add_argument("--node-cpu-shares", type=int, default=64,
                   help="CPU weight of the compute node (slurmd and its jobs) against the hub's 1024 "
                        "(cgroup): here the jobs run on the hub's cores, at a site on other machines; "
                        "0 = leave them at the hub's weight")
    p.add_argument("--hub-config-extra", default="", metavar="FILE",
                   help="a Python file appended to every hub's config, both packages' (to profile the "
                        "hub, or to compare a hub setting on both sides)")
    p.add_argument("--cluster", default="", metavar="NAME",
                   help="only the spawn latency on test cluster NAME (scripts/cluster/, e.g. current): "
                        "the hub on this host, every command over ssh to its login node (bench/cluster.py)")
    p.add_argument("--cluster-n", type=int, default=5, help="measured spawns per variant on --cluster")
    p.add_argument("--cluster-variants", default="ours,bs13,bs13-template,bs13-site",
                   help="comma list of bench/cluster.py's VARIANTS")
    opts = p.parse_args(argv)
    if opts.sqlite_wal:
        os.environ["JHPC_BENCH_SQLITE_WAL"] = "1"
    if opts.hub_config_extra:
        os.environ["JHPC_BENCH_HUB_EXTRA"] = os.path.abspath(opts.hub_config_extra)
    if opts.quick:
        opts.ns, opts.restart_n, opts.latency_n, opts.storms = [0, 3, 6], 4, 3, [6]
        opts.fake_ns, opts.poll_interval, opts.fake_poll_interval = [50], 5, 10
        opts.tiny_storms, opts.restarts = [20], 2
    if opts.smoke:
        opts.only, opts.latency_n = "latency", 1
    if opts.end_to_route:
        opts.only = "ends"
    return opts


def jupyterhub_version() -> str:
    try:
        from importlib.metadata import version

        return version("jupyterhub")
    except Exception:  # noqa: BLE001
        return "?"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def storm_p99_cell(r):
    return (f"{r['busy_p99'] * 1000:.0f} ms ({r['busy_samples']} GETs; slowest of all {r['samples']}: "
            f"{r['max'] * 1000:.0f} ms)")


def build_rows(results, keys, opts):
    rows = []

    def row(label, fn):
        cells = []
        for key in keys:
            try:
                cells.append(fn(results[key]))
            except (KeyError, TypeError, ValueError, IndexError):
                cells.append("not measured")
        rows.append([label] + cells)

    def sched(n):
        def cell(r):
            w = r["sched"][("n", n)]
            return w if isinstance(w, str) else fmt_calls(w["counts"], w["rounds"])
        return cell

    def cpu(n, fake=False):
        def cell(r):
            w = r["fake"][n] if fake else r["sched"][("n", n)]
            if isinstance(w, str):
                return w
            total = w["own"] + w["kids"]
            text = f"{total:.2f} ({w['own']:.2f} + {w['kids']:.2f})"
            if n == 0:
                return text + ": the hub's own floor (no server)"
            floor = None if fake else r["sched"].get(("n", 0))
            if isinstance(floor, dict):
                extra = total - floor["own"] - floor["kids"]
                return text + f"; {extra / n * 1000:.2f} ms per server above the N=0 floor"
            return text + f"; {total / n * 1000:.2f} ms per server"
        return cell

    def ran(kind):
        return any(kind in results[k] for k in keys)

    for n in opts.ns if ran("sched") else ():
        row(f"scheduler calls per poll round, N={n} running (real Slurm)", sched(n))
    for n in opts.ns if ran("sched") else ():
        row(f"hub CPU s per poll round, N={n} (own + children)", cpu(n))
    for n in opts.fake_ns if ran("fake") else ():
        row(f"scheduler calls per poll round, N={n} (FAKE squeue)",
            lambda r, n=n: r["fake"][n] if isinstance(r["fake"][n], str)
            else fmt_calls(r["fake"][n]["counts"], r["fake"][n]["rounds"]))
        row(f"hub CPU s per poll round, N={n} (FAKE squeue)", cpu(n, fake=True))

    def lat(r):
        t = r["latency"]["times"]
        s = f"{median(t):.2f} s (min {min(t):.2f}, max {max(t):.2f}, n={len(t)})"
        return s + (f", {r['latency']['failures']} failed" if r["latency"]["failures"] else "")

    if ran("latency"):
        row(f"spawn latency POST->ready, median of {opts.latency_n} (real server, equal stacks)", lat)
        row("  phases, median s (submit; job start; server listening, port reported: from job start; "
        "ready after both)", lambda r: fmt_phases(r["latency"]["phases"]))

    def storm_rows(kind, sizes, label):
        if not any(kind in results[k] for k in keys):
            return
        for size in sizes:
            def both_reached(s=size):
                counts = [results[k].get(kind, {}).get(s, {}).get("ready", 0) for k in keys]
                return min(counts) if counts else 0

            row(f"{size} concurrent spawns{label}: ready", lambda r, s=size: f"{r[kind][s]['ready']}/{s}")
            k = both_reached()
            row(f"{size} concurrent spawns{label}: time to the {ordinal(k)} ready (reached by both)",
                lambda r, s=size, k=k: f"{nth_ready(r[kind][s]['ready_times'], k):.1f} s")
            half = max(1, k // 2)
            row(f"{size} concurrent spawns{label}: time to the {ordinal(half)} ready (half of {k})",
                lambda r, s=size, h=half: f"{nth_ready(r[kind][s]['ready_times'], h):.1f} s")
            row(f"{size} concurrent spawns{label}: total time",
                lambda r, s=size: f"{r[kind][s]['secs']:.1f} s" + (" (timed out)" if r[kind][s]['timed_out'] else ""))
            row(f"{size} concurrent spawns{label}: hub API p99 in the first {BUSY_WINDOW:g} s (slowest of all)",
                lambda r, s=size: storm_p99_cell(r[kind][s]))
            row(f"{size} concurrent spawns{label}: hub event loop: CPU used, waited for a CPU",
                lambda r, s=size: f"{r[kind][s]['loop_cpu_s']:.2f} s, {r[kind][s]['loop_runq_s']:.2f} s")
            row(f"{size} concurrent spawns{label}: scheduler calls until settled",
                lambda r, s=size: fmt_calls(r[kind][s]["calls"], 1))

    if ran("ends"):
        row(f"job end -> route gone: scancel (root) -> route absent from the proxy's /api/routes (polled every "
            f"0.1 s, bound {opts.end_timeout:g} s), {opts.ends} ends {opts.end_spacing:g} s apart, "
            f"poll_interval {opts.end_poll_interval:g} s for both (default), real servers",
            lambda r: fmt_ends(r["ends"]["times"], r["ends"]["not_gone"], opts.end_timeout)
            + (f"; {r['ends']['measured']}/{r['ends']['of']} ended (the others: not ready, or scancel failed)"
               if r["ends"]["measured"] < r["ends"]["of"] else ""))
        row("  end reports heard by the hub (log 'job end reported')", lambda r: f"{r['ends']['reports']}")
    storm_rows("storm", opts.storms, "")
    storm_rows("tiny", opts.tiny_storms, " (tiny server)")
    if not ran("sched"):
        return rows
    row(f"hub restart with {opts.restart_n} servers: kept (worst of {opts.restarts})",
        lambda r: f"{r['sched']['restart']['kept']}/{r['sched']['restart']['of']}")
    row(f"hub restart with {opts.restart_n} servers: until API answers, median of {opts.restarts}",
        lambda r: "{:.2f} s ({})".format(median(r["sched"]["restart"]["api_s"]),
                                         ", ".join(f"{x:.2f}" for x in r["sched"]["restart"]["api_s"])))
    return rows


def main(argv=None):
    opts = parse_args(argv)
    if opts.cluster:
        from . import cluster

        return cluster.main(opts, Path(opts.bs13_venv) / "bin", Path(sys.executable).parent)
    root = Path(opts.workdir or tempfile.mkdtemp(prefix="jhpc-bench-", dir="/tmp"))
    rundir = RunDir(root)
    pkgs = packages(Path(sys.executable).parent, Path(opts.bs13_venv) / "bin")
    keys = [k for k in opts.packages.split(",") if k]
    bench = Bench(rundir, opts)
    only = set(opts.only.split(","))
    results = {k: {} for k in keys}
    results["floor"] = {}  # JupyterHub alone, not a column: printed under the table

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    where, commit = pkgs["ours"].source() if "ours" in pkgs else ("", "")
    if not commit:  # a non-editable install: name the checkout the bench runs from (install it first)
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        commit = (r.stdout.strip() + ("+dirty" if dirty else "") + " checkout") if r.returncode == 0 else ""
    stacks = {k: pkgs[k].stack() for k in keys}
    if len({tuple(sorted(v.items())) for v in stacks.values()}) > 1:
        log(f"the single-user stacks differ, so the comparison would not be fair: {stacks}")
        return 2
    t_start = time.monotonic()
    interrupted = False
    log(f"workdir {root}; jupyterhub-hpc from {where} at {commit or '(not a checkout)'}; options {vars(opts)}")
    node = NodeCgroup(opts.node_cpu_shares).__enter__()
    log(f"compute node: {node.note}")
    try:
        for key in keys:
            log(f"{pkgs[key].label}: scheduler commands {pkgs[key].command_traits()}")
        # interleave the packages per scenario so both see the same machine state; a scenario
        # that fails is reported in its rows ("not measured") and in the log, and the run goes on
        def attempt(what, fn):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001
                log(f"{what} FAILED: {type(e).__name__}: {str(e)[:2000]}")
                return None

        def put(key, kind, value, size=None):
            if value is None:
                return
            if size is None:
                results[key][kind] = value
            else:
                results[key].setdefault(kind, {})[size] = value

        # most telling first, so an interrupted run (SIGTERM, Ctrl-C) still prints what it has
        steps = []
        if "ends" in only:
            steps += [(k, "ends", None, lambda k=k: bench.end_to_route(pkgs[k])) for k in keys]
        if "latency" in only:
            steps += [(k, "latency", None, lambda k=k: bench.latency(pkgs[k])) for k in keys]
        if "tiny" in only:
            steps += [(k, "tiny", n, lambda k=k, n=n: bench.storm(pkgs[k], n, tiny=True))
                      for n in opts.tiny_storms for k in keys]
            # the floor: the same storm through JupyterHub alone (a spawner that does nothing)
            steps += [("floor", "tiny", n, lambda n=n: bench.storm_floor(n, pkgs["ours"].venv_bin))
                      for n in opts.tiny_storms]
        if "storm" in only:
            steps += [(k, "storm", n, lambda k=k, n=n: bench.storm(pkgs[k], n)) for n in opts.storms for k in keys]
        if "sched" in only:
            steps += [(k, "sched", None, lambda k=k: bench.scheduler_side(pkgs[k])) for k in keys]
        if "fake" in only:
            steps += [(k, "fake", None, lambda k=k: bench.fake_scale(pkgs[k])) for k in keys]
        try:
            for key, kind, size, fn in steps:
                put(key, kind, attempt(f"{key} {kind} {size or ''}".strip(), fn), size)
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted: the table shows what was measured so far")
    finally:
        bench.cleanup_all()
        node.__exit__(None, None, None)
    elapsed = time.monotonic() - t_start
    headers = ["measure"] + [pkgs[k].label + (f" ({commit})" if k == "ours" else "") for k in keys]
    print()
    if interrupted:
        print("INTERRUPTED RUN: rows marked 'not measured' were not reached")
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; memory {mem_total()}; "
          f"{slurm_version()}; run took {elapsed / 60:.1f} min")
    if "ends" in opts.only.split(","):
        print(f"poll_interval {opts.end_poll_interval:g} s for both hubs (job end -> route gone)")
    else:
        print(f"poll_interval {opts.poll_interval:g} s (real Slurm), {opts.fake_poll_interval:g} s (fake); "
              f"window {opts.rounds} rounds")
    print("hub database (both): " + ("SQLite, WAL mode, synchronous=FULL (--sqlite-wal)" if opts.sqlite_wal
                                     else "SQLite, JupyterHub's default (rollback journal)"))
    if opts.hub_config_extra:
        print(f"both hubs' config extended with {opts.hub_config_extra}")
    print(f"compute node (both): {node.note}")
    print("single-user stack in both venvs (equal): "
          + ", ".join(f"{k} {v}" for k, v in next(iter(stacks.values())).items()))
    print(render_table(build_rows(results, keys, opts), headers))
    for size, r in sorted(results["floor"].get("tiny", {}).items()):
        print(f"floor, JupyterHub {jupyterhub_version()} alone (a spawner that does no work; same hub settings and "
              f"probe): {size} concurrent spawns: {r['ready']}/{size} ready after {r['secs']:.1f} s; hub API p99 "
              f"in the first {BUSY_WINDOW:g} s {storm_p99_cell(r)}; event loop CPU {r.get('loop_cpu_s', 0):.2f} s, "
              f"waited for a CPU {r.get('loop_runq_s', 0):.2f} s")
    if opts.smoke:
        bad = [k for k in keys if not results[k].get("latency", {}).get("times")]
        if bad:
            log(f"smoke: no spawn became ready for {bad}")
            return 1
        log("smoke: one spawn per package became ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
