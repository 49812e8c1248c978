"""Issue 24: a running server's job that goes back to the queue (fast tier, injected runner)."""

from helpers import make_spawner
from test_slurm_spawner import Reply, spawner_with

from batchspawner import SlurmSpawner


def _directives(**traits):
    spawner = make_spawner(SlurmSpawner, batchspawner_singleuser_cmd="/opt/v/bin/batchspawner-singleuser", **traits)
    return [line for line in spawner.render_script().splitlines() if line.startswith("#SBATCH")]


def test_reruns_append_to_the_log_and_no_requeue_follows_the_trait():
    default = _directives()
    assert "#SBATCH --open-mode=append" in default
    assert "#SBATCH --no-requeue" not in default
    assert "#SBATCH --no-requeue" in _directives(follow_requeue=False)


def _replies(*lines):
    calls = []
    queue = list(lines)

    def run(argv, stdin):
        calls.append(argv)
        if argv[0] == "scancel":
            return Reply()
        return Reply(stdout=(queue.pop(0) if len(queue) > 1 else queue[0]) + "\n")

    return run, calls


async def test_a_suspended_job_keeps_its_server_and_route():
    run, calls = _replies("SUSPENDED localhost None")
    spawner, _ = spawner_with(run, shared_status=False)
    spawner.job_id = "9"
    assert await spawner.poll() is None
    assert not spawner._spawn_pending and spawner._rerun_task is None
    assert not [c for c in calls if c[0] == "scancel"]


async def test_without_follow_requeue_a_requeued_job_ends_the_server_with_its_reason():
    run, calls = _replies("PENDING  BeginTime", "PENDING  BeginTime", "CANCELLED localhost None")
    spawner, _ = spawner_with(run, shared_status=False, follow_requeue=False)
    spawner.job_id = "9"
    assert await spawner.poll() == 1
    assert ["scancel", "9"] in calls
    assert "back in the queue" in spawner._rerun_failed and "does not follow requeued jobs" in spawner._rerun_failed
    assert spawner.last_ended["job_id"] == "9"


async def test_a_requeued_job_is_followed_as_a_pending_start():
    run, calls = _replies("PENDING  BeginTime")
    spawner, _ = spawner_with(run, shared_status=False)
    spawner.job_id = "9"
    assert await spawner.poll() is None
    try:
        assert spawner._spawn_pending and spawner._rerun_task is not None
        assert spawner._port_future is not None and not spawner._port_future.done()
        assert "back in the queue" in spawner._events[0]["message"]
        assert "unsaved work in it is lost" in spawner._events[0]["message"]
        assert not [c for c in calls if c[0] == "scancel"]
        assert await spawner.poll() is None  # still pending: still followed, not a second follow
    finally:
        spawner._rerun_task.cancel()


def test_the_state_keeps_a_pending_start_and_only_the_tokens_digest():
    import json

    spawner = make_spawner(SlurmSpawner)
    spawner.api_token = "secret-token-abc"
    spawner.job_id = "12"
    spawner._starting = True
    state = spawner.get_state()
    assert state["starting"] is True
    assert "secret-token-abc" not in json.dumps(state)
    restored = make_spawner(SlurmSpawner)
    restored.api_token = ""  # as after a hub restart: JupyterHub does not keep it
    restored.load_state(state)
    assert restored._restored_starting
    assert restored.owns_server_token("secret-token-abc")
    assert not restored.owns_server_token("secret-token-abd") and not restored.owns_server_token("")
    spawner._starting = False
    assert "starting" not in spawner.get_state()


async def test_the_end_event_is_exact_and_only_makes_the_hub_look():
    import json

    import pytest
    from tornado import web

    from batchspawner.hub.api import BatchSpawnerAPIHandler
    from test_port_proof import PortHandlerStub

    run, calls = _replies("RUNNING localhost None")
    spawner, _ = spawner_with(run, shared_status=False, end_report_watch=0.2, end_report_interval=0.05)
    spawner.user.spawners[""] = spawner
    for bad in ({"event": "stopped"}, {"event": "ended", "port": 4000}, {"event": ["ended"]}):
        handler = PortHandlerStub(spawner.user, spawner.api_token, bad)
        with pytest.raises(web.HTTPError) as e:
            BatchSpawnerAPIHandler.post(handler)
        assert e.value.status_code in (400, 409), bad
    spawner.job_id = "9"
    handler = PortHandlerStub(spawner.user, spawner.api_token, {"event": "ended"})
    BatchSpawnerAPIHandler.post(handler)
    assert handler.status == 202 and "looks" in json.loads(handler.body)["message"]
    await spawner._end_watch  # the job still runs: looked at, nothing ended, no cancel
    assert [c for c in calls if c[0] == "squeue"] and not [c for c in calls if c[0] == "scancel"]
    assert spawner.job_id == "9"


def test_suspended_time_is_added_back_to_the_time_left():
    from batchspawner.core.states import JobState, JobStatus

    spawner = make_spawner(SlurmSpawner)
    spawner._record_status(JobStatus(JobState.PENDING, native="SUSPENDED"))
    assert spawner._suspended_since is not None
    spawner._suspended_since -= 100  # seen suspended 100 s ago
    spawner._record_status(JobStatus(JobState.UNKNOWN, reason="timeout"))  # no answer: still counting
    assert spawner._suspended_since is not None
    spawner._record_status(JobStatus(JobState.RUNNING, native="RUNNING", host="n1"))
    assert spawner._suspended_since is None and 99 <= spawner.suspended_seconds <= 102


async def test_the_requeue_message_says_the_cause_in_words_not_slurms_code():
    """Slurm shows a requeued job as PENDING with reason BeginTime (node failure, preemption, an
    admin's requeue) or JobHeldAdmin (requeuehold): the user reads what happened, not the code."""
    for reason, words in [("BeginTime", "a node failure, a preemption or an administrator"),
                          ("JobHeldAdmin", "an administrator put it back and holds it")]:
        run, _ = _replies(f"PENDING n/a {reason}")  # squeue -o "%T %B %r"
        spawner, _ = spawner_with(run, shared_status=False)
        spawner.job_id = "9"
        assert await spawner.poll() is None
        try:
            message = spawner._events[0]["message"]
            assert words in message, message
            assert "requested begin time" not in message
        finally:
            spawner._rerun_task.cancel()
