"""Everything batchspawner 1.3 / wrapspawner 1.0 and this package's 0.1 need, on top of the core.

- :mod:`batchspawner.compat.names`: 1.3's names (``BatchSpawnerRegexStates``, the ``JobStatus``
  enum, ``UserEnvMixin``, ``format_template``, the old names of the core's hooks); importable from
  here too (``from batchspawner.compat import UserEnvMixin``), loaded on first use.
- :mod:`batchspawner.compat.paths`: the module paths that moved (1.3's ``batchspawner.api`` and
  ``batchspawner.singleuser``, kept; this package's 0.1 flat paths, kept one release with a
  warning).

The core imports nothing from here (``tests/unit/test_layers.py``). This ``__init__`` imports
nothing heavy: ``batchspawner/__init__.py`` installs the path table at every import, the job's
wrapper included, which must not pay for JupyterHub.
"""

import importlib

_NAMES = (
    "BatchSpawnerRegexStates", "JobStatus", "UserEnvMixin", "format_template", "JobReport", "JobState",
    "legacy_hooks", "legacy_status", "RunCommandRunner", "configured", "expand_host", "native_parsing",
    "QUERY_TRAITS", "shared_status_fits", "warn_once", "CallableRunner",
)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module("batchspawner.compat.names"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'batchspawner.compat' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
