"""Get batchspawner 1.3.0's own ``tests/test_spawners.py`` to run against this package.

The file is not part of this repository (it is jupyterhub/batchspawner's, BSD-3-Clause) and
not in the 1.3.0 sdist on PyPI, so it is fetched, pinned by its SHA-256, and cached per machine:

1. ``$JHPC_BS13_TEST_SPAWNERS``: a path to the file (e.g. a site's own copy);
2. the cache, ``/var/cache/jupyterhub-hpc/bs13/test_spawners.py``;
3. a git clone of jupyterhub/batchspawner (``$JHPC_BS13_GIT``, or a mirror found on this
   machine): ``git show v1.3.0:batchspawner/tests/test_spawners.py``;
4. GitHub's raw file at tag v1.3.0.

Only a file whose SHA-256 is the tag's is used. Two adaptations are made on the way, both
forced by where the file runs, none to what it asserts: its relative imports (``from ..
import X``: it lived inside the ``batchspawner`` package) become ``from batchspawner import
X``, and the fixtures its conftest took from JupyterHub's test suite (``db``,
``event_loop``; JupyterHub 6 no longer has ``event_loop``) come from ``conftest_13.py``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import urllib.request

TAG = "v1.3.0"
PATH_IN_REPO = "batchspawner/tests/test_spawners.py"
SHA256 = "e078be293d12589f8b8ef9ece658230502a98518bff7468e866a7cbe4d9c899d"
CACHE = "/var/cache/jupyterhub-hpc/bs13/test_spawners.py"
RAW_URL = f"https://raw.githubusercontent.com/jupyterhub/batchspawner/{TAG}/{PATH_IN_REPO}"
MIRROR_GLOBS = ("/work/.mirror/jupyterhub+batchspawner/repo", "/work/.mirror/jupyterhub+batchspawner*/repo")


def _ok(data: bytes | None) -> bool:
    return data is not None and hashlib.sha256(data).hexdigest() == SHA256


def _from_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _from_git(repo):
    try:
        out = subprocess.run(["git", "-C", repo, "show", f"{TAG}:{PATH_IN_REPO}"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _from_github():
    try:
        with urllib.request.urlopen(RAW_URL, timeout=10) as r:  # noqa: S310 - fixed https URL
            return r.read()
    except Exception:
        return None


def fetch() -> tuple[bytes | None, str]:
    """(the file's bytes, where from), or (None, what was tried)."""
    tried = []
    env = os.environ.get("JHPC_BS13_TEST_SPAWNERS")
    if env:
        data = _from_file(env)
        if _ok(data):
            return data, env
        tried.append(f"{env} (missing or not the {TAG} file)")
    data = _from_file(CACHE)
    if _ok(data):
        return data, CACHE
    repos = [os.environ["JHPC_BS13_GIT"]] if os.environ.get("JHPC_BS13_GIT") else []
    for pattern in MIRROR_GLOBS:
        repos += sorted(glob.glob(pattern))
    for repo in dict.fromkeys(repos):
        data = _from_git(repo)
        if _ok(data):
            _cache(data)
            return data, f"git {repo} {TAG}"
        tried.append(f"git {repo}")
    data = _from_github()
    if _ok(data):
        _cache(data)
        return data, RAW_URL
    tried.append(RAW_URL)
    return None, "; ".join(tried)


def _cache(data: bytes):
    try:
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        tmp = CACHE + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, CACHE)
    except OSError:
        pass  # a read-only cache only costs the next run a fetch


IMPORT_RE = re.compile(r"^(\s*)from \.\. import ", re.M)


def adapt(data: bytes) -> str:
    """The file as it runs here: only its relative imports of the package change."""
    text = data.decode()
    adapted, n = IMPORT_RE.subn(r"\1from batchspawner import ", text)
    if n == 0:
        raise ValueError("no relative import found: not the expected file")
    return adapted
