"""SQLite statements run on the driver's own connection: one hand-off to its thread per statement.

Why: through SQLAlchemy's asyncio adapter, a statement on aiosqlite costs three to four hand-offs
between the event loop and aiosqlite's thread (open a cursor, execute, fetch the rows, close the
cursor), a commit one more. Each hand-off waits until both threads are scheduled and hold the GIL:
microseconds on an idle machine, milliseconds when the CPUs are shared, and the one SQLite writer
connection is held for all of them, so every write queued behind it waits too. That was the tail
of inbound message → webhook latency on a loaded machine (docs/PERFORMANCE.md, "Inbound latency
under load"). The hot paths of the inbound and webhook rooms therefore run their statements here,
inside a transaction SQLAlchemy opened and commits (:meth:`SqlBase._tx`), on the same connection.

Errors are the ones SQLAlchemy would have raised (``IntegrityError``, ``OperationalError``, …), so
the callers' fault handling (``StoreUnavailable``, 503 + ``Retry-After``) is unchanged. SQLite only:
on PostgreSQL (asyncpg, no thread) the callers use SQLAlchemy as everywhere else.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]


async def fetch_all(conn: AsyncConnection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Run one statement (a ``SELECT`` or a write with ``RETURNING``) and return its rows: one hand-off."""
    raw = await driver(conn)
    try:
        return [tuple(row) for row in await raw.execute_fetchall(sql, params)]
    except sqlite3.Error as exc:
        raise _translated(exc, sql) from exc


async def execute_many(conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement once per parameter row: one hand-off for all rows."""
    raw = await driver(conn)
    try:
        await raw.executemany(sql, rows)
    except sqlite3.Error as exc:
        raise _translated(exc, sql) from exc


async def driver(conn: AsyncConnection) -> Any:
    """The driver's connection under ``conn`` (aiosqlite's or asyncpg's; checked out by ``conn``, its
    transaction is ``conn``'s)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _translated(exc: sqlite3.Error, sql: str) -> sa_exc.DBAPIError:
    """The SQLAlchemy error wrapping ``exc``, as a statement run through SQLAlchemy would raise."""
    for driver_type, ours in ((sqlite3.IntegrityError, sa_exc.IntegrityError),
                              (sqlite3.OperationalError, sa_exc.OperationalError),
                              (sqlite3.DatabaseError, sa_exc.DatabaseError)):
        if isinstance(exc, driver_type):
            return ours(sql, None, exc)
    return sa_exc.DBAPIError(sql, None, exc)


class LoopReader:
    """A read-only SQLite connection used on the event loop's own thread, for short indexed reads.

    Why: a read through aiosqlite is a hand-off to its thread and one back, and on a loaded machine
    each hand-off waits for the woken thread to get a CPU (tens of ms in the run queue at load 3 on
    two cores, measured with ``/proc/<pid>/task/<tid>/schedstat``). A webhook lane reads its pending
    events after every new event, so that wait was on the path of every inbound webhook. An indexed
    read of a few rows from a WAL database takes well under a millisecond and never waits for the
    writer (WAL readers do not take its lock), so it is cheaper to run it where the lane runs.

    ``busy_timeout`` is 0: the rare moment SQLite answers busy to a WAL reader (a WAL restart), the
    read is not made here (None) and the caller reads through the driver's thread instead; so does
    a database that is not a file. Any other error closes this connection for good (same answer).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path if path and path != ":memory:" else None
        self._conn: sqlite3.Connection | None = None

    def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row] | None:
        """The rows of one read, or None when it is not made here (see the class)."""
        if self.path is None:
            return None
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
                self._conn.execute("PRAGMA query_only=ON")
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                self.close()
            return None
        except sqlite3.Error:
            self.close()
            return None

    def close(self) -> None:
        """Close the connection; reads are no longer made here."""
        conn, self._conn, self.path = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
