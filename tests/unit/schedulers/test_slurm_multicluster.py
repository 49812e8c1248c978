"""Multi-cluster Slurm: --clusters per spawner and per profile, and node-name mapping (FakeRunner)."""

import pytest
from traitlets.config import Config

from batchspawner import JobState, MultiSlurmSpawner, SlurmSpawner
from fakes import FakeRunner, Reply, fixture
from helpers import make_spawner


def responder(submit_out="1234;clusterb\n", query_out=None):
    query_out = query_out if query_out is not None else fixture("slurm/squeue_clusters_running.txt")

    def answer(argv, stdin):
        if argv[0] == "sbatch":
            return Reply(submit_out)
        if argv[0] == "squeue":
            return Reply(query_out)
        return Reply("")

    return answer


async def submit_query_cancel(sp, runner):
    sp.job_id = await sp.submit_batch_script()
    status = await sp.query_job_status()
    await sp.cancel_batch_job()
    by_cmd = {c.argv[0]: c for c in runner.calls}
    return status, by_cmd


async def test_req_cluster_reaches_script_query_and_cancel():
    runner = FakeRunner(responder())
    sp = make_spawner(SlurmSpawner, runner, req_cluster="clusterb")
    status, calls = await submit_query_cancel(sp, runner)
    assert sp.job_id == "1234"
    assert "#SBATCH --clusters=clusterb\n" in calls["sbatch"].stdin
    assert "--clusters=clusterb" in calls["squeue"].argv
    assert calls["scancel"].argv == ["scancel", "--clusters=clusterb", "1234"]
    assert (status.state, status.host) == (JobState.RUNNING, "gpu-b017")


async def test_no_cluster_means_no_clusters_option_anywhere():
    runner = FakeRunner(responder("1234\n", fixture("slurm/squeue_running.txt")))
    sp = make_spawner(SlurmSpawner, runner)
    status, calls = await submit_query_cancel(sp, runner)
    assert "--clusters" not in calls["sbatch"].stdin
    assert not [a for c in runner.calls for a in c.argv if a.startswith("--clusters")]
    assert calls["scancel"].argv == ["scancel", "1234"]
    assert status.host == "localhost"


@pytest.mark.parametrize(
    "profile_cluster", ["clustera", "clusterb"], ids=["profile-clustera", "profile-clusterb"]
)
async def test_per_profile_cluster_from_config(profile_cluster):
    """What ProfilesSpawner does for a profile: build the child from a config that sets req_cluster."""
    config = Config()
    config.SlurmSpawner.req_cluster = profile_cluster
    config.SlurmSpawner.req_partition = "interactive"
    runner = FakeRunner(responder(f"77;{profile_cluster}\n"))
    sp = make_spawner(SlurmSpawner, runner, config=config)
    status, calls = await submit_query_cancel(sp, runner)
    assert f"#SBATCH --clusters={profile_cluster}\n" in calls["sbatch"].stdin
    assert f"--clusters={profile_cluster}" in calls["squeue"].argv
    assert calls["scancel"].argv == ["scancel", f"--clusters={profile_cluster}", "77"]


async def test_query_on_unreachable_cluster_is_unknown_not_finished():
    runner = FakeRunner(lambda argv, stdin: Reply("", fixture("slurm/squeue_clusters_no_dbd.txt"), 1))
    sp = make_spawner(SlurmSpawner, runner, req_cluster="localcluster")
    sp.job_id = "5"
    assert (await sp.query_job_status()).state is JobState.UNKNOWN


async def test_submit_to_unreachable_cluster_fails_with_slurm_message():
    from batchspawner import SpawnFailed

    runner = FakeRunner(lambda argv, stdin: Reply("", fixture("slurm/sbatch_clusters_no_dbd.txt"), 1))
    sp = make_spawner(SlurmSpawner, runner, req_cluster="localcluster")
    with pytest.raises(SpawnFailed, match="Problem talking to database"):
        await sp.submit_batch_script()


def test_daemon_resolver_maps_unresolvable_node_names():
    sp = make_spawner(MultiSlurmSpawner, daemon_resolver={"gpu-b017": "10.20.0.17"})
    sp.job_id = "1234"
    status = sp.parse_query_output(0, fixture("slurm/squeue_clusters_running.txt"), "")
    assert status.host == "gpu-b017"
    assert sp.resolve_host(status.host) == "10.20.0.17"
    assert sp.resolve_host("other-node") == "other-node"


def test_exechost_exp_with_own_regex_maps_node_name():
    sp = make_spawner(
        SlurmSpawner, state_exechost_re=r"^\S+\s+(\S+)\s.*$", state_exechost_exp=r"\1.ib.example.org"
    )
    sp.job_id = "12"
    status = sp.parse_query_output(0, fixture("slurm/squeue_running.txt"), "")
    assert status.host == "localhost.ib.example.org"


def test_exechost_exp_alone_as_in_batchspawner_13_configs():
    sp = make_spawner(SlurmSpawner, state_exechost_exp=r"\1.ib.example.org")
    sp.job_id = "12"
    status = sp.parse_query_output(0, fixture("slurm/squeue_running.txt"), "")
    assert status.host == "localhost.ib.example.org"


async def test_cluster_printed_by_sbatch_is_used_for_query_and_cancel():
    runner = FakeRunner(responder("1234;clusterb\n"))
    sp = make_spawner(SlurmSpawner, runner, req_options="--clusters=clusterb")
    _, calls = await submit_query_cancel(sp, runner)
    assert "--clusters=clusterb" in calls["squeue"].argv
    assert "--clusters=clusterb" in calls["scancel"].argv


async def test_2605_with_its_accounting_database_down_the_job_is_unknown_never_gone():
    """Slurm 26.05's --clusters answer while slurmdbd is down (exit 1, 'Could not get cluster
    information'): neither the query nor the confirm may end the server."""
    down = fixture("slurm/squeue_clusters_dbd_down.stderr")
    runner = FakeRunner(lambda argv, stdin: Reply("", down.replace("squeue", argv[0]), 1))
    sp = make_spawner(MultiSlurmSpawner, runner, req_cluster="current")
    sp.job_id = "7"
    assert (await sp.query_job_status()).state is JobState.UNKNOWN
    assert runner.calls[-1].argv[-1] == "--clusters=current"
    assert sp.parse_confirm_output(1, "", down.replace("squeue", "scontrol")).state is JobState.UNKNOWN


async def test_2605_clusters_answers_as_captured_submit_query_cancel():
    """sbatch --parsable --clusters=current ('4;current') and squeue -h --clusters=current (no
    CLUSTER line with -h) as Slurm 26.05.5 printed them on the test cluster current."""
    runner = FakeRunner(responder("4;current\n", fixture("slurm/squeue_clusters_running_2605.txt")))
    sp = make_spawner(MultiSlurmSpawner, runner, req_cluster="current")
    status, calls = await submit_query_cancel(sp, runner)
    assert (sp.job_id, sp.job_cluster) == ("4", "current")
    assert (status.state, status.host) == (JobState.RUNNING, "n2")
    assert calls["scancel"].argv == ["scancel", "--clusters=current", "4"]
