"""Module paths that moved, kept importable: one table, one finder (issue 23).

Version 0.2.0 laid the package out by concern (docs/architecture.md): the scheduler modules
went to ``batchspawner.schedulers``, the command runners to ``batchspawner.commands``, the hub's
pages and port API to ``batchspawner.hub``, the job's wrapper and apps to ``batchspawner.job``...

- batchspawner 1.3's own module paths that sites name (``batchspawner.api``, which 1.3 configs
  import to register the port API; ``batchspawner.singleuser``, 1.3's wrapper module) keep
  working for good, silently: :data:`KEPT_13`.
- This package's 0.1 flat paths (``batchspawner.slurm``, ``batchspawner.runner``...) keep
  working for one release, with a ``DeprecationWarning`` naming the new path: :data:`MOVED_01`.
  They go in 0.3.0.

An old path is the very module object of the new one (``batchspawner.slurm.SlurmSpawner is
batchspawner.schedulers.slurm.SlurmSpawner``), so ``isinstance`` checks, monkeypatching and
pickled class paths agree. Installed by ``batchspawner/__init__.py``; standard library only.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

REMOVED_IN = "0.3.0"

KEPT_13 = {
    "batchspawner.api": "batchspawner.hub.api",
    "batchspawner.singleuser": "batchspawner.job.singleuser",
}

MOVED_01 = {
    "batchspawner.accounts": "batchspawner.core.accounts",
    "batchspawner.apps": "batchspawner.job.apps",
    "batchspawner.bodylimit": "batchspawner.hub.bodylimit",
    "batchspawner.cluster": "batchspawner.polling.cluster",
    "batchspawner.condor": "batchspawner.schedulers.condor",
    "batchspawner.gridengine": "batchspawner.schedulers.gridengine",
    "batchspawner.hosts": "batchspawner.core.hosts",
    "batchspawner.hubdb": "batchspawner.hub.hubdb",
    "batchspawner.hublog": "batchspawner.core.hublog",
    "batchspawner.joblogs": "batchspawner.core.joblogs",
    "batchspawner.leftovers": "batchspawner.core.leftovers",
    "batchspawner.lsf": "batchspawner.schedulers.lsf",
    "batchspawner.metrics": "batchspawner.core.metrics",
    "batchspawner.moab": "batchspawner.schedulers.moab",
    "batchspawner.native": "batchspawner.schedulers.native",
    "batchspawner.options": "batchspawner.core.options",
    "batchspawner.parsing": "batchspawner.core.parsing",
    "batchspawner.pbs": "batchspawner.schedulers.pbs",
    "batchspawner.proof": "batchspawner.job.proof",
    "batchspawner.report": "batchspawner.usage.report",
    "batchspawner.runner": "batchspawner.commands.runner",
    "batchspawner.runners": "batchspawner.commands.policy",
    "batchspawner.sessions": "batchspawner.hub.sessions",
    "batchspawner.shared_status": "batchspawner.core.shared_status",
    "batchspawner.slurm": "batchspawner.schedulers.slurm",
    "batchspawner.ssh": "batchspawner.commands.ssh",
    "batchspawner.sshhosts": "batchspawner.commands.submit_hosts",
    "batchspawner.states": "batchspawner.core.states",
    "batchspawner.status": "batchspawner.polling.status",
    "batchspawner.templating": "batchspawner.core.templating",
    "batchspawner.torque": "batchspawner.schedulers.torque",
    "batchspawner.tunnel": "batchspawner.commands.tunnel",
    "batchspawner.tunnelrelay": "batchspawner.commands.tunnelrelay",
    "batchspawner.web": "batchspawner.hub.web",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new path (imported once, shared)."""

    def __init__(self, old: str, new: str, warn: bool):
        self.old, self.new, self.warn = old, new, warn
        self._spec = None

    def create_module(self, spec):
        if self.warn:
            warnings.warn(
                f"{self.old} moved to {self.new} in jupyterhub-hpc 0.2.0; the old path goes in "
                f"{REMOVED_IN}. Import {self.new} (or the name from batchspawner).",
                DeprecationWarning, stacklevel=2,
            )  # fmt: skip
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set the old spec on the shared module: give it back its own
        module.__spec__ = self._spec


class OldPaths(importlib.abc.MetaPathFinder):
    """Finds the moved paths in :data:`KEPT_13` and :data:`MOVED_01`, and nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        new = KEPT_13.get(fullname)
        warn = False
        if new is None:
            new = MOVED_01.get(fullname)
            warn = True
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(fullname, new, warn))


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once: it answers only for the exact old names,
    before a stale copy of an old module (a leftover ``.py`` or ``.pyc`` of an upgraded install)
    could be found and loaded a second time next to the new one."""
    if not any(isinstance(f, OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())
