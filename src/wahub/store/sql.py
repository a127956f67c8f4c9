"""The SQL store: every database access of wa-hub, on SQLite (aiosqlite) or PostgreSQL (asyncpg).

Why the claim is safe: an item moves ``queued → sending`` in one UPDATE guarded by the status;
the partial unique index ``uq_outbox_one_sending`` lets at most one row per instance be
``sending``, so a second concurrent claim fails with an integrity error and claims nothing.
An item is marked ``handed_over_at`` (and a ``send_log`` row written) in its own committed
transaction *before* the engine is called: after a crash, ``sending`` rows without it were never
handed over and go back to ``queued``; rows with it may have reached WhatsApp and become
``uncertain``.

SQLite runs on one connection (all statements serialise through it, which avoids
"database is locked" under concurrent writers); PostgreSQL uses a pool.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wahub.domain.errors import Conflict, NotFound, StoreUnavailable
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store import tables as t
from wahub.store.base import QueueFullSignal
from wahub.store.groupcommit import GroupCommit
from wahub.store.records import (
    EventDraft,
    EventRecord,
    InstanceRecord,
    PollRecord,
    QueueStats,
    Transition,
    VoteRecord,
    dump_json,
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


class SqlStore:
    """All persistence of wa-hub behind one narrow async interface."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60,
                connect_args={"timeout": 30})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, echo=echo, pool_size=8, max_overflow=4,
                                              pool_pre_ping=True)
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

    # -- instances -------------------------------------------------------------------------------
    async def create_instance(self, *, id: str, name: str, webhook_url: str | None,
                              webhook_events: list[str], webhook_secret: str | None, now: int,
                              state: str = "initializing") -> InstanceRecord:
        """Insert an instance. Raises :class:`Conflict` when the id exists."""
        try:
            async with self._tx() as conn:
                await conn.execute(t.instances.insert().values(
                    id=id, name=name, webhook_url=webhook_url, webhook_events=dump_json(webhook_events),
                    webhook_secret=webhook_secret, state=state, state_since=now, created_at=now))
        except IntegrityError as exc:
            raise Conflict(f"an instance with id {id!r} already exists", instanceId=id) from exc
        rec = await self.get_instance(id)
        assert rec is not None
        return rec

    async def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(t.instances.select().where(t.instances.c.id == instance_id))).first()
        return _instance(row) if row else None

    async def list_instances(self) -> list[InstanceRecord]:
        """Every instance, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(t.instances.select().order_by(t.instances.c.created_at,
                                                                     t.instances.c.id))).all()
        return [_instance(r) for r in rows]

    async def update_instance(self, instance_id: str, **values: Any) -> None:
        """Set columns of an instance (``webhook_events`` as a list). Raises :class:`NotFound`."""
        if "webhook_events" in values:
            values["webhook_events"] = dump_json(values["webhook_events"])
        async with self._tx() as conn:
            res = await conn.execute(t.instances.update().where(t.instances.c.id == instance_id).values(**values))
        if res.rowcount == 0:
            raise NotFound(f"instance {instance_id} not found")

    async def delete_instance(self, instance_id: str) -> bool:
        """Delete an instance and everything recorded for it; True when it existed."""
        async with self._tx() as conn:
            for table in (t.outbox, t.send_log, t.events, t.polls, t.votes, t.inbound_seen,
                          t.transitions, t.restarts):
                await conn.execute(table.delete().where(table.c.instance_id == instance_id))
            res = await conn.execute(t.instances.delete().where(t.instances.c.id == instance_id))
        return bool(res.rowcount)

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Sequence[EventDraft] = (), **instance_values: Any) -> None:
        """Move an instance to ``to_state`` and store its webhook events in one transaction."""
        async with self._tx() as conn:
            await conn.execute(t.instances.update().where(t.instances.c.id == instance_id).values(
                state=to_state, state_since=now, state_reason=reason, **instance_values))
            await conn.execute(t.transitions.insert().values(
                instance_id=instance_id, at=now, from_state=from_state, to_state=to_state, reason=reason))
            await self._add_events(conn, events, now)

    async def transitions(self, instance_id: str, limit: int = 20) -> list[Transition]:
        """The most recent transitions, newest first."""
        q = (sa.select(t.transitions).where(t.transitions.c.instance_id == instance_id)
             .order_by(t.transitions.c.id.desc()).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [Transition(r.at, r.from_state, r.to_state, r.reason) for r in rows]

    async def count_transitions_to(self, instance_id: str, to_state: str, since: int) -> int:
        """How many times the instance entered ``to_state`` since ``since`` (epoch ms)."""
        q = sa.select(sa.func.count()).select_from(t.transitions).where(
            t.transitions.c.instance_id == instance_id, t.transitions.c.to_state == to_state,
            t.transitions.c.at > since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def record_restart(self, instance_id: str, *, kind: str, reason: str | None, now: int) -> None:
        """Count one restart against the instance's budget."""
        async with self._tx() as conn:
            await conn.execute(t.restarts.insert().values(instance_id=instance_id, at=now, kind=kind,
                                                          reason=reason))

    async def restarts_since(self, instance_id: str, since: int) -> list[int]:
        """Times (epoch ms, ascending) of restarts after ``since``."""
        q = (sa.select(t.restarts.c.at).where(t.restarts.c.instance_id == instance_id, t.restarts.c.at > since)
             .order_by(t.restarts.c.at))
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    # -- outbox: enqueue -----------------------------------------------------------------------
    async def find_item_by_key(self, instance_id: str, key: str) -> OutboxItem | None:
        """The item stored under an idempotency key, or None."""
        q = t.outbox.select().where(t.outbox.c.instance_id == instance_id, t.outbox.c.idempotency_key == key)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _item(row) if row else None

    async def latest_derived(self, instance_id: str, fingerprint: str) -> OutboxItem | None:
        """The newest item with a derived key and this fingerprint, or None."""
        q = (t.outbox.select().where(t.outbox.c.instance_id == instance_id, t.outbox.c.fingerprint == fingerprint,
                                     t.outbox.c.key_source == "derived").order_by(t.outbox.c.seq.desc()).limit(1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _item(row) if row else None

    async def insert_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                          kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, now: int,
                          max_open: int) -> tuple[OutboxItem, bool, int]:
        """Insert a queued item unless its key exists.

        Returns ``(item, created, open_count)``; when the key already exists the stored item is
        returned with ``created=False`` (the caller decides replay or conflict). When the instance
        already holds ``max_open`` open items (and the key is new) nothing is inserted and
        :class:`QueueFullSignal` is raised.

        Concurrent calls are group-committed (:meth:`_insert_batch`); the call returns once the
        row is committed.
        """
        return await self._enqueue.submit(_NewItem(
            queue_id=queue_id, instance_id=instance_id, idempotency_key=idempotency_key,
            key_source=key_source, kind=kind, chat_id=chat_id, payload=payload, fingerprint=fingerprint,
            now=now, max_open=max_open))

    async def _insert_batch(self, reqs: Sequence[_NewItem]) -> list[_Inserted | BaseException]:
        """Group commit of :meth:`insert_item`: one transaction, four statements, for any number of calls.

        Requests are decided in arrival order against the stored rows and against each other:
        an existing key (stored, or created earlier in the batch) is a replay, a full queue is a
        :class:`QueueFullSignal` for that request only. The insert still goes through the
        ``(instance_id, idempotency_key)`` constraint (``ON CONFLICT DO NOTHING``), so a row
        that another writer (another node on PostgreSQL) inserted between our read and our
        insert is read back and reported as existing: a key still yields one item. When the
        batch's transaction fails on a constraint, each request is retried on its own so one bad
        request cannot fail the others.
        """
        try:
            return await self._insert_batch_tx(reqs)
        except IntegrityError:
            results: list[_Inserted | BaseException] = []
            for req in reqs:
                try:
                    results.append(await self._insert_one(req))
                except (QueueFullSignal, IntegrityError, StoreUnavailable) as exc:
                    results.append(exc)
            return results

    async def _insert_batch_tx(self, reqs: Sequence[_NewItem]) -> list[_Inserted | BaseException]:
        o = t.outbox
        keys = list(dict.fromkeys((r.instance_id, r.idempotency_key) for r in reqs))
        instance_ids = list(dict.fromkeys(r.instance_id for r in reqs))
        async with self._tx() as conn:
            stored = await self._items_by_keys(conn, keys)
            counts: dict[str, int] = {row[0]: int(row[1]) for row in (await conn.execute(
                sa.select(o.c.instance_id, sa.func.count()).where(
                    o.c.instance_id.in_(instance_ids), o.c.status.in_((St.QUEUED.value, St.SENDING.value)))
                .group_by(o.c.instance_id))).all()}
            decided: list[tuple[str, tuple[str, str], int] | BaseException] = []
            new_rows: dict[tuple[str, str], dict[str, Any]] = {}
            for r in reqs:
                key = (r.instance_id, r.idempotency_key)
                count = counts.get(r.instance_id, 0)
                if key in stored or key in new_rows:
                    decided.append(("existing", key, count))
                elif count >= r.max_open:
                    decided.append(QueueFullSignal(count))
                else:
                    new_rows[key] = {
                        "queue_id": r.queue_id, "instance_id": r.instance_id,
                        "idempotency_key": r.idempotency_key, "key_source": r.key_source, "kind": r.kind,
                        "chat_id": r.chat_id,
                        "payload": dump_json(r.payload), "fingerprint": r.fingerprint, "status": St.QUEUED.value,
                        "attempts": 0, "next_attempt_at": r.now, "created_at": r.now, "updated_at": r.now}
                    counts[r.instance_id] = count + 1
                    decided.append(("created", key, count + 1))
            created: dict[tuple[str, str], OutboxItem] = {}
            if new_rows:
                stmt = (self._insert(o)
                        .on_conflict_do_nothing(index_elements=["instance_id", "idempotency_key"])
                        .returning(o.c.seq, o.c.instance_id, o.c.idempotency_key))
                for seq, instance_id, key in (await conn.execute(stmt, list(new_rows.values()))).all():
                    created[(instance_id, key)] = _new_item(seq, new_rows[(instance_id, key)])
                lost = [k for k in new_rows if k not in created]
                if lost:  # inserted by another writer since our read: theirs is the item
                    stored.update(await self._items_by_keys(conn, lost))
        results: list[_Inserted | BaseException] = []
        for d in decided:
            if isinstance(d, BaseException):
                results.append(d)
                continue
            how, key, count = d
            if how == "created" and key in created:
                results.append((created[key], True, count))
            elif key in stored:
                results.append((stored[key], False, count if how == "existing" else count - 1))
            else:  # an earlier request of this batch created it
                results.append((created[key], False, count))
        return results

    async def _items_by_keys(self, conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> dict[
            tuple[str, str], OutboxItem]:
        # Two plain IN lists (cached statement, both columns of the unique index) rather than a
        # row-value IN; pairs that only match across instances are dropped below.
        wanted = set(keys)
        found: dict[tuple[str, str], OutboxItem] = {}
        for start in range(0, len(keys), 400):
            chunk = keys[start:start + 400]
            rows = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id.in_(list({k[0] for k in chunk})),
                t.outbox.c.idempotency_key.in_(list({k[1] for k in chunk}))))).all()
            for row in rows:
                if (row.instance_id, row.idempotency_key) in wanted:
                    item = _item(row)
                    found[(item.instance_id, item.idempotency_key)] = item
        return found

    async def _insert_one(self, r: _NewItem) -> _Inserted:
        """:meth:`insert_item` in a transaction of its own (the fallback of a failed batch)."""
        instance_id, idempotency_key, max_open = r.instance_id, r.idempotency_key, r.max_open
        queue_id, key_source, kind, chat_id = r.queue_id, r.key_source, r.kind, r.chat_id
        payload, fingerprint, now = r.payload, r.fingerprint, r.now
        async with self._tx() as conn:
            existing = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.idempotency_key == idempotency_key))).first()
            open_count = int((await conn.execute(
                sa.select(sa.func.count()).select_from(t.outbox).where(
                    t.outbox.c.instance_id == instance_id,
                    t.outbox.c.status.in_((St.QUEUED.value, St.SENDING.value))))).scalar_one())
            if existing is not None:
                return _item(existing), False, open_count
            if open_count >= max_open:
                raise QueueFullSignal(open_count)
            stmt = self._insert(t.outbox).values(
                queue_id=queue_id, instance_id=instance_id, idempotency_key=idempotency_key,
                key_source=key_source, kind=kind, chat_id=chat_id, payload=dump_json(payload),
                fingerprint=fingerprint, status=St.QUEUED.value, attempts=0, next_attempt_at=now,
                created_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["instance_id", "idempotency_key"])
            res = await conn.execute(stmt)
            row = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.idempotency_key == idempotency_key))).first()
            created = bool(res.rowcount)
            return _item(row), created, open_count + (1 if created else 0)

    # -- outbox: drain -------------------------------------------------------------------------
    async def claim_next(self, instance_id: str, now: int) -> OutboxItem | None:
        """Move the first due queued item (FIFO by enqueue order) to ``sending`` and return it.

        None when nothing is due or an item of the instance is already ``sending``.
        """
        due = (sa.select(t.outbox.c.seq).where(
            t.outbox.c.instance_id == instance_id, t.outbox.c.status == St.QUEUED.value,
            t.outbox.c.next_attempt_at <= now).order_by(t.outbox.c.seq).limit(1))
        try:
            async with self._tx() as conn:
                seq = (await conn.execute(due)).scalar()
                if seq is None:
                    return None
                res = await conn.execute(t.outbox.update().where(
                    t.outbox.c.seq == seq, t.outbox.c.status == St.QUEUED.value).values(
                    status=St.SENDING.value, updated_at=now))
                if res.rowcount != 1:
                    return None
                row = (await conn.execute(t.outbox.select().where(t.outbox.c.seq == seq))).first()
                return _item(row)
        except IntegrityError:
            return None  # another claim holds the instance's one `sending` slot

    async def next_due_at(self, instance_id: str) -> int | None:
        """Smallest ``next_attempt_at`` among queued items (epoch ms), or None when none is queued."""
        q = sa.select(sa.func.min(t.outbox.c.next_attempt_at)).where(
            t.outbox.c.instance_id == instance_id, t.outbox.c.status == St.QUEUED.value)
        async with self.engine.connect() as conn:
            v = (await conn.execute(q)).scalar()
        return int(v) if v is not None else None

    async def send_history(self, instance_id: str, since: int) -> list[int]:
        """Send instants (epoch ms, ascending) of the instance's sends after ``since``."""
        q = (sa.select(t.send_log.c.at).where(t.send_log.c.instance_id == instance_id, t.send_log.c.at > since)
             .order_by(t.send_log.c.at))
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    async def release(self, seq: int, *, next_attempt_at: int, now: int, error: str | None = None,
                      reason: str | None = None, count_attempt: bool = False, unlog: bool = False) -> None:
        """Return a ``sending`` item to ``queued`` (deferral, disconnect or transient error).

        ``unlog`` removes the item's send-log row when the engine proved nothing went out
        (e.g. not connected), so the rolling windows do not count a send that never happened.
        """
        values: dict[str, Any] = {"status": St.QUEUED.value, "next_attempt_at": next_attempt_at, "updated_at": now,
                                  "handed_over_at": None}
        if error is not None:
            values["last_error"] = error
            values["error_reason"] = reason
        if count_attempt:
            values["attempts"] = t.outbox.c.attempts + 1
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(t.outbox.c.queue_id).where(t.outbox.c.seq == seq))).first()
            await conn.execute(t.outbox.update().where(t.outbox.c.seq == seq,
                                                       t.outbox.c.status == St.SENDING.value).values(**values))
            if unlog and row is not None:
                await conn.execute(t.send_log.delete().where(t.send_log.c.queue_id == row[0]))

    async def mark_handed_over(self, item: OutboxItem, now: int, *, chosen_message_id: str | None = None) -> None:
        """Record that the item is about to reach the engine (and log the send for the windows).

        ``chosen_message_id`` is the id the engine will send under, kept as evidence for
        reconciling an ``uncertain`` outcome. The logged time is provisional: :meth:`stamp_send`
        replaces it with the engine-call instant.
        """
        async with self._tx() as conn:
            await conn.execute(t.outbox.update().where(t.outbox.c.seq == item.seq).values(
                handed_over_at=now, updated_at=now, chosen_message_id=chosen_message_id))
            await conn.execute(t.send_log.insert().values(instance_id=item.instance_id, at=now,
                                                          queue_id=item.queue_id))

    async def stamp_send(self, queue_id: str, at: int) -> None:
        """Set the logged time of the item's send to the engine-call instant ``at``."""
        async with self._tx() as conn:
            await conn.execute(t.send_log.update().where(t.send_log.c.queue_id == queue_id).values(at=at))

    async def latest_send_at(self) -> int | None:
        """The newest send instant of any instance (epoch ms), or None."""
        async with self.engine.connect() as conn:
            v = (await conn.execute(sa.select(sa.func.max(t.send_log.c.at)))).scalar()
        return int(v) if v is not None else None

    async def mark_sent(self, item: OutboxItem, *, message_id: str, now: int, sent_at: int | None = None,
                        events: Sequence[EventDraft] = (), from_statuses: Sequence[str] = (St.SENDING.value,)) -> bool:
        """Record a successful send (and, for a poll, the poll itself) with its webhook events.

        Only while the item is in ``from_statuses`` (the guard makes a reconciliation and the send
        loop's own outcome exclusive). Returns True when the item changed.
        """
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.seq == item.seq, t.outbox.c.status.in_(list(from_statuses))).values(
                status=St.SENT.value, sent_at=sent_at if sent_at is not None else now, message_id=message_id,
                updated_at=now, attempts=t.outbox.c.attempts + 1, ack="server", last_error=None,
                error_reason=None))
            if res.rowcount != 1:
                return False
            if item.kind == ItemKind.POLL:
                await conn.execute(self._insert(t.polls).values(
                    instance_id=item.instance_id, message_id=message_id, queue_id=item.queue_id,
                    chat_id=item.chat_id, idempotency_key=item.idempotency_key,
                    caption=item.payload["caption"], options=dump_json(item.payload["options"]),
                    multiple=1 if item.payload.get("multipleAnswers") else 0, created_at=now,
                ).on_conflict_do_nothing())
            await self._add_events(conn, events, now)
        return True

    async def mark_failed(self, item: OutboxItem, *, error: str, reason: str, now: int, count_attempt: bool,
                          events: Sequence[EventDraft] = (), unlog: bool = False) -> None:
        """Record a final failure with its webhook events (``unlog`` as in :meth:`release`)."""
        values: dict[str, Any] = {"status": St.FAILED.value, "last_error": error, "error_reason": reason,
                                  "updated_at": now}
        if count_attempt:
            values["attempts"] = t.outbox.c.attempts + 1
        async with self._tx() as conn:
            await conn.execute(t.outbox.update().where(t.outbox.c.seq == item.seq).values(**values))
            if unlog:
                await conn.execute(t.send_log.delete().where(t.send_log.c.queue_id == item.queue_id))
            await self._add_events(conn, events, now)

    async def recover_in_flight(self, now: int) -> tuple[int, list[OutboxItem]]:
        """Start-up recovery of ``sending`` items left by a crash.

        Items never handed over go back to ``queued``; handed-over ones become ``uncertain`` and
        are returned (as stored now, status ``uncertain``) so the runtime can report them.
        Returns ``(requeued, uncertain_items)``.
        """
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.status == St.SENDING.value, t.outbox.c.handed_over_at.is_(None)).values(
                status=St.QUEUED.value, updated_at=now))
            requeued = res.rowcount
            seqs = (await conn.execute(sa.select(t.outbox.c.seq).where(
                t.outbox.c.status == St.SENDING.value))).scalars().all()
            if not seqs:
                return requeued, []
            await conn.execute(t.outbox.update().where(t.outbox.c.seq.in_(seqs)).values(
                status=St.UNCERTAIN.value, updated_at=now,
                last_error="process stopped after handing the item to the engine; delivery unknown",
                error_reason="uncertain"))
            rows = (await conn.execute(t.outbox.select().where(t.outbox.c.seq.in_(seqs))
                                       .order_by(t.outbox.c.seq))).all()
        return requeued, [_item(r) for r in rows]

    # -- outbox: queries and operator actions ---------------------------------------------------
    async def get_item(self, queue_id: str) -> OutboxItem | None:
        """The item with ``queue_id``, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(t.outbox.select().where(t.outbox.c.queue_id == queue_id))).first()
        return _item(row) if row else None

    async def find_by_chosen_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The item whose engine-chosen message id is ``message_id``, or None."""
        q = t.outbox.select().where(t.outbox.c.instance_id == instance_id,
                                    t.outbox.c.chosen_message_id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _item(row) if row else None

    async def get_item_by_message_id(self, instance_id: str, message_id: str) -> OutboxItem | None:
        """The sent item that WhatsApp knows as ``message_id``, or None."""
        q = t.outbox.select().where(t.outbox.c.instance_id == instance_id, t.outbox.c.message_id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _item(row) if row else None

    async def list_items(self, instance_id: str, *, statuses: Sequence[str] | None, limit: int,
                         offset: int) -> tuple[list[OutboxItem], int]:
        """A page of items (oldest first) and the total count matching the filter."""
        cond = [t.outbox.c.instance_id == instance_id]
        if statuses:
            cond.append(t.outbox.c.status.in_(list(statuses)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(t.outbox.select().where(*cond).order_by(t.outbox.c.seq)
                                       .limit(limit).offset(offset))).all()
            total = int((await conn.execute(sa.select(sa.func.count()).select_from(t.outbox)
                                            .where(*cond))).scalar_one())
        return [_item(r) for r in rows], total

    async def queue_stats(self, instance_id: str) -> QueueStats:
        """Counts by status and the oldest open item's enqueue time."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.outbox.c.status, sa.func.count()).where(
                t.outbox.c.instance_id == instance_id).group_by(t.outbox.c.status))).all()
            oldest = (await conn.execute(sa.select(sa.func.min(t.outbox.c.created_at)).where(
                t.outbox.c.instance_id == instance_id,
                t.outbox.c.status.in_((St.QUEUED.value, St.SENDING.value))))).scalar()
        return QueueStats({r[0]: int(r[1]) for r in rows}, int(oldest) if oldest is not None else None)

    async def set_item_status(self, queue_id: str, *, from_statuses: Sequence[str], to_status: str, now: int,
                              reset_attempts: bool = False, events: Sequence[EventDraft] = (),
                              error: str | None = None, reason: str | None = None) -> bool:
        """Compare-and-set an item's status (cancel, retry, resend); True when it changed."""
        values: dict[str, Any] = {"status": to_status, "updated_at": now}
        if to_status == St.QUEUED.value:
            values.update(next_attempt_at=now, handed_over_at=None)
        if reset_attempts:
            values["attempts"] = 0
        if error is not None:
            values.update(last_error=error, error_reason=reason)
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.queue_id == queue_id, t.outbox.c.status.in_(list(from_statuses))).values(**values))
            if res.rowcount:
                await self._add_events(conn, events, now)
        return bool(res.rowcount)

    async def clear_queue(self, instance_id: str, now: int) -> int:
        """Cancel every queued item of the instance; returns how many."""
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.status == St.QUEUED.value).values(
                status=St.CANCELED.value, updated_at=now, last_error="canceled: queue cleared",
                error_reason="canceled"))
        return int(res.rowcount)

    async def count_sent_since(self, instance_id: str, since: int) -> int:
        """Sends recorded in the send log after ``since``."""
        q = sa.select(sa.func.count()).select_from(t.send_log).where(
            t.send_log.c.instance_id == instance_id, t.send_log.c.at > since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def count_failures_since(self, instance_id: str, since: int) -> int:
        """Items that failed (finally) after ``since``."""
        q = sa.select(sa.func.count()).select_from(t.outbox).where(
            t.outbox.c.instance_id == instance_id, t.outbox.c.status == St.FAILED.value, t.outbox.c.updated_at > since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def purge(self, older_than: int) -> dict[str, int]:
        """Delete final outbox items, delivered/dead events, send-log rows, seen ids older than a time."""
        out: dict[str, int] = {}
        async with self._tx() as conn:
            out["outbox"] = (await conn.execute(t.outbox.delete().where(
                t.outbox.c.updated_at < older_than,
                t.outbox.c.status.in_((St.SENT.value, St.FAILED.value, St.CANCELED.value))))).rowcount
            out["send_log"] = (await conn.execute(t.send_log.delete().where(t.send_log.c.at < older_than))).rowcount
            out["events"] = (await conn.execute(t.events.delete().where(
                t.events.c.created_at < older_than, t.events.c.status.in_(("delivered", "dead"))))).rowcount
            out["inbound_seen"] = (await conn.execute(t.inbound_seen.delete().where(
                t.inbound_seen.c.seen_at < older_than))).rowcount
            out["transitions"] = (await conn.execute(t.transitions.delete().where(
                t.transitions.c.at < older_than))).rowcount
            out["restarts"] = (await conn.execute(t.restarts.delete().where(
                t.restarts.c.at < older_than))).rowcount
        return out

    # -- polls, votes, acks, inbound ---------------------------------------------------------------
    async def get_poll(self, instance_id: str, message_id: str) -> PollRecord | None:
        """The poll wa-hub sent as ``message_id``, or None."""
        q = t.polls.select().where(t.polls.c.instance_id == instance_id, t.polls.c.message_id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        return PollRecord(row.instance_id, row.message_id, row.queue_id, row.chat_id, row.idempotency_key,
                          row.caption, json.loads(row.options), bool(row.multiple))

    async def record_vote(self, instance_id: str, poll_message_id: str, voter: str, *, timestamp: int,
                          selected: list[str], voter_alt: str | None, now: int,
                          event: EventDraft | None) -> bool:
        """Store a voter's latest vote and its event; False for a duplicate or stale vote.

        A vote is a duplicate when the stored one has the same timestamp, and stale when it is
        older than the stored one (votes can arrive out of order after reconnects).

        One upsert whose update is guarded by the timestamp decides, so concurrent copies of a
        vote (e.g. redelivered after a reconnect) store it and its event exactly once.
        """
        stmt = self._insert(t.votes).values(
            instance_id=instance_id, poll_message_id=poll_message_id, voter=voter, timestamp=timestamp,
            selected=dump_json(selected), voter_alt=voter_alt, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["instance_id", "poll_message_id", "voter"],
            set_={"timestamp": stmt.excluded.timestamp, "selected": stmt.excluded.selected,
                  "voter_alt": stmt.excluded.voter_alt, "updated_at": stmt.excluded.updated_at},
            where=t.votes.c.timestamp < stmt.excluded.timestamp)
        async with self._tx() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return False
            if event is not None:
                await self._add_events(conn, [event], now)
        return True

    async def latest_votes(self, instance_id: str, poll_message_id: str) -> list[VoteRecord]:
        """Every voter's latest vote on a poll."""
        q = t.votes.select().where(t.votes.c.instance_id == instance_id,
                                   t.votes.c.poll_message_id == poll_message_id).order_by(t.votes.c.voter)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [VoteRecord(r.voter, json.loads(r.selected), r.timestamp, r.voter_alt) for r in rows]

    async def record_inbound(self, instance_id: str, message_id: str, *, now: int,
                             event: EventDraft | None) -> bool:
        """Mark an inbound message seen together with its event; False when it was seen before."""
        try:
            async with self._tx() as conn:
                await conn.execute(t.inbound_seen.insert().values(instance_id=instance_id, message_id=message_id,
                                                                  seen_at=now))
                if event is not None:
                    await self._add_events(conn, [event], now)
        except IntegrityError:
            return False
        return True

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, order: Sequence[str], *,
                          now: int, event_for: Any) -> OutboxItem | None:
        """Move a sent item's ack forward only (``order`` lists acks by rank).

        ``event_for(item)`` builds the event stored with the change. Returns the item when the
        ack advanced, None when it is unknown, equal or a step back.
        """
        async with self._tx() as conn:
            row = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.message_id == message_id))).first()
            if row is None:
                return None
            current = row._mapping["ack"] or "server"
            if current in order and order.index(ack) <= order.index(current):
                return None
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.seq == row._mapping["seq"], t.outbox.c.ack == row._mapping["ack"]).values(ack=ack))
            if res.rowcount != 1:
                return None
            item = _item(row)
            ev = event_for(item)
            if ev is not None:
                await self._add_events(conn, [ev], now)
            return item

    # -- webhook events -------------------------------------------------------------------------
    async def add_events(self, events: Sequence[EventDraft], now: int) -> None:
        """Store events for delivery."""
        async with self._tx() as conn:
            await self._add_events(conn, events, now)

    async def _add_events(self, conn: AsyncConnection, events: Sequence[EventDraft], now: int) -> None:
        if not events:
            return
        await conn.execute(t.events.insert(), [
            {"event_id": e.event_id, "instance_id": e.instance_id, "event": e.event, "body": e.body,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now} for e in events])

    async def instances_with_pending_events(self) -> list[str]:
        """Instance ids that have undelivered events."""
        q = sa.select(t.events.c.instance_id).where(t.events.c.status == "pending").distinct()
        async with self.engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    async def head_event(self, instance_id: str) -> EventRecord | None:
        """The oldest pending event of an instance (delivery is in order per instance)."""
        q = (t.events.select().where(t.events.c.instance_id == instance_id, t.events.c.status == "pending")
             .order_by(t.events.c.seq).limit(1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _event(row) if row else None

    async def event_delivered(self, seq: int, *, now: int, status_code: int) -> None:
        """Mark an event delivered."""
        async with self._tx() as conn:
            await conn.execute(t.events.update().where(t.events.c.seq == seq).values(
                status="delivered", delivered_at=now, attempts=t.events.c.attempts + 1,
                last_status_code=status_code, last_error=None))

    async def event_failed(self, seq: int, *, now: int, next_attempt_at: int | None, error: str,
                           status_code: int | None) -> None:
        """Record a failed attempt: retry at ``next_attempt_at``, or dead letter when it is None."""
        values: dict[str, Any] = {"attempts": t.events.c.attempts + 1, "last_error": error,
                                  "last_status_code": status_code}
        if next_attempt_at is None:
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = next_attempt_at
        async with self._tx() as conn:
            await conn.execute(t.events.update().where(t.events.c.seq == seq).values(**values))

    async def list_events(self, instance_id: str, *, status: str | None, limit: int,
                          offset: int = 0) -> list[EventRecord]:
        """Events of an instance, newest first, optionally by status."""
        cond = [t.events.c.instance_id == instance_id]
        if status:
            cond.append(t.events.c.status == status)
        q = t.events.select().where(*cond).order_by(t.events.c.seq.desc()).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(q)).all()]

    async def replay_events(self, instance_id: str, *, event_id: str | None, now: int) -> int:
        """Put dead letters (one, or all of the instance) back to pending; returns how many."""
        cond = [t.events.c.instance_id == instance_id, t.events.c.status == "dead"]
        if event_id is not None:
            cond.append(t.events.c.event_id == event_id)
        async with self._tx() as conn:
            res = await conn.execute(t.events.update().where(*cond).values(
                status="pending", next_attempt_at=now, attempts=0))
        return int(res.rowcount)

    async def event_stats(self, instance_id: str) -> dict[str, Any]:
        """Backlog, dead letters, last success and last error of an instance's webhook delivery."""
        async with self.engine.connect() as conn:
            counts: dict[str, int] = {r[0]: int(r[1]) for r in (await conn.execute(
                sa.select(t.events.c.status, sa.func.count()).where(
                    t.events.c.instance_id == instance_id).group_by(t.events.c.status))).all()}
            last_ok = (await conn.execute(sa.select(sa.func.max(t.events.c.delivered_at)).where(
                t.events.c.instance_id == instance_id))).scalar()
            last_err = (await conn.execute(sa.select(t.events.c.last_error, t.events.c.event_id).where(
                t.events.c.instance_id == instance_id, t.events.c.last_error.is_not(None))
                .order_by(t.events.c.seq.desc()).limit(1))).first()
        return {"backlog": int(counts.get("pending", 0)), "dead": int(counts.get("dead", 0)),
                "delivered": int(counts.get("delivered", 0)), "lastSuccessAt": last_ok,
                "lastError": last_err[0] if last_err else None}


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


def _whole(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run a store call to its end even when its caller is cancelled.

    Why: cancelling a task in the middle of a query does not stop the query; the database thread
    (aiosqlite) or the connection would later answer into an event loop that may be closed by then,
    and a half-used connection would escape :meth:`SqlStore.close`. So each call runs in its own
    task, shielded from the caller's cancellation, and ``close`` waits for the ones in flight.
    """

    @functools.wraps(fn)
    async def whole(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
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


for _name in [n for n, v in vars(SqlStore).items()
              if inspect.iscoroutinefunction(v) and not n.startswith("_") and n not in ("close", "migrate")]:
    setattr(SqlStore, _name, _whole(getattr(SqlStore, _name)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
