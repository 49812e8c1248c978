"""Moved module paths (batchspawner/compat/paths.py): 1.3's kept silently, 0.1's kept with a warning.

Each check runs in a fresh interpreter: an import already made by another test would hide the
warning (Python caches modules)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# one fresh interpreter for every pair (in this order: the light wrapper path first)
PAIRS = [("batchspawner.singleuser", "batchspawner.job.singleuser"), ("batchspawner.api", "batchspawner.hub.api"),
         ("batchspawner.slurm", "batchspawner.schedulers.slurm")]
PROBE = r"""
import importlib, json, sys, warnings
found = {}
for old, new in json.loads(sys.argv[1]):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    found[old] = {
        "same": module is importlib.import_module(new),
        "spec": module.__spec__.name,
        "warnings": [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)
                     and "batchspawner" in str(w.message)],
        "jupyterhub": "jupyterhub" in sys.modules,
    }
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def probed():
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(PAIRS)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("old,new", [("batchspawner.api", "batchspawner.hub.api"),
                                     ("batchspawner.singleuser", "batchspawner.job.singleuser")])
def test_13_paths_are_the_new_modules_without_a_warning(probed, old, new):
    found = probed[old]
    assert found["same"] and found["spec"] == new
    assert found["warnings"] == []


def test_01_paths_are_the_new_modules_with_one_warning_naming_the_new_path(probed):
    found = probed["batchspawner.slurm"]
    assert found["same"] and found["spec"] == "batchspawner.schedulers.slurm"
    assert len(found["warnings"]) == 1
    assert "batchspawner.schedulers.slurm" in found["warnings"][0] and "0.3.0" in found["warnings"][0]


def test_the_wrapper_path_stays_light(probed):
    """1.3's wrapper module path loads the job's wrapper, not JupyterHub (it runs in every job)."""
    assert probed["batchspawner.singleuser"]["jupyterhub"] is False


def test_every_moved_path_points_at_a_module_that_exists():
    from batchspawner.compat import paths

    for old, new in {**paths.KEPT_13, **paths.MOVED_01}.items():
        rel = new.split(".", 1)[1].replace(".", os.sep)
        assert os.path.exists(os.path.join(ROOT, "batchspawner", rel + ".py")), (old, new)
        assert not os.path.exists(os.path.join(ROOT, "batchspawner", old.split(".", 1)[1] + ".py")), old


def test_a_name_that_never_existed_is_still_an_import_error():
    out = subprocess.run([sys.executable, "-c", "import batchspawner.nosuchthing"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
