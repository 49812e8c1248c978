"""Build real spawner objects around a minimal hub user, for unit tests."""

from types import SimpleNamespace

from jupyterhub.objects import Hub, Server


class FakeUser(SimpleNamespace):
    pass


def make_user(name="alice"):
    user = FakeUser(
        name=name,
        escaped_name=name,
        url=f"/user/{name}/",
        base_url="/",
        public_url=lambda *a, **k: "",
        spawners={},
        server=None,
        kind="user",
    )
    return user


# batchspawner 1.3's log paths (no {logdir}): no log-folder command runs before the submit, so
# these tests see the submit as the first command. tests/unit/hub/test_sessions_logs.py covers the
# default (the private log folder prepared as the user first).
LEGACY_LOG_PATHS = {
    "SlurmSpawner": "{homedir}/jupyterhub_slurmspawner_{job_id}.log",
    "MultiSlurmSpawner": "{homedir}/jupyterhub_slurmspawner_{job_id}.log",
    "GridengineSpawner": "{homedir}/jupyterhub_gridengine_{job_id}.log",
    "CondorSpawner": "{homedir}/jupyterhub_condor_{job_id}.log",
    "LsfSpawner": "{homedir}/jupyterhub_lsf_{job_id}.log",
    "TorqueSpawner": "{homedir}/jupyterhub_torque.log",
    "PBSSpawner": "{homedir}/jupyterhub_torque.log",
    "MoabSpawner": "{homedir}/jupyterhub_torque.log",
}


def make_spawner(cls, runner=None, name="alice", legacy_log=True, **traits):
    if legacy_log and "log_path" not in traits and "log_path" in cls.class_traits():
        for klass in cls.__mro__:
            if klass.__name__ in LEGACY_LOG_PATHS:
                traits["log_path"] = LEGACY_LOG_PATHS[klass.__name__]
                break
    # no session-card details query either (it would add scheduler commands these tests count);
    # tests/unit/hub/test_sessions_logs.py covers it
    if legacy_log and "batch_details_cmd" not in traits and "batch_details_cmd" in cls.class_traits():
        traits["batch_details_cmd"] = ""
    user = make_user(name)
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    spawner = cls(user=user, hub=hub, **traits)
    spawner.api_token = "secret-token-value"
    if runner is not None:
        spawner.runner = runner
        spawner.query_runner = runner
        spawner.status_runner = runner
    return spawner


def verdict(status):
    """What a parsed per-job answer amounts to once the spawner confirmed it.

    A per-job "no such job" (``states.GONE_CLAIM``) ends the server only when the second
    source agrees; in the parser tests that agreement is taken for granted (FINISHED).
    An empty answer (a silent claim) proves nothing: it stays UNKNOWN."""
    from batchspawner.core.states import GONE_CLAIM, JobState

    if status.native == GONE_CLAIM:
        return JobState.UNKNOWN if status.extra.get("silent") else JobState.FINISHED
    return status.state
