"""A migrated SQLite file with instances, opened with the plain ``sqlite3`` module (for the raw hot paths)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from wahub.store.migrate import upgrade_connection


def migrated_sqlite(tmp_path: Path, instances: tuple[str, ...] = ("shop",)) -> sqlite3.Connection:
    """``tmp_path/hub.sqlite3`` at the newest schema, with a ready sandbox instance per id in ``instances``."""
    path = tmp_path / "hub.sqlite3"
    with sa.create_engine(f"sqlite:///{path}").begin() as c:
        upgrade_connection(c, default_engine="sandbox")
    conn = sqlite3.connect(path)
    for iid in instances:
        conn.execute("INSERT INTO instances (id, name, webhook_events, state, state_since, created_at, engine) "
                     "VALUES (?, ?, '[]', 'ready', 1, 1, 'sandbox')", (iid, iid))
    conn.commit()
    return conn
