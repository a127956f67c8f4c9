"""The SQL connection shared by every port: engine, transactions, row mappers, the whole-call guard."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wahub.domain.errors import StoreUnavailable
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.store import tables as t
from wahub.store.groupcommit import Batch, GroupCommit
from wahub.store.records import (
    EventDraft,
    EventRecord,
    InstanceRecord,
    outbox_item,
)
from wahub.store.sql.sendbatch import SqliteSendWrites


def _item(row: Any) -> OutboxItem:
    return outbox_item(row._mapping)


def _instance(row: Any) -> InstanceRecord:
    m = row._mapping
    return InstanceRecord(
        id=m["id"], name=m["name"], webhook_url=m["webhook_url"],
        webhook_events=json.loads(m["webhook_events"] or "[]"), webhook_secret=m["webhook_secret"],
        state=m["state"], state_since=m["state_since"], state_reason=m["state_reason"],
        restricted_until=m["restricted_until"], phone=m["phone"], push_name=m["push_name"],
        limit_per_minute=m["limit_per_minute"], limit_per_hour=m["limit_per_hour"],
        send_interval_ms=m["send_interval_ms"], last_error=m["last_error"], created_at=m["created_at"],
        engine=m["engine"],
        default_country_code=m["default_country_code"],
        typing_indicator_enabled=None if m["typing_indicator_enabled"] is None else bool(m["typing_indicator_enabled"]),
        apply_typing_to=json.loads(m["apply_typing_to"]) if m["apply_typing_to"] is not None else None,
    )


def _event(row: Any) -> EventRecord:
    m = row._mapping
    return EventRecord(
        seq=m["seq"], event_id=m["event_id"], instance_id=m["instance_id"], event=m["event"],
        body=m["body"], status=m["status"], attempts=m["attempts"], next_attempt_at=m["next_attempt_at"],
        created_at=m["created_at"], delivered_at=m["delivered_at"], last_error=m["last_error"],
        last_status_code=m["last_status_code"],
    )


_INSERT_EVENTS = t.events.insert()  # built once: the send path's outcome runs it

MIGRATION_LOCK_KEY = 0x77612D687562  # PostgreSQL advisory lock held while migrating ("wa-hub")
ENQUEUE_WRITERS_PG = 2  # enqueue batches in flight at once on PostgreSQL (each holds a pooled connection)
BUSY_TIMEOUT_MS = 5_000  # a locked SQLite write waits this long, then the API answers 503 + Retry-After

_Inserted = tuple[OutboxItem, bool, int]  # insert_item's answer: (item, created, open_count)


@dataclass(frozen=True)
class _NewItem:
    """One :meth:`SqlStore.insert_item` call waiting for its group commit."""

    queue_id: str
    instance_id: str
    idempotency_key: str
    key_source: str
    kind: str
    chat_id: str
    payload: dict[str, Any]
    fingerprint: str
    now: int
    max_open: int


def _new_item(seq: int, v: dict[str, Any]) -> OutboxItem:
    """The item just inserted with values ``v`` (no read-back needed)."""
    return OutboxItem(
        seq=seq, queue_id=v["queue_id"], instance_id=v["instance_id"], idempotency_key=v["idempotency_key"],
        key_source=v["key_source"], kind=ItemKind(v["kind"]), chat_id=v["chat_id"],
        payload=json.loads(v["payload"]), fingerprint=v["fingerprint"], status=ItemStatus.QUEUED, attempts=0,
        next_attempt_at=v["next_attempt_at"],
        created_at=v["created_at"], updated_at=v["updated_at"], handed_over_at=None, sent_at=None,
        message_id=None, last_error=None, error_reason=None)


class SqlBase:
    """The connection: engine, transactions and the dialect's insert; the port mixins build on it."""

    def __init__(self, url: str, *, echo: bool = False, default_engine: str | None = None,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS, idle_in_transaction_ms: int | None = None) -> None:
        self.url = url
        self.default_engine = default_engine  # what a migration gives existing instances (WAHUB_ENGINE)
        self.is_sqlite = url.startswith("sqlite")
        self._fault_listener: Callable[[str | None], None] | None = None
        self._faulted = False
        if self.is_sqlite:
            # pool_reset_on_return=None: every transaction ends in its own commit or rollback (engine.begin,
            # or a Connection closing its autobegun one), so the pool's extra ROLLBACK at check-in is a
            # wasted hand-off to aiosqlite's thread, and on a loaded machine each hand-off waits for a CPU
            # (docs/PERFORMANCE.md, "Inbound latency under load").
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, hide_parameters=True, pool_size=1, max_overflow=0, pool_timeout=60,
                pool_reset_on_return=None, connect_args={"timeout": busy_timeout_ms / 1000})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout_ms))
            # A second connection only for the webhook lanes' reads: WAL readers never wait for the
            # writer, so a lane is not queued behind every write (and WAL checkpoint) of the hub.
            self.reader: AsyncEngine = create_async_engine(
                url, echo=echo, hide_parameters=True, pool_size=1, max_overflow=0, pool_timeout=60,
                pool_reset_on_return=None, connect_args={"timeout": busy_timeout_ms / 1000})
            sa.event.listen(self.reader.sync_engine, "connect", _sqlite_pragmas(busy_timeout_ms, read_only=True))
            self.writer: AsyncEngine = self.engine  # the one writing connection
        else:
            # No pool_pre_ping: it costs a round trip before every checkout, i.e. before every batch.
            # A connection the server closed (restart, idle timeout, pg_terminate_backend) is noticed
            # by asyncpg when the socket closes; _pg_alive drops it at checkout without a round trip.
            # idle_in_transaction_ms (several nodes): the server ends a transaction a paused or cut-off
            # node left open, so its locks (on a lease row, say) never keep another node from claiming.
            server = ({"idle_in_transaction_session_timeout": str(idle_in_transaction_ms)}
                      if idle_in_transaction_ms else {})
            self.engine = create_async_engine(url, echo=echo, hide_parameters=True, pool_size=8, max_overflow=4,
                                              connect_args={"server_settings": server} if server else {})
            sa.event.listen(self.engine.sync_engine, "checkout", _pg_alive)
            self.reader = self.engine
            # The enqueue batches' own connections, one per writer: with the send loops of many instances
            # working at once the shared pool is often all checked out, and an enqueue batch waiting for
            # a connection there was the enqueue's p99 (docs/PERFORMANCE.md, "Where the PostgreSQL tail
            # came from"). No overflow: a batch waits only for the batch before it.
            self.writer = create_async_engine(url, echo=echo, hide_parameters=True, pool_size=ENQUEUE_WRITERS_PG,
                                              max_overflow=0, connect_args={"server_settings": server} if server
                                              else {})
            sa.event.listen(self.writer.sync_engine, "checkout", _pg_alive)
        # SQLite: one writer (one connection, and the batch's decisions rely on it). PostgreSQL: a batch
        # is one round trip, so several may be in flight, each on a pooled connection.
        self._enqueue: GroupCommit[_NewItem, _Inserted] = GroupCommit(
            self._insert_batch, writers=1 if self.is_sqlite else ENQUEUE_WRITERS_PG)
        # SQLite: the send loops' claims and outcomes, many instances' per transaction and thread call.
        self._send_writes = SqliteSendWrites(self.engine, self._write_faults) if self.is_sqlite else None
        self._inflight: set[asyncio.Task[Any]] = set()
        # PostgreSQL: instances whose open-count changes an enqueue batch found many of, to fold (enqueue.py)
        self._fold_ids: set[str] = set()
        self._fold_task: asyncio.Task[None] | None = None
        self._folded_rows = 0  # rows the folds deleted since the last vacuum of outbox_open_delta
        self._vacuum_refused = False  # PostgreSQL answered that vacuum with a warning (logged once)

    # -- lifecycle ------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic; see ``wahub.store.migrate``)."""
        from wahub.store import migrate

        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # nodes starting together migrate one after another
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(migrate.upgrade_connection, self.default_engine)

    async def close(self) -> None:
        """Let every query in progress finish (see :func:`_whole`), finish the enqueue batches, then
        close every pooled connection."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await self._enqueue.close()
        while self._inflight:  # a fold the last batches started
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        if self._send_writes is not None:
            await self._send_writes.close()
        await self.engine.dispose()
        if self.writer is not self.engine:
            await self.writer.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except (OSError, DBAPIError):
            return False

    def watch_faults(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(reason)`` when a write fails for the store's sake, ``listener(None)`` when one
        succeeds again."""
        self._fault_listener = listener

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. Every operational failure (locked, disk full, I/O error, connection lost)
        becomes :class:`StoreUnavailable`, the one error the API answers with 503 + ``Retry-After``."""
        async with self._write_faults(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _write_faults(self, driver_errors: tuple[type[BaseException], ...] = ()) -> AsyncIterator[None]:
        """A write: operational failures (and ``driver_errors``, for writes on the driver's own connection)
        become :class:`StoreUnavailable`; the fault listener hears of the failure and of the recovery."""
        caught: tuple[type[BaseException], ...] = (DBAPIError, OSError, *driver_errors)
        try:
            yield
        except caught as exc:
            if not (isinstance(exc, driver_errors) or store_fault(exc)):
                raise
            reason = fault_reason(exc)
            self._faulted = True
            if self._fault_listener is not None:
                self._fault_listener(reason)
            raise StoreUnavailable(f"store cannot write: {reason}") from exc
        self._write_ok()

    def _write_ok(self) -> None:
        """A write succeeded: the fault listener hears of the recovery (call on the event loop's thread)."""
        if self._faulted:
            self._faulted = False
            if self._fault_listener is not None:
                self._fault_listener(None)

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    async def _add_events(self, conn: AsyncConnection, events: Sequence[EventDraft], now: int) -> None:
        """Insert webhook event drafts inside the caller's transaction."""
        if not events:
            return
        await conn.execute(_INSERT_EVENTS, [
            {"event_id": e.event_id, "instance_id": e.instance_id, "event": e.event, "body": e.body,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now} for e in events])

    async def _insert_batch(self, reqs: Batch[_NewItem, _Inserted]) -> list[_Inserted | BaseException]:
        raise NotImplementedError  # the outbox mixin's group commit

    def _fold_later(self, instance_ids: Sequence[str]) -> None:
        raise NotImplementedError  # the outbox mixin's fold of PostgreSQL's open-count changes


def store_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the store's failure rather than the statement's: an operational error (locked,
    disk full, I/O), an OS error, or any driver error SQLAlchemy took for a lost connection (a session
    ended by the server or by another node, docs/scaling.md "Paused transactions"; the pool has dropped
    it by then). A driver's misuse error (``InterfaceError`` without a disconnect) stays what it is."""
    if isinstance(exc, (OperationalError, OSError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _whole(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run a store call to its end even when its caller is cancelled.

    Why: cancelling a task in the middle of a query does not stop the query; the database thread
    (aiosqlite) or the connection would later answer into an event loop that may be closed by then,
    and a half-used connection would escape :meth:`SqlBase.close`. So each call runs in its own
    task, shielded from the caller's cancellation, and ``close`` waits for the ones in flight.
    Operational failures of reads become :class:`StoreUnavailable` here, as writes do in ``_tx``.
    """

    @functools.wraps(fn)
    async def whole(self: SqlBase, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.ensure_future(fn(self, *args, **kwargs))
        self._inflight.add(task)
        task.add_done_callback(_settled(self._inflight))
        try:
            return await asyncio.shield(task)
        except (DBAPIError, OSError) as exc:  # a read that failed for the store's sake (writes: _tx)
            if not store_fault(exc):
                raise
            raise StoreUnavailable(f"store cannot read: {fault_reason(exc)}") from exc

    return whole


def _settled(inflight: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled no longer awaits it

    return done


def fault_reason(exc: BaseException) -> str:
    """A short operator-facing reason for a store failure: ``locked``, ``disk full``, ``read-only``,
    ``database missing``, ``unreachable`` or ``I/O error``."""
    text = str(exc).lower()
    for needle, reason in (("locked", "locked"), ("busy", "locked"), ("disk is full", "disk full"),
                           ("no space", "disk full"), ("readonly", "read-only"), ("read-only", "read-only"),
                           ("unable to open", "database missing"), ("no such table", "database missing"),
                           ("connect", "unreachable"), ("closed", "unreachable")):
        if needle in text:
            return reason
    return "I/O error"


def _pg_alive(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: refuse a connection whose socket asyncpg already saw closed (no round trip)."""
    raw = getattr(dbapi_conn, "driver_connection", None)
    is_closed = getattr(raw, "is_closed", None)
    if callable(is_closed) and is_closed():
        raise sa.exc.DisconnectionError("connection closed by the server")


def _sqlite_pragmas(busy_timeout_ms: int, *, read_only: bool = False) -> Callable[[Any, Any], None]:
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if read_only:  # the writer connection set WAL on the file; this one only reads
            cur.execute("PRAGMA query_only=ON")
        else:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    return apply
