"""Every list of "all schedulers" comes from the entry point table (batchspawner/schedulers.py).

A scheduler added to pyproject.toml's ``jupyterhub.spawners`` table is then checked by the
conformance suite, the fail-closed tests and these checks without editing any list; one that is
missing from a check fails here instead of passing silently.
"""

import tomllib
from pathlib import Path

from batchspawner import BatchSpawnerBase, schedulers

ROOT = Path(__file__).resolve().parents[3]


def test_the_registry_is_the_pyproject_table_as_installed():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][schedulers.GROUP]
    ours = {name: value for name, value in table.items() if value.startswith("batchspawner.")}
    # a difference means the installed metadata is stale: reinstall (pip install -e .)
    assert schedulers.registered() == dict(sorted(ours.items()))
    assert len(ours) >= 8


def test_every_registered_class_is_a_batch_spawner_with_a_script():
    for name, cls in schedulers.spawner_classes().items():
        assert issubclass(cls, BatchSpawnerBase), name
        script = cls.class_traits()["batch_script"].default_value
        assert script.strip() and script != BatchSpawnerBase.class_traits()["batch_script"].default_value, name


def test_every_registered_scheduler_has_a_conformance_case():
    from test_conformance import CASES

    covered = {case.cls for case in CASES}
    missing = [name for name, cls in schedulers.spawner_classes().items() if cls not in covered]
    assert missing == [], "add a Case to tests/unit/schedulers/test_conformance.py for these"
