"""Outbox queries and operator actions on SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store import tables as t
from wahub.store.records import (
    EventDraft,
    QueueStats,
    dump_json,
)
from wahub.store.sql.connection import (
    SqlBase,
    _item,
)


class ItemsSql(SqlBase):
    """Outbox queries and operator actions on SQL."""

    async def insert_sent_item(self, *, queue_id: str, instance_id: str, idempotency_key: str, key_source: str,
                               kind: str, chat_id: str, payload: dict[str, Any], fingerprint: str, message_id: str,
                               created_at: int, sent_at: int) -> bool:
        """Store an item that was already sent elsewhere (``sent``, with its message id) in one step.

        For moving records from another system: nothing is logged as a send (no rate-limit
        history), no webhook event is stored. Returns False (and changes nothing) when the key
        is already taken on the instance.
        """
        async with self._tx() as conn:
            res = await conn.execute(self._insert(t.outbox).values(
                queue_id=queue_id, instance_id=instance_id, idempotency_key=idempotency_key, key_source=key_source,
                kind=kind, chat_id=chat_id, payload=dump_json(payload), fingerprint=fingerprint,
                status=St.SENT.value, attempts=1, next_attempt_at=created_at, created_at=created_at,
                updated_at=sent_at, sent_at=sent_at, message_id=message_id,
            ).on_conflict_do_nothing(index_elements=["instance_id", "idempotency_key"]))
        return bool(res.rowcount)

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
            out["outbox_retired"] = (await conn.execute(t.outbox_retired.delete().where(
                t.outbox_retired.c.updated_at < older_than))).rowcount
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
