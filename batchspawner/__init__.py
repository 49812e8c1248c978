"""jupyterhub-hpc batch spawners: run JupyterHub single-user servers as batch jobs.

The names batchspawner 1.3 exported stay importable from here and from
``batchspawner.batchspawner`` (see batchspawner/compat.py and docs/migration.md).
``JobStatus`` is 1.3's enum; this package's own job description is ``JobReport``
(``batchspawner.core.states.JobStatus``).

Names are imported on first use (PEP 562), so ``batchspawner-singleuser``, which runs in
every job before the server starts, does not pay for importing JupyterHub (about 1 s). The
port callback route (``POST /hub/api/batchspawner``) and the hub pages of batchspawner/hub/web.py
(``/hub/hpc/log``, ``/hub/hpc/sessions``) are registered by ``batchspawner.spawner``,
which every spawner class imports.
"""

import importlib

from batchspawner.compat import paths as _paths

_paths.install()  # the module paths that moved (1.3's batchspawner.api, 0.1's flat ones)

_NAMES = {
    "BatchSpawnerRegexStates": "compat",
    "JobReport": "compat",
    "JobStatus": "compat",
    "UserEnvMixin": "compat",
    "format_template": "compat",
    "CondorSpawner": "schedulers.condor",
    "GridengineSpawner": "schedulers.gridengine",
    "LsfSpawner": "schedulers.lsf",
    "MoabSpawner": "schedulers.moab",
    "PBSSpawner": "schedulers.pbs",
    "CommandError": "commands.runner",
    "CommandRunner": "commands.runner",
    "CommandTimeout": "commands.runner",
    "MultiSlurmSpawner": "schedulers.slurm",
    "SlurmSpawner": "schedulers.slurm",
    "BatchSpawnerBase": "spawner",
    "SpawnFailed": "spawner",
    "JobState": "core.states",
    "TorqueSpawner": "schedulers.torque",
}


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        value = _registered_class(name)
        if value is None:
            raise AttributeError(f"module 'batchspawner' has no attribute {name!r}")
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _registered_class(name):
    """A scheduler class registered after the names above (``batchspawner.OarSpawner``): every
    spawner of the entry point table is importable from here by its class name."""
    if name.startswith("_") or not name.endswith("Spawner"):
        return None
    from batchspawner import schedulers

    for value in schedulers.registered().values():
        if value.rpartition(":")[2] == name:
            return schedulers.load(value)
    return None


def __dir__():
    return sorted(set(globals()) | set(_NAMES))

__version__ = "0.2.0"

__all__ = [
    "BatchSpawnerBase",
    "BatchSpawnerRegexStates",
    "CommandError",
    "CommandRunner",
    "CommandTimeout",
    "CondorSpawner",
    "GridengineSpawner",
    "JobReport",
    "JobState",
    "JobStatus",
    "LsfSpawner",
    "MoabSpawner",
    "MultiSlurmSpawner",
    "PBSSpawner",
    "SlurmSpawner",
    "SpawnFailed",
    "TorqueSpawner",
    "UserEnvMixin",
    "format_template",
]
