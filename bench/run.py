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

from .benchlib import fmt_calls, median, render_table
from .hubs import RunDir, packages
from .scenarios import Bench, log, mem_total, slurm_version

REPO = Path(__file__).resolve().parent.parent


def ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument("--bs13-venv", default="/opt/jhpc-bench-bs13/venv")
    p.add_argument("--ns", type=ints, default=[10, 50, 100], help="running servers for the per-round counts")
    p.add_argument("--restart-n", type=int, default=20)
    p.add_argument("--latency-n", type=int, default=10)
    p.add_argument("--storms", type=ints, default=[30, 50])
    p.add_argument("--fake-ns", type=ints, default=[100, 1000])
    p.add_argument("--poll-interval", type=float, default=10, help="hub poll_interval for the real-Slurm rounds")
    p.add_argument("--fake-poll-interval", type=float, default=20, help="hub poll_interval on the fake scheduler")
    p.add_argument("--rounds", type=int, default=2, help="poll rounds per measuring window")
    p.add_argument("--batch", type=int, default=10, help="concurrent spawns while filling up (real Slurm)")
    p.add_argument("--fake-batch", type=int, default=50, help="concurrent spawns while filling up (fake)")
    p.add_argument("--spawn-timeout", type=float, default=180)
    p.add_argument("--storm-timeout", type=float, default=300)
    p.add_argument("--only", default="sched,latency,storm,fake", help="comma list of scenarios")
    p.add_argument("--packages", default="bs13,ours")
    p.add_argument("--workdir", default="")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.ns, opts.restart_n, opts.latency_n, opts.storms = [3, 6], 4, 3, [6]
        opts.fake_ns, opts.poll_interval, opts.fake_poll_interval = [50], 5, 10
    return opts


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
            return w if isinstance(w, str) else f"{w['own'] + w['kids']:.2f} ({w['own']:.2f} + {w['kids']:.2f})"
        return cell

    for n in opts.ns:
        row(f"scheduler calls per poll round, N={n} running (real Slurm)", sched(n))
    for n in opts.ns:
        row(f"hub CPU s per poll round, N={n} (own + children)", cpu(n))
    for n in opts.fake_ns:
        row(f"scheduler calls per poll round, N={n} (FAKE squeue)",
            lambda r, n=n: fmt_calls(r["fake"][n]["counts"], r["fake"][n]["rounds"]))
        row(f"hub CPU s per poll round, N={n} (FAKE squeue)", cpu(n, fake=True))

    def lat(r):
        t = r["latency"]["times"]
        s = f"{median(t):.2f} s (min {min(t):.2f}, max {max(t):.2f}, n={len(t)})"
        return s + (f", {r['latency']['failures']} failed" if r["latency"]["failures"] else "")

    row(f"spawn latency POST->ready, median of {opts.latency_n} (real server)", lat)
    for size in opts.storms:
        row(f"{size} concurrent spawns: ready", lambda r, s=size: f"{r['storm'][s]['ready']}/{s}")
        row(f"{size} concurrent spawns: total time",
            lambda r, s=size: f"{r['storm'][s]['secs']:.1f} s" + (" (timed out)" if r['storm'][s]['timed_out'] else ""))
        row(f"{size} concurrent spawns: hub API p99",
            lambda r, s=size: f"{r['storm'][s]['p99'] * 1000:.0f} ms ({r['storm'][s]['samples']} GETs)")
        row(f"{size} concurrent spawns: scheduler calls until settled",
            lambda r, s=size: fmt_calls(r["storm"][s]["calls"], 1))
    row(f"hub restart with {opts.restart_n} servers: kept", lambda r: f"{r['sched']['restart']['kept']}/{r['sched']['restart']['of']}")
    row(f"hub restart with {opts.restart_n} servers: until API answers", lambda r: f"{r['sched']['restart']['api_s']:.1f} s")
    return rows


def main(argv=None):
    opts = parse_args(argv)
    root = Path(opts.workdir or tempfile.mkdtemp(prefix="jhpc-bench-", dir="/tmp"))
    rundir = RunDir(root)
    pkgs = packages(Path(sys.executable).parent, Path(opts.bs13_venv) / "bin")
    keys = [k for k in opts.packages.split(",") if k]
    bench = Bench(rundir, opts)
    only = set(opts.only.split(","))
    results = {k: {} for k in keys}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    where, commit = pkgs["ours"].source() if "ours" in pkgs else ("", "")
    t_start = time.monotonic()
    log(f"workdir {root}; jupyterhub-hpc from {where} at {commit or '(not a checkout)'}; options {vars(opts)}")
    try:
        for key in keys:
            log(f"{pkgs[key].label}: scheduler commands {pkgs[key].command_traits()}")
        # interleave the packages per scenario so both see the same machine state
        if "sched" in only:
            for key in keys:
                results[key]["sched"] = bench.scheduler_side(pkgs[key])
        if "latency" in only:
            for key in keys:
                results[key]["latency"] = bench.latency(pkgs[key])
        if "storm" in only:
            for size in opts.storms:
                for key in keys:
                    results[key].setdefault("storm", {})[size] = bench.storm(pkgs[key], size)
        if "fake" in only:
            for key in keys:
                results[key]["fake"] = bench.fake_scale(pkgs[key])
    finally:
        bench.cleanup_all()
    elapsed = time.monotonic() - t_start
    headers = ["measure"] + [pkgs[k].label + (f" ({commit})" if k == "ours" else "") for k in keys]
    print()
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; memory {mem_total()}; "
          f"{slurm_version()}; run took {elapsed / 60:.1f} min")
    print(f"poll_interval {opts.poll_interval:g} s (real Slurm), {opts.fake_poll_interval:g} s (fake); "
          f"window {opts.rounds} rounds")
    print(render_table(build_rows(results, keys, opts), headers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
