"""Alembic environment: runs on the connection wa-hub hands over (see ``wahub.store.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from wahub.store.migrate import include_object
from wahub.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url (a synchronous URL) to run alembic directly")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()
