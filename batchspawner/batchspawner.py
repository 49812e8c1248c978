"""The module path batchspawner 1.3 used (``batchspawner.batchspawner.SlurmSpawner``...).

Configurations and site modules that name it keep working; everything here is the
package's own class or batchspawner/compat.py (see docs/migration.md).
"""

from batchspawner.compat import BatchSpawnerRegexStates, JobStatus, UserEnvMixin, format_template  # noqa: F401
from batchspawner.schedulers.condor import CondorSpawner  # noqa: F401
from batchspawner.schedulers.gridengine import GridengineSpawner  # noqa: F401
from batchspawner.schedulers.lsf import LsfSpawner  # noqa: F401
from batchspawner.schedulers.moab import MoabSpawner  # noqa: F401
from batchspawner.schedulers.pbs import PBSSpawner  # noqa: F401
from batchspawner.schedulers.slurm import MultiSlurmSpawner, SlurmSpawner  # noqa: F401
from batchspawner.spawner import BatchSpawnerBase  # noqa: F401
from batchspawner.schedulers.torque import TorqueSpawner  # noqa: F401
