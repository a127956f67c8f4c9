"""Webhook events on SQL (events port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wahub.store import tables as t
from wahub.store.records import (
    EventDraft,
    EventRecord,
)
from wahub.store.sql import direct
from wahub.store.sql.connection import (
    SqlBase,
    _event,
)

_MARK_DELIVERED = t.events.update().where(t.events.c.seq == sa.bindparam("m_seq")).values(
    status="delivered", delivered_at=sa.bindparam("m_at"), attempts=t.events.c.attempts + 1,
    last_status_code=sa.bindparam("m_code"), last_error=None)
# The webhook lanes' two hot statements for SQLite's driver connection (store/sql/direct.py): one
# hand-off to aiosqlite's thread each instead of four or five through SQLAlchemy's adapter.
_COLUMNS = ", ".join(c.name for c in t.events.columns)  # EventRecord's fields, in order
_PENDING_SQL = (f"SELECT {_COLUMNS} FROM webhook_events WHERE instance_id = ? AND status = 'pending' "
                "ORDER BY seq LIMIT ?")
_MARK_DELIVERED_SQL = ("UPDATE webhook_events SET status = 'delivered', delivered_at = ?, attempts = attempts + 1, "
                       "last_status_code = ?, last_error = NULL WHERE seq = ?")


class EventsSql(SqlBase):
    """Webhook events on SQL (events port)."""

    _loop_reader: direct.LoopReader | None = None  # SQLite: the lanes' reads on the loop's thread

    async def close(self) -> None:
        """Close the store (see :meth:`SqlBase.close`), then the lanes' loop-thread reader."""
        await super().close()
        if self._loop_reader is not None:
            self._loop_reader.close()

    # -- webhook events -------------------------------------------------------------------------
    async def add_events(self, events: Sequence[EventDraft], now: int) -> None:
        """Store events for delivery."""
        async with self._tx() as conn:
            await self._add_events(conn, events, now)

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

    async def pending_events(self, instance_id: str, limit: int) -> list[EventRecord]:
        """Up to ``limit`` pending events of an instance, oldest first.

        SQLite: read on the loop's thread (:class:`direct.LoopReader`), else through the read-only
        connection beside the writer (WAL readers never wait for it).
        """
        if self.is_sqlite:
            if self._loop_reader is None:
                self._loop_reader = direct.LoopReader(self.reader.url.database)
            rows = self._loop_reader.fetch_all(_PENDING_SQL, (instance_id, limit))
            if rows is None:
                async with self.reader.connect() as conn:
                    rows = await direct.fetch_all(conn, _PENDING_SQL, (instance_id, limit))
            return [EventRecord(*row) for row in rows]
        q = (t.events.select().where(t.events.c.instance_id == instance_id, t.events.c.status == "pending")
             .order_by(t.events.c.seq).limit(limit))
        async with self.reader.connect() as conn:
            return [_event(r) for r in (await conn.execute(q)).all()]

    async def events_delivered(self, marks: Sequence[tuple[int, int, int]]) -> None:
        """Mark events delivered in one transaction: ``(seq, delivered_at ms, status_code)`` each."""
        if not marks:
            return
        async with self._tx() as conn:
            if self.is_sqlite:
                await direct.execute_many(conn, _MARK_DELIVERED_SQL, [(at, code, seq) for seq, at, code in marks])
            else:
                await conn.execute(_MARK_DELIVERED, [{"m_seq": seq, "m_at": at, "m_code": code}
                                                     for seq, at, code in marks])

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

    async def get_event(self, instance_id: str, event_id: str) -> EventRecord | None:
        """One webhook event of an instance with its stored body and last response, or None."""
        q = t.events.select().where(t.events.c.instance_id == instance_id, t.events.c.event_id == event_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _event(row) if row else None

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
