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


def make_spawner(cls, runner=None, name="alice", **traits):
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
    from batchspawner.states import GONE_CLAIM, JobState

    if status.native == GONE_CLAIM:
        return JobState.UNKNOWN if status.extra.get("silent") else JobState.FINISHED
    return status.state
