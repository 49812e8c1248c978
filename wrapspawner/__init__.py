"""WrapSpawner and ProfilesSpawner: run the server with a child spawner chosen by config or by the user."""

from .profiles import Profile, ProfilesSpawner
from .wrap import WrapSpawner

__all__ = ["WrapSpawner", "ProfilesSpawner", "Profile"]
