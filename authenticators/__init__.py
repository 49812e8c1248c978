"""SSO header authentication behind a trusted front proxy."""

from .env import auth_state_env_hook
from .remote_user import RemoteUserAuthenticator, RemoteUserLocalAuthenticator

__all__ = ["RemoteUserAuthenticator", "RemoteUserLocalAuthenticator", "auth_state_env_hook"]
