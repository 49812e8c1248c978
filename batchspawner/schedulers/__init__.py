"""The schedulers this package ships, read from one place: its ``jupyterhub.spawners`` entry points.

A site names a spawner by its entry point (``c.JupyterHub.spawner_class = "slurm"``), so the
entry point table in pyproject.toml is where a scheduler is registered; nothing else lists them.
Tests and tools that need "every scheduler" take it from :func:`spawner_classes` (see
docs/architecture.md). Reading the table needs the package's metadata (an installed or
editable install, as JupyterHub itself needs to find the entry points).
"""

from __future__ import annotations

import importlib
from importlib import metadata

GROUP = "jupyterhub.spawners"
PACKAGE = "batchspawner"


def registered() -> dict[str, str]:
    """{entry point name: "module:Class"} of the batch spawners this package installs."""
    found = {}
    for ep in metadata.entry_points(group=GROUP):
        if ep.value.split(":", 1)[0].split(".", 1)[0] == PACKAGE:
            found[ep.name] = ep.value
    return dict(sorted(found.items()))


def load(value: str):
    module, _, name = value.partition(":")
    return getattr(importlib.import_module(module), name)


def spawner_classes() -> dict[str, type]:
    """{entry point name: spawner class} for every registered scheduler."""
    return {name: load(value) for name, value in registered().items()}
