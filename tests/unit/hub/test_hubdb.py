"""batchspawner.hub.hubdb: the hub's SQLite in WAL mode, commits still synced (issue 16)."""

import pytest
from sqlalchemy import create_engine, text

from batchspawner.hub import hubdb


def _pragmas(path):
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        mode = conn.execute(text("PRAGMA journal_mode")).scalar()
        sync = conn.execute(text("PRAGMA synchronous")).scalar()
    engine.dispose()
    return mode, sync


def test_wal_with_every_commit_synced(tmp_path):
    hubdb.sqlite_wal()
    hubdb.sqlite_wal()  # twice: one listener
    assert _pragmas(tmp_path / "hub.sqlite") == ("wal", 2)  # 2 = FULL
    hubdb.sqlite_wal("normal")
    assert _pragmas(tmp_path / "other.sqlite") == ("wal", 1)
    hubdb.sqlite_wal()
    assert _pragmas(tmp_path / "third.sqlite") == ("wal", 2)


def test_a_bad_sync_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="sqlite_wal.*OFF.*FULL"):
        hubdb.sqlite_wal("OFF")
