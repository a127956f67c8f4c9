"""Schema migrations with Alembic; the revisions live in ``wahub/store/migrations/versions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from wahub.store.tables import NOT_IN_METADATA

MIGRATIONS = Path(__file__).parent / "migrations"


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter for autogenerate: leave out what migrations keep outside ``tables.metadata``
    (``tables.NOT_IN_METADATA``, e.g. SQLite's ``outbox_open`` of migration 0010), which a new revision
    would otherwise drop."""
    return not (type_ == "table" and name in NOT_IN_METADATA)


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
