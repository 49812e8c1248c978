"""jupyterhub-hpc batch spawners: run JupyterHub single-user servers as batch jobs.

The names batchspawner 1.3 exported stay importable from here and from
``batchspawner.batchspawner`` (see batchspawner/compat.py and docs/migration.md).
``JobStatus`` is 1.3's enum; this package's own job description is ``JobReport``
(``batchspawner.states.JobStatus``).
"""

from . import api  # noqa: F401  (registers POST /hub/api/batchspawner)
from . import web  # noqa: F401  (registers /hub/hpc/log and /hub/hpc/sessions)
from .compat import BatchSpawnerRegexStates, JobReport, JobStatus, UserEnvMixin, format_template
from .condor import CondorSpawner
from .gridengine import GridengineSpawner
from .lsf import LsfSpawner
from .moab import MoabSpawner
from .pbs import PBSSpawner
from .runner import CommandError, CommandRunner, CommandTimeout
from .slurm import MultiSlurmSpawner, SlurmSpawner
from .spawner import BatchSpawnerBase, SpawnFailed
from .states import JobState
from .torque import TorqueSpawner

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
