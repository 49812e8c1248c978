"""The benchmark's pure helpers (bench/benchlib.py): counts, /proc parsing, percentiles, table."""

import os
import sys
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from bench.benchlib import (  # noqa: E402
    count_calls,
    cpu_seconds,
    fmt_calls,
    fmt_ends,
    job_ids_from_log,
    parse_node_cpus,
    parse_proc_stat,
    percentile,
    render_table,
    route_target,
    spawn_failure_message,
)

SHIM_LOG = """squeue
sbatch 101
squeue
scancel
sbatch 102;cluster2
sbatch
squeue
sbatch 101
garbage line

"""


def test_count_calls_counts_each_tool_and_ignores_other_lines():
    counts = count_calls(SHIM_LOG.splitlines())
    assert counts == Counter({"squeue": 3, "sbatch": 4, "scancel": 1})


def test_job_ids_from_log_unique_in_order_without_cluster_and_empty_output():
    assert job_ids_from_log(SHIM_LOG.splitlines()) == ["101", "102"]


def test_parse_proc_stat_counts_fields_after_the_last_parenthesis():
    # a command name with a space and a ')' must not shift the fields
    fields = ["S"] + [str(i) for i in range(4, 53)]
    fields[14 - 3], fields[15 - 3], fields[16 - 3], fields[17 - 3] = "250", "50", "1000", "200"
    text = "4242 (jupyter hub) x) " + " ".join(fields) + "\n"
    stat = parse_proc_stat(text)
    assert stat == {"utime": 250, "stime": 50, "cutime": 1000, "cstime": 200}
    assert cpu_seconds(stat, ticks=100) == (3.0, 12.0)


def test_parse_proc_stat_of_this_process_is_plausible():
    with open(f"/proc/{os.getpid()}/stat") as f:
        stat = parse_proc_stat(f.read())
    own, kids = cpu_seconds(stat)
    assert own > 0 and kids >= 0


@pytest.mark.parametrize(
    "values, pct, expected",
    [
        ([5], 99, 5),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 75, 3),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 201)), 99, 198),
        ([3, 1, 2], 100, 3),
        ([3, 1, 2], 0, 1),
    ],
)
def test_percentile_nearest_rank(values, pct, expected):
    assert percentile(values, pct) == expected


def test_percentile_of_nothing_raises():
    with pytest.raises(ValueError):
        percentile([], 99)


def test_parse_node_cpus_sums_nodes():
    text = "NodeName=a CPUAlloc=3 CPUEfctv=64 CPUTot=64 CPULoad=1.7\nNodeName=b CPUAlloc=1 CPUTot=8\n"
    assert parse_node_cpus(text) == (72, 4)


def test_fmt_calls_per_round():
    assert fmt_calls(Counter({"squeue": 20, "scancel": 2}), 2) == "11 (squeue 10, scancel 1)"
    assert fmt_calls(Counter(), 2) == "0"


def test_render_table_aligns_columns():
    out = render_table([["a", "1"], ["longer", "22"]], ["measure", "x"]).splitlines()
    assert out[0] == "| measure | x  |"
    assert out[1] == "|---------|----|"
    assert out[3] == "| longer  | 22 |"


def test_log_time_reads_hub_and_server_log_stamps():
    import time as _t

    from bench.benchlib import log_time

    t = log_time("[I 2026-12-02 05:42:05.380 ServerApp] Jupyter Server 2.21.1 is running at:")
    assert t == _t.mktime(_t.strptime("2026-12-02 05:42:05", "%Y-%m-%d %H:%M:%S")) + 0.38
    assert log_time("batchspawner-singleuser: [05:42:05.380 +2.5 s] start") is None


def test_first_after_skips_lines_before_the_spawn():
    from bench.benchlib import first_after, log_time

    lines = [
        "[I 2026-12-02 05:42:01.000 JupyterHub log:192] 201 POST /hub/api/batchspawner (alice@127.0.0.1)",
        "[I 2026-12-02 05:42:04.250 JupyterHub log:192] 201 POST /hub/api/batchspawner (alice@127.0.0.1)",
    ]
    after = log_time(lines[0]) + 1
    assert first_after(lines, "POST /hub/api/batchspawner", after) == log_time(lines[1])
    assert first_after(lines, "never", after) is None


def test_spawn_phases_and_their_medians():
    from bench.benchlib import fmt_phases, nth_ready, spawn_phases

    # 1.3.0's order: report (t=3.0) before listening (t=5.0); ready at 5.6
    p = spawn_phases(t_post=0.0, t_sbatch=0.1, t_job=1.1, t_listen=5.0, t_report=3.0, t_ready=5.6)
    assert {k: round(v, 3) for k, v in p.items()} == {
        "submit": 0.1, "job start": 1.0, "server listening": 3.9, "port reported": 1.9, "ready after both": 0.6,
    }
    # a spawn whose job log could not be read has no listening phase and no "ready after both"
    q = spawn_phases(0.0, 0.2, 1.2, None, 4.0, 4.1)
    assert set(q) == {"submit", "job start", "port reported"}
    assert fmt_phases([p, q]) == (
        "submit 0.15, job start 1.00, server listening 3.90, port reported 2.35, ready after both 0.60"
    )
    assert fmt_phases([]) == "not measured"
    assert nth_ready([3.0, 1.0, 2.0], 2) == 2.0 and nth_ready([1.0], 2) is None


def test_stack_names_every_enabled_server_extension(tmp_path):
    """Equal stacks (issue 16) include the server extensions a venv enables, not only JupyterLab's:
    our venv enables jupyter-server-proxy (apps), which the 1.3.0 venv must then load too."""
    from bench.stack import enabled_extensions

    folder = tmp_path / "etc" / "jupyter" / "jupyter_server_config.d"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text('{"ServerApp": {"jpserver_extensions": {"jupyter_server_proxy": true}}}')
    (folder / "b.json").write_text('{"ServerApp": {"jpserver_extensions": {"jupyterlab": true, "off_one": false}}}')
    (folder / "broken.json").write_text("{not json")
    assert enabled_extensions(str(tmp_path)) == ["jupyter_server_proxy", "jupyterlab"]
    assert enabled_extensions(str(tmp_path / "nowhere")) == []


def test_ordinals_in_the_table():
    from bench.run import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 50, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "50th", "101st", "111th"]


def test_count_calls_reads_shim_lines_with_arguments():
    # the shims log each call with its arguments, so a run can tell status from details queries
    lines = ["squeue -h -t all -j 1,2 -o %i %T %B %r", "squeue -h -t all -j 1,2 -O JobID:|", "sbatch 7 1.5"]
    assert count_calls(lines) == Counter({"squeue": 2, "sbatch": 1})


def test_noop_spawner_config_is_jupyterhub_alone(monkeypatch):
    """The storm's floor: the config defines a spawner whose start() only names the shared
    server and whose poll() follows start/stop; the run's shared hub settings are added too."""
    import asyncio

    from traitlets.config import Config

    from bench.hubs import noop_hub_config

    monkeypatch.setenv("JHPC_BENCH_SQLITE_WAL", "1")
    monkeypatch.delenv("JHPC_BENCH_HUB_EXTRA", raising=False)
    text = noop_hub_config(43210, 30)
    assert "PRAGMA journal_mode=WAL" in text
    c = Config()
    scope = {"c": c, "__name__": "jupyterhub_config"}
    exec(compile(text, "noop_config", "exec"), scope)  # noqa: S102 - our own generated config
    cls = c.JupyterHub.spawner_class
    assert cls.__name__ == "BenchNoopSpawner"
    assert c.Spawner.poll_interval == 30 and c.JupyterHub.allow_named_servers is True

    async def cycle():
        sp = cls.__new__(cls)  # no hub objects needed for the three coroutines
        assert await sp.poll() == 0
        assert await sp.start() == ("127.0.0.1", 43210)
        assert await sp.poll() is None
        await sp.stop()
        return await sp.poll()

    assert asyncio.run(cycle()) == 0


def test_hub_config_extra_reaches_every_hub(tmp_path, monkeypatch):
    from bench.hubs import noop_hub_config

    extra = tmp_path / "extra.py"
    extra.write_text("c.PeriodicMetricsCollector.event_loop_interval_resolution = 0.5\n")
    monkeypatch.setenv("JHPC_BENCH_HUB_EXTRA", str(extra))
    monkeypatch.delenv("JHPC_BENCH_SQLITE_WAL", raising=False)
    text = noop_hub_config(1, 10)
    assert "event_loop_interval_resolution = 0.5" in text and "PRAGMA" not in text


def test_fake_squeue_answers_the_session_details_query(tmp_path):
    """The 10,000-server rows run on bench/fakes/fake_sched.py: it must answer the Slurm
    module's -O details query as squeue does (before, that query failed every round there)."""
    import shutil
    import subprocess

    from batchspawner.schedulers.slurm import SlurmSpawner
    from helpers import make_spawner

    fake = tmp_path / "squeue"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "bench", "fakes", "fake_sched.py"), fake)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "jobs.table").write_text("5 RUNNING node1\n6 PENDING n/a\n")
    sp = make_spawner(SlurmSpawner)
    cmd = SlurmSpawner.class_traits()["batch_details_cmd"].default_value  # what the bench's hub runs
    argv = cmd.replace("{job_ids}", "5,6").replace("{cluster_opt}", "").split()
    argv = [a.strip("'") for a in argv]
    r = subprocess.run([sys.executable, str(fake)] + argv[1:], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    facts = sp.parse_job_details(0, r.stdout, "")
    assert facts["5"]["node"] == "node1" and facts["5"]["start"] and facts["5"]["native"] == "RUNNING"
    assert facts["6"]["node"] == "" and facts["6"]["start"] is None
    assert sp.parse_batch_status(0, subprocess.run(
        [sys.executable, str(fake), "-h", "-t", "all", "-j", "5,6", "-o", "%i %T %B %r"],
        capture_output=True, text=True, timeout=30).stdout, "", ["5", "6"])["5"].host == "node1"
    assert (tmp_path / "count.log").read_text().splitlines()[0].startswith("squeue -h -t all -j 5,6 -O JobID:|")


def test_loop_stalls_extra_names_what_blocked_the_loop(tmp_path, monkeypatch):
    """bench/extras/loop_stalls.py (a --hub-config-extra file) logs a blocked loop with its stack."""
    import asyncio
    import time

    monkeypatch.chdir(tmp_path)
    path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "extras", "loop_stalls.py")
    code = compile(open(path).read(), path, "exec")

    def block_here():
        time.sleep(0.4)

    async def main():
        exec(code, {"c": None, "__name__": "jupyterhub_config"})  # noqa: S102 - our own file
        await asyncio.sleep(0.1)
        block_here()
        await asyncio.sleep(0.2)

    asyncio.run(main())
    text = (tmp_path / "loop-stalls.log").read_text()
    assert "loop blocked" in text and "block_here@test_bench_parsing.py" in text


# hub log lines of the cluster bench (bench/cluster.py), as 1.3.0's hub wrote them on Slurm 26.05
BS13_DEFAULT_TEMPLATE_LOG = """\
[I 2026-12-07 05:02:36.700 JupyterHub batchspawner:281] Spawner submitting command: ssh -i /k carol@10.232.1.5 sbatch --parsable
[E 2026-12-07 05:02:37.044 JupyterHub batchspawner:254] Subprocess returned exitcode 255
[E 2026-12-07 05:02:37.044 JupyterHub batchspawner:255] sbatch: option '--get-user-env' doesn't allow an argument
[E 2026-12-07 05:02:37.044 JupyterHub user:1072] Unhandled error starting carol's server: sbatch: option '--get-user-env' doesn't allow an argument
""".splitlines()

BS13_SSH_QUERY_LOG = """\
[I 2026-12-07 05:02:46.632 JupyterHub batchspawner:287] Job submitted. output: 9
[E 2026-12-07 05:02:46.865 JupyterHub batchspawner:254] Subprocess returned exitcode 1
[E 2026-12-07 05:02:46.865 JupyterHub batchspawner:255] squeue: error: Unrecognized option: %B
[W 2026-12-07 05:02:46.865 JupyterHub batchspawner:432] Job 9 neither pending nor running.
    squeue: error: Unrecognized option: %B
[E 2026-12-07 05:02:46.866 JupyterHub user:1072] Unhandled error starting carol's server c01: The Jupyter batch job has disappeared while pending in the queue or died immediately after starting.
""".splitlines()


def test_spawn_failure_message_is_the_schedulers_own_words():
    assert spawn_failure_message(BS13_DEFAULT_TEMPLATE_LOG) == (
        "sbatch: option '--get-user-env' doesn't allow an argument")


def test_spawn_failure_message_names_the_failed_command_before_the_generic_reason():
    assert spawn_failure_message(BS13_SSH_QUERY_LOG) == (
        "The Jupyter batch job has disappeared while pending in the queue or died immediately after "
        "starting. (before it: squeue: error: Unrecognized option: %B)")


def test_spawn_failure_message_empty_without_a_start_error():
    ok = [line for line in BS13_SSH_QUERY_LOG if "Unhandled error" not in line]
    assert spawn_failure_message(ok) == ""
    # a warning (not an error) after "Subprocess returned" is not taken for the command's words
    lines = ["[E 2026-12-07 05:00:00.000 JupyterHub batchspawner:254] Subprocess returned exitcode 1",
             "[W 2026-12-07 05:00:00.001 JupyterHub batchspawner:432] Job 9 neither pending nor running.",
             "[E 2026-12-07 05:00:00.002 JupyterHub user:1072] Unhandled error starting bob's server: gone"]
    assert spawn_failure_message(lines) == "gone"


# ------------------------------------------------------------------ job end -> route gone
ROUTES = {
    "/": {"hub": True, "target": "http://127.0.0.1:8081", "jupyterhub": True},
    "/user/alice/": {"user": "alice", "server_name": "", "target": "http://127.0.0.1:5001"},
    "/user/alice/e00/": {"user": "alice", "server_name": "e00", "target": "http://10.0.0.7:5002"},
    "/user/al/e01/": {"user": "al", "server_name": "e01", "target": "http://127.0.0.1:5003"},
    "/user/user/alice/": {"user": "user", "server_name": "alice", "target": "http://127.0.0.1:5004"},
    "/user/bob/e02/": {"user": "bob", "server_name": "e02"},
}


def test_route_target_matches_only_the_exact_server():
    assert route_target(ROUTES, "alice", "e00") == "http://10.0.0.7:5002"
    assert route_target(ROUTES, "alice") == "http://127.0.0.1:5001"  # the default server, not e00
    assert route_target(ROUTES, "al", "e01") == "http://127.0.0.1:5003"
    assert route_target(ROUTES, "al") is None  # /user/al/e01 is a named server of al, not its default
    assert route_target(ROUTES, "alice", "e01") is None  # al's server is not alice's
    assert route_target(ROUTES, "user", "alice") == "http://127.0.0.1:5004"
    assert route_target(ROUTES, "bob", "e02") == ""  # a route without a target is still a route
    assert route_target({}, "alice", "e00") is None
    assert route_target(None, "alice") is None


def test_route_target_with_a_base_url_and_host_routing():
    routes = {"/jhub/user/alice/e00/": {"target": "http://n1:1"},
              "hub.example.org/user/bob/": {"target": "http://n2:2"}}
    assert route_target(routes, "alice", "e00", base_url="/jhub/") == "http://n1:1"
    assert route_target(routes, "alice", "e00") is None  # without its base URL it is not that route
    assert route_target(routes, "bob") == "http://n2:2"


def test_fmt_ends_median_p90_min_max_and_the_ones_not_gone():
    times = [1.5, 0.9, 1.1, 2.5, 1.2, 1.3, 1.0, 1.4, 1.6, 1.7]
    assert fmt_ends(times, 0, 90) == "median 1.35 s, p90 1.70 s (min 0.90, max 2.50, n=10)"
    assert fmt_ends([3.0], 2, 90) == ("median 3.00 s, p90 3.00 s (min 3.00, max 3.00, n=1); "
                                      "2 route(s) still there after 90 s")
    assert fmt_ends([], 0, 90) == "not measured"
