"""The send path's writes on SQLite: many instances' claims and outcomes in one transaction, in one
call to the database thread.

Why: on SQLite every statement issued through SQLAlchemy's async layer is three or four round trips
between the event loop and aiosqlite's thread (open a cursor, execute, fetch, close), and a
transaction adds its commit and the pool's reset; a send made ~20 of them, each a thread hand-off
fighting the event loop for the GIL. That, not SQLite, capped a hub at ~100 sends per second
(``docs/PERFORMANCE.md``, "Send writes batched across instances"). Here the send loops of all
instances line up (:class:`~wahub.store.groupcommit.GroupCommit`) and one writer task runs every
pending request as one synchronous function on the store's one SQLite connection, in its thread:
one hand-off and one commit for the lot.

What does not change: the SQL (each statement is the prebuilt one of :mod:`wahub.store.sql.outbox`,
compiled for SQLite once), and each request's atomicity: a request runs inside its own
``SAVEPOINT``, so a claim refused by the one-``sending``-per-instance index rolls back alone, and the
batch commits before any caller hears its answer (a claim with hand-over is durable before the
engine is called). A failure of the transaction itself (locked, disk full) fails every request of
the batch with :class:`StoreUnavailable`, as a single write would.

Only for one node on SQLite: with leases (PostgreSQL, several nodes) each write checks its lease in
its own transaction (:mod:`wahub.store.sql.fence`) and the plain path is used.

The one seam below SQLAlchemy: the aiosqlite connection's ``_execute(fn)`` (run ``fn`` in its
thread), the call every aiosqlite method is built on; ``tests/integration/test_send_batch.py`` fails if
an aiosqlite release drops it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

from wahub.store.groupcommit import GroupCommit
from wahub.store.sql.direct import driver

_DIALECT = sqlite.dialect(paramstyle="named")


_BIND = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True)
class Statement:
    """A prebuilt statement compiled once for SQLite, its parameters named as in the statement.

    The values SQLAlchemy would bind itself (constants such as ``'queued'`` or ``LIMIT 1``) are
    written into the SQL text rather than bound. A value bound where it is compared with
    ``outbox.status`` makes SQLite re-prepare the statement at every execution: the
    partial index ``uq_outbox_one_sending`` (``WHERE status = 'sending'``) may or may not apply
    depending on it, so SQLite marks the statement expired whenever that parameter is bound
    (``sqlite3_bind_*`` with the parameter in the statement's ``expmask``). The claim took 72–74 µs
    instead of 21–22 µs (``bench/claim_sql.py``; ``docs/PERFORMANCE.md``, "Constants in the SQL text").
    """

    sql: str

    @classmethod
    def of(cls, stmt: sa.ClauseElement, keys: Sequence[str] | None = None) -> Statement:
        """Compile ``stmt`` (with ``keys``: only these columns of an ``INSERT``)."""
        compiled = stmt.compile(dialect=_DIALECT, column_keys=list(keys) if keys is not None else None)
        assert isinstance(compiled, SQLCompiler)
        ours = {b.key for b in compiled.binds.values() if b.required} | set(keys or ())
        values = compiled.construct_params(_check=False) or {}
        constants = {k: compiled.render_literal_value(v, compiled.binds[k].type)
                     for k, v in values.items() if k not in ours}
        sql = _BIND.sub(lambda m: constants.get(m[1], m[0]), str(compiled))
        return cls(sql)

    def run(self, conn: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        """Execute with ``params`` (every parameter the statement names)."""
        return conn.execute(self.sql, params)


Apply = Callable[[sqlite3.Connection], Any]


async def in_database_thread(conn: AsyncConnection, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(sqlite3_connection, *args)`` synchronously in aiosqlite's thread, on the connection
    ``conn`` (checked out from a SQLite engine) wraps: one hand-off for the whole call. The seam is
    aiosqlite's ``Connection._execute``, the call each of its own methods is built on."""
    raw = await driver(conn)
    return await raw._execute(fn, raw._conn, *args)


@dataclass
class _Request:
    apply: Apply
    catch: tuple[type[BaseException], ...] = field(default=())
    on_caught: Any = None


def _run_batch(conn: sqlite3.Connection, batch: Sequence[_Request]) -> list[Any]:
    """Every request in its own savepoint, all in one transaction (runs in the database thread)."""
    results: list[Any] = []
    if conn.in_transaction:  # never expected: the pool hands the connection over without one
        conn.rollback()
    conn.execute("BEGIN")
    try:
        for req in batch:
            conn.execute("SAVEPOINT send_write")
            try:
                result = req.apply(conn)
            except req.catch:
                conn.execute("ROLLBACK TO send_write")
                result = req.on_caught
            except sqlite3.OperationalError:
                raise  # the transaction itself is in trouble (locked, disk full): the whole batch fails
            except Exception as exc:  # noqa: BLE001 - this request's own failure, raised in its caller only
                conn.execute("ROLLBACK TO send_write")
                result = exc
            conn.execute("RELEASE send_write")
            results.append(result)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return results


class SqliteSendWrites:
    """Group commit of the send path's writes on the store's SQLite connection.

    ``engine`` is the store's writer engine (one pooled connection). ``write_faults(driver_errors)`` is
    the store's fault mapping (:meth:`SqlBase._write_faults`): a failure of a batch's transaction
    becomes :class:`StoreUnavailable` and is reported as a store fault; a committed batch clears it.
    """

    def __init__(self, engine: Any, write_faults: Callable[[tuple[type[BaseException], ...]],
                                                           AbstractAsyncContextManager[None]],
                 *, max_batch: int = 256) -> None:
        self.engine = engine
        self._write_faults = write_faults
        self._commit: GroupCommit[_Request, Any] = GroupCommit(self._flush, max_batch=max_batch)

    async def run(self, apply: Apply, *, catch: tuple[type[BaseException], ...] = (), on_caught: Any = None) -> Any:
        """Run ``apply(conn)`` (synchronous, in the database thread) in the next batch; its result
        once the batch committed. An exception in ``catch`` rolls back only this request and answers
        ``on_caught``; any other error of the request rolls back only this request and is raised here;
        an operational database error (locked, disk full, I/O) fails the whole batch:
        :class:`StoreUnavailable`."""
        return await self._commit.submit(_Request(apply, catch, on_caught))

    async def close(self) -> None:
        """Finish the batches already queued; refuse new requests."""
        await self._commit.close()

    async def _flush(self, batch: Sequence[_Request]) -> Sequence[Any]:
        async with self._write_faults((sqlite3.OperationalError,)), self.engine.connect() as conn:
            results: list[Any] = await in_database_thread(conn, _run_batch, batch)
        return results
