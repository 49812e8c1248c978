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
    job_ids_from_log,
    parse_node_cpus,
    parse_proc_stat,
    percentile,
    render_table,
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
