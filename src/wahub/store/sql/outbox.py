"""The outbox on SQL: enqueue with group commit, claim, hand-over and outcomes."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wahub.domain.errors import StoreUnavailable
from wahub.domain.outbox import ItemKind, OutboxItem
from wahub.domain.outbox import ItemStatus as St
from wahub.store import tables as t
from wahub.store.base import QueueFullSignal
from wahub.store.groupcommit import Batch
from wahub.store.records import (
    EventDraft,
    dump_json,
)
from wahub.store.sql import enqueue
from wahub.store.sql.connection import (
    _Inserted,
    _item,
    _NewItem,
    _settled,
    fault_reason,
)
from wahub.store.sql.direct import driver
from wahub.store.sql.fence import FenceSql
from wahub.store.sql.sendbatch import SqliteSendWrites, in_database_thread
from wahub.store.sql.sendsql import (
    _CLAIM,
    _CLAIM_HAND_OVER,
    _HAND_OVER,
    _LOG_SEND,
    _MARK_SENT,
    _QUEUE_ID_OF,
    _RELEASE,
    _STAMP,
    _STAMP_ANY,
    _TAKE_BACK,
    _UNLOG,
    OnSqlite,
    _o,
)

log = structlog.get_logger("wahub.store")


@functools.cache
def _integrity_errors() -> tuple[type[BaseException], ...]:
    """A constraint refused the batch: SQLAlchemy's, sqlite3's or asyncpg's error."""
    return (IntegrityError, sqlite3.IntegrityError, *_asyncpg_errors("IntegrityConstraintViolationError"))


@functools.cache
def _driver_faults() -> tuple[type[BaseException], ...]:
    """Driver errors meaning the store cannot write now (locked, disk full, connection lost, server stopping)."""
    return (sqlite3.OperationalError, *_asyncpg_errors("PostgresConnectionError", "InterfaceError",
                                                       "OperatorInterventionError", "InsufficientResourcesError"))


def _asyncpg_errors(*names: str) -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - SQLite only
        return ()
    return tuple(getattr(asyncpg, name) for name in names)

_NEXT_DUE = sa.select(sa.func.min(_o.c.next_attempt_at)).where(_o.c.instance_id == sa.bindparam("n_instance"),
                                                               _o.c.status == St.QUEUED.value)


class OutboxSql(FenceSql):
    """The outbox on SQL: enqueue with group commit, claim, hand-over and outcomes."""

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
                                     sa.text(t.DERIVED_ONLY)).order_by(t.outbox.c.seq.desc()).limit(1))
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

    async def _insert_batch(self, reqs: Batch[_NewItem, _Inserted]) -> list[_Inserted | BaseException]:
        """Group commit of :meth:`insert_item`: one transaction for any number of calls (one statement on PostgreSQL).

        Requests are decided in arrival order against the stored rows and against each other
        (:func:`~wahub.store.sql.enqueue.decide`): an existing key (stored, or created earlier in the
        batch) is a replay, a full queue is a :class:`QueueFullSignal` for that request only. The
        insert still goes through the ``(instance_id, idempotency_key)`` constraint (``ON CONFLICT DO
        NOTHING``), so a row that another writer (another node on PostgreSQL) inserted between our
        read and our insert is read back and reported as existing: a key still yields one item. When
        the batch fails on a constraint, each request is retried on its own so one bad request cannot
        fail the others. The statements run on the driver's connection (:mod:`wahub.store.sql.enqueue`).
        """
        try:
            return await self._insert_batch_tx(reqs)
        except _integrity_errors():
            results: list[_Inserted | BaseException] = []
            for req in reqs:
                try:
                    results.append(await self._insert_one(req))
                except (QueueFullSignal, IntegrityError, StoreUnavailable) as exc:
                    results.append(exc)
            return results

    async def _insert_batch_tx(self, reqs: Batch[_NewItem, _Inserted]) -> list[_Inserted | BaseException]:
        # The callers are answered as soon as the batch committed (Batch.answer), not after the
        # connection went back to the pool; a store fault this write ends is cleared just before.
        async with self._write_faults(_driver_faults()), self.writer.connect() as conn:
            if self.is_sqlite:  # on aiosqlite's own thread, where SQLAlchemy's adapter runs it too
                results: list[_Inserted | BaseException] = await in_database_thread(
                    conn, enqueue.sqlite_batch, reqs, functools.partial(reqs.answer, first=self._write_ok))
                return results
            results, fold = await enqueue.pg_batch(await driver(conn), reqs)
            reqs.answer(results, first=self._write_ok)
        if fold:
            self._fold_later(fold)
        return results

    def _fold_later(self, instance_ids: Sequence[str]) -> None:
        """Fold these instances' open-count changes (PostgreSQL; nothing to fold on SQLite) in a task of
        its own, after the batch answered: one fold at a time per store, on a pooled connection;
        :meth:`close` waits for it."""
        if self.is_sqlite:
            return
        self._fold_ids.update(instance_ids)
        if self._fold_task is None or self._fold_task.done():
            task = asyncio.ensure_future(self._fold())
            self._fold_task = task
            self._inflight.add(task)
            task.add_done_callback(_settled(self._inflight))

    async def _fold(self) -> None:
        while self._fold_ids:
            ids = sorted(self._fold_ids)
            self._fold_ids.clear()
            try:
                async with self.engine.connect() as conn:
                    self._folded_rows += await enqueue.pg_compact(await driver(conn), ids)
            except Exception as exc:  # noqa: BLE001 - a fold left undone is done by a later batch
                log.warning("open_count_fold_failed", instances=len(ids), error=fault_reason(exc))
                return
            if self._folded_rows >= enqueue.VACUUM_AFTER:
                self._folded_rows = 0
                await self._vacuum_changes()

    async def _vacuum_changes(self) -> None:
        """Vacuum the folds' dead rows (:func:`~wahub.store.sql.enqueue.pg_vacuum_changes`); a role that may
        not is logged once (``open_count_vacuum_refused``), a failure each time (the next folds try again)."""
        try:
            async with self.engine.connect() as conn:
                warnings = await enqueue.pg_vacuum_changes(await driver(conn))
        except Exception as exc:  # noqa: BLE001 - the next folds' rows bring the next try
            log.warning("open_count_vacuum_failed", error=fault_reason(exc))
            return
        if warnings and not self._vacuum_refused:  # once: the role's rights do not change by themselves
            self._vacuum_refused = True
            log.warning("open_count_vacuum_refused", table="outbox_open_delta", server=warnings[0],
                        hint="let the hub's database role own the table (it owns it when it ran the "
                             "migrations), or vacuum it often from outside")

    async def _insert_one(self, r: _NewItem) -> _Inserted:
        """:meth:`insert_item` in a transaction of its own (the fallback of a failed batch)."""
        instance_id, idempotency_key, max_open = r.instance_id, r.idempotency_key, r.max_open
        queue_id, key_source, kind, chat_id = r.queue_id, r.key_source, r.kind, r.chat_id
        payload, fingerprint, now = r.payload, r.fingerprint, r.now
        async with self._tx() as conn:
            existing = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.idempotency_key == idempotency_key))).first()
            # counted here, not read from the kept counts (0010, 0012): the same figure, on a rare path
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
    def _batched_sends(self) -> SqliteSendWrites | None:
        """The send-write batch (one node on SQLite), or None when each write runs in its own
        (fenced) transaction."""
        return self._send_writes if self._fence_node is None else None

    async def claim_next(self, instance_id: str, now: int, *, hand_over: bool = False,
                         chosen_message_id: str | None = None) -> OutboxItem | None:
        """Move the first due queued item (FIFO by enqueue order) to ``sending`` and return it.

        None when nothing is due or an item of the instance is already ``sending``. With
        ``hand_over`` the same transaction also does :meth:`mark_handed_over` at ``now``: one
        ``UPDATE … RETURNING`` (the claim) and one ``INSERT`` (the send log), one commit.
        """
        batch = self._batched_sends()
        if batch is not None:
            return await batch.run(  # type: ignore[no-any-return]
                lambda c: OnSqlite.claim(c, instance_id, now, hand_over, chosen_message_id),
                catch=(sqlite3.IntegrityError,), on_caught=None)
        claim, params = ((_CLAIM_HAND_OVER, {"c_instance": instance_id, "c_now": now, "c_chosen": chosen_message_id})
                         if hand_over else (_CLAIM, {"c_instance": instance_id, "c_now": now}))
        try:
            async with self._fenced_tx(instance_id) as conn:
                row = (await conn.execute(claim, params)).first()
                if row is None:
                    return None
                item = _item(row)
                if hand_over:
                    await conn.execute(_LOG_SEND, {"instance_id": instance_id, "at": now, "queue_id": item.queue_id})
                return item
        except IntegrityError:
            return None  # another claim holds the instance's one `sending` slot

    async def next_due_at(self, instance_id: str) -> int | None:
        """Smallest ``next_attempt_at`` among queued items (epoch ms), or None when none is queued."""
        async with self.engine.connect() as conn:
            v = (await conn.execute(_NEXT_DUE, {"n_instance": instance_id})).scalar()
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
        params: dict[str, Any] = {"r_seq": seq, "r_next": next_attempt_at, "r_now": now}
        if error is not None:
            params.update(r_error=error, r_reason=reason)
        batch = self._batched_sends()
        if batch is not None:
            key = (error is not None, count_attempt)
            await batch.run(lambda c: OnSqlite.release(c, seq, params, key, unlog))
            return
        async with self._fenced_item_tx(t.outbox.c.seq, seq) as conn:
            row = (await conn.execute(_QUEUE_ID_OF, {"r_seq": seq})).first()
            await conn.execute(_RELEASE[(error is not None, count_attempt)], params)
            if unlog and row is not None:
                await conn.execute(_UNLOG, {"u_queue": row[0]})

    async def mark_handed_over(self, item: OutboxItem, now: int, *, chosen_message_id: str | None = None) -> None:
        """Record that the item is about to reach the engine (and log the send for the windows).

        ``chosen_message_id`` is the id the engine will send under, kept as evidence for
        reconciling an ``uncertain`` outcome. The logged time is provisional: :meth:`stamp_send`
        replaces it with the engine-call instant.
        """
        batch = self._batched_sends()
        if batch is not None:
            await batch.run(lambda c: OnSqlite.hand_over(c, item, now, chosen_message_id))
            return
        async with self._fenced_tx(item.instance_id) as conn:
            await conn.execute(_HAND_OVER, {"h_seq": item.seq, "h_now": now, "h_chosen": chosen_message_id})
            await conn.execute(_LOG_SEND, {"instance_id": item.instance_id, "at": now, "queue_id": item.queue_id})

    async def take_back_hand_over(self, item: OutboxItem) -> None:
        """Undo :meth:`mark_handed_over` of a still-``sending`` item whose engine call was not made."""
        batch = self._batched_sends()
        if batch is not None:
            await batch.run(lambda c: OnSqlite.take_back(c, item))
            return
        async with self._fenced_tx(item.instance_id) as conn:
            await conn.execute(_TAKE_BACK, {"b_seq": item.seq})
            await conn.execute(_UNLOG, {"u_queue": item.queue_id})

    async def stamp_send(self, queue_id: str, at: int) -> None:
        """Set the logged time of the item's send to the engine-call instant ``at``."""
        async with self._fenced_item_tx(t.outbox.c.queue_id, queue_id) as conn:
            await conn.execute(_STAMP_ANY, {"l_queue": queue_id, "l_at": at})

    @staticmethod
    async def _stamp(conn: AsyncConnection, item: OutboxItem, at: int) -> None:
        """Stamp the send-log row of a claimed ``item``: found by the ``(instance_id, at)`` index, from
        the claim time (``item.updated_at``) on, since the log is not indexed by item."""
        res = await conn.execute(_STAMP, {"l_instance": item.instance_id, "l_since": item.updated_at,
                                          "l_queue": item.queue_id, "l_at": at})
        if res.rowcount == 0:  # the wall clock stepped back between claim and hand-over
            await conn.execute(_STAMP_ANY, {"l_queue": item.queue_id, "l_at": at})

    async def latest_send_at(self) -> int | None:
        """The newest send instant of any instance (epoch ms), or None."""
        async with self.engine.connect() as conn:
            v = (await conn.execute(sa.select(sa.func.max(t.send_log.c.at)))).scalar()
        return int(v) if v is not None else None

    async def mark_sent(self, item: OutboxItem, *, message_id: str, now: int, sent_at: int | None = None,
                        events: Sequence[EventDraft] = (), from_statuses: Sequence[str] = (St.SENDING.value,)) -> bool:
        """Record a successful send (and, for a poll, the poll itself) with its webhook events.

        Only while the item is in ``from_statuses`` (the guard makes a reconciliation and the send
        loop's own outcome exclusive). Returns True when the item changed. The send loop's own
        outcome (``from_statuses`` without ``uncertain``, ``sent_at`` given) also stamps the item's
        send-log row with ``sent_at`` (what :meth:`stamp_send` does), in the same transaction.
        """
        batch = self._batched_sends()
        if batch is not None and sent_at is not None and tuple(from_statuses) == (St.SENDING.value,):
            own_sent_at = sent_at
            return await batch.run(  # type: ignore[no-any-return]
                lambda c: OnSqlite.sent(c, item, message_id, now, own_sent_at, events))
        async with self._fenced_tx(item.instance_id) as conn:
            if sent_at is not None and St.UNCERTAIN.value not in from_statuses:
                await self._stamp(conn, item, sent_at)
            res = await conn.execute(_MARK_SENT, {
                "s_seq": item.seq, "s_from": list(from_statuses), "s_sent_at": sent_at if sent_at is not None else now,
                "s_message_id": message_id, "s_now": now})
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
        async with self._fenced_tx(item.instance_id) as conn:
            await conn.execute(t.outbox.update().where(t.outbox.c.seq == item.seq).values(**values))
            if unlog:
                await conn.execute(_UNLOG, {"u_queue": item.queue_id})
            await self._add_events(conn, events, now)

    async def recover_in_flight(self, now: int) -> tuple[int, list[OutboxItem]]:
        """Start-up recovery of ``sending`` items left by a crash, and of unreported ``uncertain`` ones.

        Items never handed over go back to ``queued``; handed-over ones become ``uncertain``. Returned
        are all ``uncertain`` items whose ``message_uncertain`` was not stored yet (these and any left
        by a stop between "uncertain" and its report), as stored now, so the runtime can report them.
        Returns ``(requeued, unreported_uncertain_items)``.
        """
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.status == St.SENDING.value, t.outbox.c.handed_over_at.is_(None)).values(
                status=St.QUEUED.value, updated_at=now))
            requeued = res.rowcount
            await conn.execute(t.outbox.update().where(t.outbox.c.status == St.SENDING.value).values(
                status=St.UNCERTAIN.value, updated_at=now,
                last_error="process stopped after handing the item to the engine; delivery unknown",
                error_reason="uncertain"))
            rows = (await conn.execute(t.outbox.select().where(
                t.outbox.c.status == St.UNCERTAIN.value, t.outbox.c.uncertain_reported_at.is_(None))
                .order_by(t.outbox.c.seq))).all()
        return requeued, [_item(r) for r in rows]

    async def mark_uncertain_reported(self, queue_id: str, now: int, events: Sequence[EventDraft]) -> bool:
        """Store ``message_uncertain`` for a still-``uncertain``, not yet reported item, in one transaction.

        False (nothing stored) when the item left ``uncertain`` or was reported already.
        """
        async with self._tx() as conn:
            res = await conn.execute(t.outbox.update().where(
                t.outbox.c.queue_id == queue_id, t.outbox.c.status == St.UNCERTAIN.value,
                t.outbox.c.uncertain_reported_at.is_(None)).values(uncertain_reported_at=now))
            if not res.rowcount:
                return False
            await self._add_events(conn, events, now)
        return True
