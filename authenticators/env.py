"""Pass values the SSO sent (kept in auth_state) into the spawner's environment.

Use as ``c.Spawner.auth_state_hook = auth_state_env_hook({"SSO_EMAIL": "mail"})``.
auth_state exists only with ``c.Authenticator.enable_auth_state = True`` and a
``JUPYTERHUB_CRYPT_KEY`` (32 bytes, hex) in the hub's environment.

Values are the user's own SSO attributes, but they still end up in a job
environment: control characters are refused and the length is capped; the env
var names are fixed by the admin, never taken from the header.
"""

from __future__ import annotations

import re

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_VALUE = 4096


def auth_state_env(auth_state, mapping: dict) -> dict:
    """``{ENV_NAME: header_name}`` -> ``{ENV_NAME: value}`` for headers present in auth_state."""
    headers = {k.lower(): v for k, v in ((auth_state or {}).get("headers") or {}).items()}
    env = {}
    for env_name, header in mapping.items():
        if not _ENV_NAME.match(env_name):
            raise ValueError(f"{env_name!r} is not a valid environment variable name")
        value = headers.get(header.lower())
        if value is None or _CONTROL.search(value) or len(value) > MAX_VALUE:
            continue
        env[env_name] = value
    return env


def auth_state_env_hook(mapping: dict):
    """A ``Spawner.auth_state_hook`` that copies selected SSO headers into ``spawner.environment``."""
    for env_name in mapping:
        if not _ENV_NAME.match(env_name):
            raise ValueError(f"{env_name!r} is not a valid environment variable name")

    def hook(spawner, auth_state):
        env = auth_state_env(auth_state, mapping)
        spawner.environment = {**spawner.environment, **env}

    return hook
