"""jupyterhub-hpc batch spawners: run JupyterHub single-user servers as batch jobs."""

from . import api  # noqa: F401  (registers POST /hub/api/batchspawner)
from .gridengine import GridengineSpawner
from .runner import CommandError, CommandRunner, CommandTimeout
from .slurm import MultiSlurmSpawner, SlurmSpawner
from .spawner import BatchSpawnerBase, SpawnFailed
from .states import JobState, JobStatus

__version__ = "0.1.0"

__all__ = [
    "BatchSpawnerBase",
    "CommandError",
    "CommandRunner",
    "CommandTimeout",
    "GridengineSpawner",
    "JobState",
    "JobStatus",
    "MultiSlurmSpawner",
    "SlurmSpawner",
    "SpawnFailed",
]
