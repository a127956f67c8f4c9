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
thread), the call every aiosqlite method is built on; ``tests/integration/test_send_statements.py``
fails if an aiosqlite release drops it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from wahub.domain.errors import StoreUnavailable
from wahub.store.groupcommit import GroupCommit

_DIALECT = sqlite.dialect(paramstyle="named")


@dataclass(frozen=True)
class Statement:
    """A prebuilt statement compiled once for SQLite: its SQL text and the values SQLAlchemy binds
    itself (literals such as ``'queued'`` or ``LIMIT 1``)."""

    sql: str
    defaults: dict[str, Any]

    @classmethod
    def of(cls, stmt: sa.ClauseElement, keys: Sequence[str] | None = None) -> Statement:
        """Compile ``stmt`` (with ``keys``: only these columns of an ``INSERT``)."""
        compiled = stmt.compile(dialect=_DIALECT, column_keys=list(keys) if keys is not None else None)
        assert isinstance(compiled, SQLCompiler)
        ours = {b.key for b in compiled.binds.values() if b.required} | set(keys or ())
        values = compiled.construct_params(_check=False) or {}
        return cls(str(compiled), {k: v for k, v in values.items() if k not in ours})

    def run(self, conn: sqlite3.Connection, params: dict[str, Any]) -> sqlite3.Cursor:
        """Execute with ``params`` on top of the defaults."""
        return conn.execute(self.sql, {**self.defaults, **params})


Apply = Callable[[sqlite3.Connection], Any]


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
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise  # the transaction itself is in trouble: the whole batch fails
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

    ``engine`` is the store's writer engine (one pooled connection). ``fault(exc)`` turns a failure of
    a batch's transaction into the store's :class:`StoreUnavailable` (and reports the fault);
    ``cleared()`` reports a batch that committed.
    """

    def __init__(self, engine: Any, fault: Callable[[BaseException], StoreUnavailable],
                 cleared: Callable[[], None], *, max_batch: int = 256) -> None:
        self.engine = engine
        self._fault = fault
        self._cleared = cleared
        self._commit: GroupCommit[_Request, Any] = GroupCommit(self._flush, max_batch=max_batch)

    async def run(self, apply: Apply, *, catch: tuple[type[BaseException], ...] = (), on_caught: Any = None) -> Any:
        """Run ``apply(conn)`` (synchronous, in the database thread) in the next batch; its result
        once the batch committed. An exception in ``catch`` rolls back only this request and answers
        ``on_caught``; another database error (not operational) rolls back only this request and is
        raised here; an operational one fails the batch: :class:`StoreUnavailable`."""
        return await self._commit.submit(_Request(apply, catch, on_caught))

    async def close(self) -> None:
        """Finish the batches already queued; refuse new requests."""
        await self._commit.close()

    async def _flush(self, batch: Sequence[_Request]) -> Sequence[Any]:
        try:
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                aio = raw.driver_connection  # the aiosqlite connection; its thread owns the sqlite3 one
                results: list[Any] = await aio._execute(_run_batch, aio._conn, batch)
        except (sqlite3.OperationalError, sa.exc.OperationalError, OSError) as exc:
            raise self._fault(exc) from exc
        self._cleared()
        return results
