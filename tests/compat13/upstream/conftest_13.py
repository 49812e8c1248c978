"""The fixtures 1.3.0's tests/conftest.py took from JupyterHub's test suite.

1.3.0's conftest was ``from jupyterhub.tests.conftest import db, event_loop``. JupyterHub 6
still has ``db`` (a hub database in memory with one user, "user"); ``event_loop`` is gone
(pytest-asyncio owns the loop now), so it is the running loop here. Nothing else is added.

``JHPC_BS13_CONFIG`` (JSON: {"Class": {"trait": value}}) is a site configuration given to every
spawner the tests build, as a ``jupyterhub_config.py`` would (the tests build spawners with
``User._new_spawner``, whose config is then this one); empty by default.
"""

import json
import os

import pytest
from jupyterhub.tests.conftest import db  # noqa: F401
from jupyterhub.user import User
from traitlets.config import Config


@pytest.fixture
async def event_loop():
    import asyncio

    return asyncio.get_running_loop()


_site = json.loads(os.environ.get("JHPC_BS13_CONFIG") or "{}")
if _site:
    _new_spawner = User._new_spawner

    def _with_site_config(self, *args, **kwargs):
        kwargs.setdefault("config", Config(_site))
        return _new_spawner(self, *args, **kwargs)

    User._new_spawner = _with_site_config
