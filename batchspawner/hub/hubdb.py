"""The hub's own SQLite database in WAL mode: a hub that keeps answering during spawn storms.

JupyterHub commits its database on every token-authenticated API request and several
times per spawn, on its event loop. In SQLite's default (rollback journal) mode each commit
creates, syncs and deletes a journal file and syncs the database: under a storm of spawns on
a busy machine those syncs stall the loop for seconds (bench/RESULTS.md: a storm of 100
spawns, API p99 3.5-4.5 s with the default journal and 1.4-1.7 s in WAL mode, same machine).
In WAL mode a commit appends to ``<db>-wal``; with ``synchronous=FULL`` (the default here)
every commit is still synced before it returns, so a committed job id survives a crash of
the hub or of the machine.

Use it in ``jupyterhub_config.py`` (``jupyterhub_config.example.py`` does)::

    from batchspawner.hub.hubdb import sqlite_wal
    sqlite_wal()

It affects SQLite connections only (a PostgreSQL or MySQL ``db_url`` is left alone). WAL
mode stays with the database file; backups must copy ``jupyterhub.sqlite`` together with
its ``-wal`` file, or use ``sqlite3 jupyterhub.sqlite ".backup copy.sqlite"``.
"""

from __future__ import annotations

import sqlite3

SYNC_MODES = ("FULL", "EXTRA", "NORMAL")
_installed: dict = {}


def sqlite_wal(synchronous: str = "FULL") -> None:
    """Open every SQLite connection of this process in WAL mode (idempotent).

    ``synchronous``: ``FULL`` (default; every commit synced), ``EXTRA``, or ``NORMAL``
    (commits synced at checkpoints only: a power loss may lose the last commits, a
    crash of the hub does not)."""
    mode = str(synchronous).upper()
    if mode not in SYNC_MODES:
        raise ValueError(f"sqlite_wal(synchronous={synchronous!r}): use one of {', '.join(SYNC_MODES)}")
    _installed["synchronous"] = mode
    if _installed.get("listener"):
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(conn, record):
        if isinstance(conn, sqlite3.Connection):
            cursor = conn.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={_installed['synchronous']}")
            finally:
                cursor.close()

    event.listen(Engine, "connect", on_connect)
    _installed["listener"] = on_connect
