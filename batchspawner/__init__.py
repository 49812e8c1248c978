"""jupyterhub-hpc batch spawners: run JupyterHub single-user servers as batch jobs.

The names batchspawner 1.3 exported stay importable from here and from
``batchspawner.batchspawner`` (see batchspawner/compat.py and docs/migration.md).
``JobStatus`` is 1.3's enum; this package's own job description is ``JobReport``
(``batchspawner.states.JobStatus``).

Names are imported on first use (PEP 562), so ``batchspawner-singleuser``, which runs in
every job before the server starts, does not pay for importing JupyterHub (about 1 s). The
port callback route (``POST /hub/api/batchspawner``) and the hub pages of batchspawner/web.py
(``/hub/hpc/log``, ``/hub/hpc/sessions``) are registered by ``batchspawner.spawner``,
which every spawner class imports.
"""

import importlib

_NAMES = {
    "BatchSpawnerRegexStates": "compat",
    "JobReport": "compat",
    "JobStatus": "compat",
    "UserEnvMixin": "compat",
    "format_template": "compat",
    "CondorSpawner": "condor",
    "GridengineSpawner": "gridengine",
    "LsfSpawner": "lsf",
    "MoabSpawner": "moab",
    "PBSSpawner": "pbs",
    "CommandError": "runner",
    "CommandRunner": "runner",
    "CommandTimeout": "runner",
    "MultiSlurmSpawner": "slurm",
    "SlurmSpawner": "slurm",
    "BatchSpawnerBase": "spawner",
    "SpawnFailed": "spawner",
    "JobState": "states",
    "TorqueSpawner": "torque",
}


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'batchspawner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))

__version__ = "0.1.0"

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
