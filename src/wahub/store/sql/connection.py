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
from wahub.store.groupcommit import GroupCommit
from wahub.store.records import (
    EventDraft,
    EventRecord,
    InstanceRecord,
    outbox_item,
)


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
    )


def _event(row: Any) -> EventRecord:
    m = row._mapping
    return EventRecord(
        seq=m["seq"], event_id=m["event_id"], instance_id=m["instance_id"], event=m["event"],
        body=m["body"], status=m["status"], attempts=m["attempts"], next_attempt_at=m["next_attempt_at"],
        created_at=m["created_at"], delivered_at=m["delivered_at"], last_error=m["last_error"],
        last_status_code=m["last_status_code"],
    )


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

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, hide_parameters=True, pool_size=1, max_overflow=0, pool_timeout=60,
                connect_args={"timeout": 30})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No pool_pre_ping: it costs a round trip before every checkout, i.e. before every batch.
            # A connection the server closed (restart, idle timeout, pg_terminate_backend) is noticed
            # by asyncpg when the socket closes; _pg_alive drops it at checkout without a round trip.
            self.engine = create_async_engine(url, echo=echo, pool_size=8, max_overflow=4)
            sa.event.listen(self.engine.sync_engine, "checkout", _pg_alive)
        self._enqueue: GroupCommit[_NewItem, _Inserted] = GroupCommit(self._insert_batch)
        self._inflight: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic; see ``wahub.store.migrate``)."""
        from wahub.store import migrate

        async with self.engine.begin() as conn:
            await conn.run_sync(migrate.upgrade_connection)

    async def close(self) -> None:
        """Let every query in progress finish (see :func:`_whole`), finish the enqueue batches, then
        close every pooled connection."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await self._enqueue.close()
        await self.engine.dispose()

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except (OSError, DBAPIError):
            return False

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (OperationalError, OSError) as exc:
            if isinstance(exc, OperationalError) and "locked" not in str(exc) and "connect" not in str(exc):
                raise
            raise StoreUnavailable(f"database unavailable: {exc.__class__.__name__}") from exc

    def _insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    async def _add_events(self, conn: AsyncConnection, events: Sequence[EventDraft], now: int) -> None:
        """Insert webhook event drafts inside the caller's transaction."""
        if not events:
            return
        await conn.execute(t.events.insert(), [
            {"event_id": e.event_id, "instance_id": e.instance_id, "event": e.event, "body": e.body,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now} for e in events])

    async def _insert_batch(self, reqs: Sequence[_NewItem]) -> list[_Inserted | BaseException]:
        raise NotImplementedError  # the outbox mixin's group commit


def _whole(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run a store call to its end even when its caller is cancelled.

    Why: cancelling a task in the middle of a query does not stop the query; the database thread
    (aiosqlite) or the connection would later answer into an event loop that may be closed by then,
    and a half-used connection would escape :meth:`SqlBase.close`. So each call runs in its own
    task, shielded from the caller's cancellation, and ``close`` waits for the ones in flight.
    """

    @functools.wraps(fn)
    async def whole(self: SqlBase, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.ensure_future(fn(self, *args, **kwargs))
        self._inflight.add(task)
        task.add_done_callback(_settled(self._inflight))
        return await asyncio.shield(task)

    return whole


def _settled(inflight: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled no longer awaits it

    return done


def _pg_alive(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: refuse a connection whose socket asyncpg already saw closed (no round trip)."""
    raw = getattr(dbapi_conn, "driver_connection", None)
    is_closed = getattr(raw, "is_closed", None)
    if callable(is_closed) and is_closed():
        raise sa.exc.DisconnectionError("connection closed by the server")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
