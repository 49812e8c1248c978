"""Every list of "all schedulers" comes from the entry point table (batchspawner/schedulers/__init__.py).

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


def test_every_registered_class_is_importable_from_batchspawner_by_its_name():
    """``batchspawner.OarSpawner`` (a profile's "class" string) for a scheduler registered only in
    pyproject.toml, as for the names batchspawner 1.3 exported."""
    import batchspawner

    for name, cls in schedulers.spawner_classes().items():
        assert getattr(batchspawner, cls.__name__) is cls, name
    assert not hasattr(batchspawner, "NoSuchSpawner")


def _case_names():
    from test_conformance import case_paths

    return {tomllib.loads(path.read_text())["scheduler"]: path for path in case_paths()}


def test_every_registered_scheduler_has_a_conformance_case():
    from test_conformance import CASES

    assert {case.id for case in CASES} == set(_case_names()) & set(schedulers.registered())
    missing = sorted(set(schedulers.registered()) - set(_case_names()))
    assert missing == [], "add tests/fixtures/<name>/case.toml for these (docs/new-scheduler.md)"


def test_every_conformance_case_names_a_scheduler_of_the_pyproject_table():
    """A case file for a name pyproject.toml does not register (a typo) would never run."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][schedulers.GROUP]
    orphans = {name: str(path) for name, path in _case_names().items() if name not in table}
    assert orphans == {}


def test_a_registered_scheduler_without_a_case_file_is_named(monkeypatch):
    """The coverage check above is not vacuous: a registry entry with no case.toml is reported."""
    registered = dict(schedulers.registered(), newsched="batchspawner.schedulers.slurm:SlurmSpawner")
    monkeypatch.setattr(schedulers, "registered", lambda: registered)
    assert sorted(set(schedulers.registered()) - set(_case_names())) == ["newsched"]
