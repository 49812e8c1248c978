"""The start path is event-driven (issue 16): the job's report ends the wait for RUNNING,
progress() wakes on events, every phase is stamped in the histogram, and the hub connects to
the execution host's address in the server's own address family (issue 11, item 1)."""

import asyncio
import socket
import time

import pytest
from helpers import make_spawner
from prometheus_client import REGISTRY

from batchspawner import SlurmSpawner, SpawnFailed
from fakes import FakeRunner, Reply


class Cluster:
    """sbatch gives job 7; squeue answers from a list of states (the last one repeats)."""

    def __init__(self, states):
        self.states = list(states)
        self.queries = 0

    def __call__(self, argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="7\n")
        if argv[0] == "squeue":
            self.queries += 1
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            if isinstance(state, Reply):
                return state
            return Reply(stdout=(f"7 {state}" if argv[7].startswith("%i") else state) + "\n")
        return Reply()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def spawner_for(cluster, **traits):
    traits.setdefault("status_min_interval", 0.01)
    return make_spawner(SlurmSpawner, FakeRunner(cluster), **traits)


def phase_count(phase):
    return REGISTRY.get_sample_value("batchspawner_spawn_phase_seconds_count", {"phase": phase}) or 0


async def test_the_report_ends_the_wait_for_running_and_one_forced_round_gives_the_host(listener):
    # the scheduler is slow to show RUNNING and the spawner would next look in 30 s
    cluster = Cluster(["PENDING n/a None", "RUNNING localhost None"])
    spawner = spawner_for(cluster, startup_poll_interval=30, running_check_interval=30)
    before = {p: phase_count(p) for p in ("submit", "running", "port", "listening", "ready")}
    spawner._spawn_future = asyncio.get_running_loop().create_future()  # JupyterHub's spawn, HTTP check included
    task = asyncio.ensure_future(spawner.start())
    while not spawner._events:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    spawner.report_port(listener)
    assert await asyncio.wait_for(task, 5) == ("127.0.0.1", listener)
    assert time.monotonic() - t0 < 2
    assert cluster.queries == 2  # the first look, then one forced round after the report
    ready_before = before.pop("ready")
    assert phase_count("ready") == ready_before  # not before JupyterHub's own check passed
    for phase, count in before.items():
        assert phase_count(phase) == count + 1, phase
    spawner._spawn_future.set_result(None)
    await asyncio.sleep(0)
    assert phase_count("ready") == ready_before + 1


async def test_after_a_report_a_failing_round_falls_back_to_one_per_job_query(listener):
    down = Reply(returncode=1, stderr="slurm_load_jobs error: Unable to contact slurm controller\n")
    cluster = Cluster(["PENDING n/a None", down, "RUNNING localhost None"])
    spawner = spawner_for(cluster, startup_poll_interval=30, running_check_interval=30)
    task = asyncio.ensure_future(spawner.start())
    # report once the first round said PENDING (the start then waits for the report): a report
    # that beats the first answer is another case (it cancels that query), not this one
    while not any("waiting in the queue" in e["message"] for e in spawner._events):
        await asyncio.sleep(0.01)
    spawner.report_port(listener)
    assert await asyncio.wait_for(task, 5) == ("127.0.0.1", listener)
    assert cluster.queries == 3


async def test_progress_wakes_on_an_event_not_on_a_timer():
    spawner = spawner_for(Cluster(["PENDING n/a None"]))
    spawner._spawn_pending = True
    got = []

    async def consume():
        async for event in spawner.progress():
            got.append((time.monotonic(), event["message"]))

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    for n in range(3):
        t0 = time.monotonic()
        spawner._event(20, f"m{n}")
        while len(got) < n + 1:
            await asyncio.sleep(0.001)
        assert got[n][0] - t0 < 0.05  # a 0.5 s poll would be late most of the time
    spawner._spawn_pending = False
    spawner._wake_progress()
    await asyncio.wait_for(task, 1)
    assert [m for _, m in got] == ["m0", "m1", "m2"]


async def test_the_hub_connects_to_the_address_of_the_servers_family():
    spawner = spawner_for(Cluster(["RUNNING localhost None"]))
    assert await spawner.connect_address("localhost") == "127.0.0.1"
    assert await spawner.connect_address("127.0.0.1") == "127.0.0.1"
    # an IPv6 address while the server binds IPv4 (0.0.0.0): never connect there
    with pytest.raises(SpawnFailed, match="IPv4 address"):
        await spawner.connect_address("::1")
    spawner.ip = "::"
    assert await spawner.connect_address("::1") == "::1"
    with pytest.raises(SpawnFailed, match="IPv6 address"):
        await spawner.connect_address("127.0.0.1")
