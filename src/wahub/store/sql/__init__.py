"""The SQL store: every database access of wa-hub, on SQLite (aiosqlite) or PostgreSQL (asyncpg).

Why the claim is safe: an item moves ``queued → sending`` in one UPDATE guarded by the status;
the partial unique index ``uq_outbox_one_sending`` lets at most one row per instance be
``sending``, so a second concurrent claim fails with an integrity error and claims nothing.
An item is marked ``handed_over_at`` (and a ``send_log`` row written) in its own committed
transaction *before* the engine is called: after a crash, ``sending`` rows without it were never
handed over and go back to ``queued``; rows with it may have reached WhatsApp and become
``uncertain``.

SQLite runs on one connection (all statements serialise through it, which avoids
"database is locked" under concurrent writers), plus one read-only connection for the webhook
lanes' reads of pending events (WAL readers never wait for the writer); PostgreSQL uses a pool.
"""

from __future__ import annotations

import inspect

from wahub.store.sql.cloud import CloudSql
from wahub.store.sql.connection import SqlBase, _whole
from wahub.store.sql.events import EventsSql
from wahub.store.sql.fleet import FleetSql
from wahub.store.sql.inbound import InboundSql
from wahub.store.sql.instances import InstancesSql
from wahub.store.sql.items import ItemsSql
from wahub.store.sql.leases import LeasesSql
from wahub.store.sql.numbers import NumbersSql
from wahub.store.sql.outbox import OutboxSql

__all__ = ["SqlStore"]


class SqlStore(InstancesSql, OutboxSql, ItemsSql, InboundSql, EventsSql, FleetSql, CloudSql, NumbersSql, LeasesSql,
               SqlBase):
    """All persistence of wa-hub behind the store ports (:mod:`wahub.store.base`)."""


# Every store call runs whole (see _whole), except ``insert_item``: it only waits for its group commit's
# answer, and the commit runs in the writer task whatever becomes of the caller (a caller cancelled
# before its batch was taken is left out of it), so a task and a shield per enqueue bought nothing.
for _name in [n for n in dir(SqlStore) if not n.startswith("_") and n not in ("close", "migrate", "insert_item")
              and inspect.iscoroutinefunction(getattr(SqlStore, n))]:
    setattr(SqlStore, _name, _whole(getattr(SqlStore, _name)))
