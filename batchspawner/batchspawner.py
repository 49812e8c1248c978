"""The module path batchspawner 1.3 used (``batchspawner.batchspawner.SlurmSpawner``...).

Configurations and site modules that name it keep working; everything here is the
package's own class or batchspawner/compat.py (see docs/migration.md).
"""

from .compat import BatchSpawnerRegexStates, JobStatus, UserEnvMixin, format_template  # noqa: F401
from .condor import CondorSpawner  # noqa: F401
from .gridengine import GridengineSpawner  # noqa: F401
from .lsf import LsfSpawner  # noqa: F401
from .moab import MoabSpawner  # noqa: F401
from .pbs import PBSSpawner  # noqa: F401
from .slurm import MultiSlurmSpawner, SlurmSpawner  # noqa: F401
from .spawner import BatchSpawnerBase  # noqa: F401
from .torque import TorqueSpawner  # noqa: F401
