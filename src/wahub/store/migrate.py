"""Schema migrations with Alembic; the revisions live in ``wahub/store/migrations/versions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def config(connection: Any = None, default_engine: str | None = None) -> Config:
    """An Alembic config pointing at wa-hub's migrations (optionally bound to a connection).

    ``default_engine`` is the engine a migration gives instances that predate ``instances.engine``.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if default_engine is not None:
        cfg.attributes["default_engine"] = default_engine
    return cfg


def upgrade_connection(connection: Any, default_engine: str | None = None, revision: str = "head") -> None:
    """Upgrade the database behind a synchronous SQLAlchemy connection to ``revision`` (the newest)."""
    command.upgrade(config(connection, default_engine), revision)
