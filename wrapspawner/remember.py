"""Forms that remember: the last values each user submitted for each profile (issue 26).

One small JSON file for the whole hub (``ProfilesSpawner.remember_file``), next to the hub's
database in the example config::

    {"version": 1, "users": {"alice": {"last": "custom",
                                       "profiles": {"custom": {"nprocs": "4", "memory": "8G"}}}}}

Why a file and not the hub's database: JupyterHub has no per-user column for a spawner's
use (``orm.User.state`` is legacy spawner state that the hub moves into the default server's
state when it builds that server), and a server's own state and ``user_options`` are per server
(cleared on stop, one profile each), while these values are per user and per profile, for every
server of that user. The file is written whole (a temporary file, then an atomic rename), mode
0600 (it names users and what they ran), and read once per hub process. Only values that passed
the profile's checks are written (canonical strings); they are checked again when a form uses
them, since the profile's fields and limits may have changed since.

A missing, unreadable or garbled file means "nothing remembered" (one warning), never a
failed form or spawn.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

log = logging.getLogger("wrapspawner.remember")

MAX_VALUE_LEN = 256
MAX_PROFILES_PER_USER = 64
_stores: dict[str, "FormMemory"] = {}


class FormMemory:
    """The remembered values of one file (one per path per hub process: :func:`store`)."""

    def __init__(self, path: str):
        self.path = path
        self.users: dict[str, dict] | None = None  # loaded on first use

    def _load(self) -> dict:
        if self.users is not None:
            return self.users
        self.users = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return self.users
        except (OSError, ValueError) as e:
            log.warning("remembered form values: cannot read %s (%s); starting with none", self.path, e)
            return self.users
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            log.warning("remembered form values: %s is not a jupyterhub-hpc forms file; starting with none", self.path)
            return self.users
        for name, entry in users.items():
            if isinstance(name, str) and isinstance(entry, dict) and isinstance(entry.get("profiles"), dict):
                profiles = {
                    key: {k: v for k, v in values.items() if isinstance(k, str) and _plain(v)}
                    for key, values in entry["profiles"].items()
                    if isinstance(key, str) and isinstance(values, dict)
                }
                last = entry.get("last") if isinstance(entry.get("last"), str) else ""
                self.users[name] = {"last": last, "profiles": profiles}
        return self.users

    def values(self, user: str, profile: str) -> dict:
        """The values ``user`` last submitted for ``profile`` ({} if none): not yet re-checked."""
        entry = self._load().get(user) or {}
        return dict(entry.get("profiles", {}).get(profile) or {})

    def last_profile(self, user: str) -> str:
        return (self._load().get(user) or {}).get("last", "")

    def remember(self, user: str, profile: str, values: dict) -> None:
        """Keep ``values`` (field -> canonical string) as ``user``'s last for ``profile``; write the file."""
        clean = {str(k): str(v) for k, v in values.items() if _plain(v)}
        users = self._load()
        entry = users.setdefault(user, {"last": "", "profiles": {}})
        if entry.get("last") == profile and entry["profiles"].get(profile) == clean:
            return  # nothing new: no write
        entry["last"] = profile
        entry["profiles"].pop(profile, None)
        entry["profiles"][profile] = clean  # the most recent last: the oldest go first when full
        while len(entry["profiles"]) > MAX_PROFILES_PER_USER:
            entry["profiles"].pop(next(iter(entry["profiles"])))
        self._write()

    def _write(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".forms-", suffix=".tmp", dir=folder)  # mode 0600
        except OSError as e:
            log.warning("remembered form values: cannot write in %s (%s); kept in memory only", folder, e)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "users": self.users}, f, separators=(",", ":"), sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("remembered form values: cannot write %s (%s); kept in memory only", self.path, e)
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _plain(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) <= MAX_VALUE_LEN


def store(path: str) -> FormMemory | None:
    """The memory kept in ``path`` (None when ``path`` is empty: remember nothing)."""
    if not path:
        return None
    path = os.path.abspath(path)
    if path not in _stores:
        _stores[path] = FormMemory(path)
    return _stores[path]
