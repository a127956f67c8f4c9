"""Schema migrations with Alembic; the revisions live in ``wahub/store/migrations/versions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def config(connection: Any = None) -> Config:
    """An Alembic config pointing at wa-hub's migrations (optionally bound to a connection)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_connection(connection: Any) -> None:
    """Upgrade the database behind a synchronous SQLAlchemy connection to the newest revision."""
    command.upgrade(config(connection), "head")
