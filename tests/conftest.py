import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    # everything under tests/e2e needs real daemons
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _fake_cluster_info():
    """ProfilesSpawner's cluster facts: never real scontrol/sinfo in the fast tier (empty answers
    = nothing known, nothing refused); tests/unit/polling/test_cluster_info.py injects real captures."""
    from batchspawner.polling.cluster import ClusterInfo
    from fakes import FakeRunner

    ClusterInfo._registry.clear()
    ClusterInfo._registry["slurm"] = ClusterInfo(runner=FakeRunner())


# also for test modules that spawn at import (hypothesis baselines), before any fixture runs
_fake_cluster_info()


@pytest.fixture(autouse=True)
def _fresh_status_pollers():
    """Each test starts with no shared status pollers (they are process-wide)."""
    from batchspawner.hub.sessions import DetailsPoller
    from batchspawner.polling.status import StatusPoller

    StatusPoller._registry.clear()
    DetailsPoller._registry.clear()
    from batchspawner.core import joblogs

    joblogs._prepared.clear()  # log folders "prepared a moment ago" by an earlier test
    from batchspawner.polling.cluster import ClusterInfo

    _fake_cluster_info()
    yield
    for info in ClusterInfo._registry.values():
        if info._task is not None:
            info._task.cancel()
    ClusterInfo._registry.clear()
    for poller in [*StatusPoller._registry.values(), *DetailsPoller._registry.values()]:
        if poller._task is not None:
            poller._task.cancel()
    StatusPoller._registry.clear()
    DetailsPoller._registry.clear()


def _forms_remembered_elsewhere():
    """Also for test modules that spawn at import: remembered form values never land in the
    working directory (the fixture below gives each test its own file)."""
    import atexit
    import shutil
    import tempfile

    from wrapspawner import profiles

    folder = tempfile.mkdtemp(prefix="jhpc-test-forms-")
    atexit.register(shutil.rmtree, folder, True)
    profiles.REMEMBER_FILE_DEFAULT = os.path.join(folder, "forms.json")


_forms_remembered_elsewhere()


@pytest.fixture(autouse=True)
def _forms_remembered_in_tmp(tmp_path_factory, monkeypatch):
    """ProfilesSpawner remembers form values in a file (wrapspawner.remember): each test gets its
    own, never one in the working directory."""
    from wrapspawner import profiles, remember

    folder = tmp_path_factory.mktemp("forms")
    monkeypatch.setattr(profiles, "REMEMBER_FILE_DEFAULT", str(folder / "forms.json"))
    for kept in (remember._stores, profiles._prefills, profiles._refused_forms):
        kept.clear()
    yield
    for kept in (remember._stores, profiles._prefills, profiles._refused_forms):
        kept.clear()


def pytest_terminal_summary(terminalreporter):
    """Print the figures tests measured (their stdout lines) once, at the end of the run,
    so CI logs show submit->ready times and the like even under -q."""
    lines = []
    for report in terminalreporter.stats.get("passed", []):
        if report.when == "call" and report.capstdout.strip():
            name = report.nodeid.split("::", 1)[-1]
            lines += [f"{name}: {line}" for line in report.capstdout.strip().splitlines()]
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
