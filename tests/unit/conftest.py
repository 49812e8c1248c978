"""The unit tier mirrors the package: tests/unit/<folder>/ tests batchspawner/<folder>/ (and
wrapspawner/, authenticators/); the tests at this level check the package as a whole.

Shared helpers (``helpers.py`` here, ``wrapspawner/wraphelpers.py``) and the few names one test
module takes from another are imported by module name, so every folder is on ``sys.path``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _entry in sorted(os.listdir(_HERE)):
    _path = os.path.join(_HERE, _entry)
    if os.path.isdir(_path) and not _entry.startswith(("_", ".")) and _path not in sys.path:
        sys.path.insert(0, _path)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
