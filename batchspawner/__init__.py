"""jupyterhub-hpc batch spawners: run JupyterHub single-user servers as batch jobs."""

from . import api  # noqa: F401  (registers POST /hub/api/batchspawner)
from .gridengine import GridengineSpawner
from .runner import CommandError, CommandRunner, CommandTimeout
from .condor import CondorSpawner
from .lsf import LsfSpawner
from .moab import MoabSpawner
from .pbs import PBSSpawner
from .slurm import MultiSlurmSpawner, SlurmSpawner
from .spawner import BatchSpawnerBase, SpawnFailed
from .states import JobState, JobStatus
from .torque import TorqueSpawner

__version__ = "0.1.0"

__all__ = [
    "BatchSpawnerBase",
    "CommandError",
    "CommandRunner",
    "CommandTimeout",
    "CondorSpawner",
    "GridengineSpawner",
    "JobState",
    "JobStatus",
    "LsfSpawner",
    "MoabSpawner",
    "MultiSlurmSpawner",
    "PBSSpawner",
    "SlurmSpawner",
    "SpawnFailed",
    "TorqueSpawner",
]
