"""Polls, votes, acks and inbound dedupe on SQL (inbound port)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from wahub.domain.outbox import OutboxItem
from wahub.store import tables as t
from wahub.store.base import AckRule, VoteRule
from wahub.store.groupcommit import GroupCommit
from wahub.store.records import (
    EventDraft,
    PollRecord,
    VoteRecord,
    dump_json,
    outbox_item,
)
from wahub.store.sql import direct
from wahub.store.sql.connection import (
    SqlBase,
    _item,
)

_seen = t.inbound_seen.c
# Built once: mark a batch of messages seen, skipping those seen before; the rows inserted come back.
_MARK_SEEN_PG = (
    postgresql.insert(t.inbound_seen).on_conflict_do_nothing(index_elements=["instance_id", "message_id"])
    .returning(_seen.instance_id, _seen.message_id))
_INSERT_EVENTS = t.events.insert()
# The same two statements for SQLite's driver connection (store/sql/direct.py: one hand-off each).
_MARK_SEEN_ROW = "(?, ?, ?)"
_MARK_SEEN_SQL = ("INSERT INTO inbound_seen (instance_id, message_id, seen_at) VALUES {rows} "
                  "ON CONFLICT (instance_id, message_id) DO NOTHING RETURNING instance_id, message_id")
_INSERT_EVENTS_SQL = ("INSERT INTO webhook_events (event_id, instance_id, event, body, status, attempts, "
                      "next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)")
_OUTBOX_COLUMNS = [c.name for c in t.outbox.columns]
_ACK_ROW_SQL = (f"SELECT {', '.join(_OUTBOX_COLUMNS)} FROM outbox WHERE instance_id = ? AND message_id = ? "
                "LIMIT 1")
# ``IS``: an item with no ack yet has NULL there, and the update must still match it (``=`` would not).
_ACK_SET_SQL = "UPDATE outbox SET ack = ? WHERE seq = ? AND ack IS ? RETURNING seq"


@dataclass(frozen=True)
class _Seen:
    """One :meth:`InboundSql.record_inbound` call waiting for its group commit."""

    instance_id: str
    message_id: str
    now: int
    event: EventDraft | None


class InboundSql(SqlBase):
    """Polls, votes, acks and inbound dedupe on SQL (inbound port)."""

    _inbound: GroupCommit[_Seen, bool] | None = None  # created on first use (see record_inbound)

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
                          selected: list[str], voter_alt: str | None, now: int, event: EventDraft | None,
                          supersedes: VoteRule, aliases: Sequence[str] = ()) -> bool:
        """Store a person's latest vote and its event; False for a duplicate or stale vote.

        ``supersedes`` decides against the person's stored votes under ``voter`` and ``aliases``
        (their other ids), which an accepted vote replaces: one latest vote per person. A vote is a
        duplicate when a stored one has the same timestamp, stale when it is older (votes arrive
        out of order after reconnects).

        The upsert's update is guarded by the timestamp as well, so concurrent copies of a vote
        (e.g. redelivered after a reconnect) store it and its event exactly once.
        """
        ids = [voter, *[a for a in aliases if a != voter]]
        votes = t.votes.c
        stmt = self._insert(t.votes).values(
            instance_id=instance_id, poll_message_id=poll_message_id, voter=voter, timestamp=timestamp,
            selected=dump_json(selected), voter_alt=voter_alt, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["instance_id", "poll_message_id", "voter"],
            set_={"timestamp": stmt.excluded.timestamp, "selected": stmt.excluded.selected,
                  "voter_alt": stmt.excluded.voter_alt, "updated_at": stmt.excluded.updated_at},
            where=votes.timestamp < stmt.excluded.timestamp)
        mine = (votes.instance_id == instance_id, votes.poll_message_id == poll_message_id)
        async with self._tx() as conn:
            stored = (await conn.execute(sa.select(votes.timestamp).where(*mine, votes.voter.in_(ids)))).scalars()
            if not supersedes(timestamp, list(stored)):
                return False
            if (await conn.execute(stmt)).rowcount != 1:
                return False
            if len(ids) > 1:
                await conn.execute(t.votes.delete().where(*mine, votes.voter.in_(ids[1:])))
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
        """Mark an inbound message seen together with its event; False when it was seen before.

        Concurrent calls are group-committed (:meth:`_record_inbound_batch`): every inbound message
        waiting at a time is marked seen and gets its event in one transaction of three statements,
        instead of one transaction each on the one SQLite connection, where each statement is a
        hand-off to the driver's thread and messages queued behind each other's hand-offs
        (docs/PERFORMANCE.md, "Inbound latency under load"). The call returns once committed.
        """
        if self._inbound is None:
            self._inbound = GroupCommit(self._record_inbound_batch)
        return await self._inbound.submit(_Seen(instance_id, message_id, now, event))

    async def _record_inbound_batch(self, reqs: Sequence[_Seen]) -> list[bool | BaseException]:
        """Group commit of :meth:`record_inbound`, decided in arrival order.

        A message id already stored, or repeated earlier in the batch, is a duplicate (False) and
        stores no event. When the batch's transaction fails on a constraint, each request is
        retried on its own so one bad request cannot fail the others.
        """
        try:
            return await self._record_inbound_tx(reqs)
        except IntegrityError:
            results: list[bool | BaseException] = []
            for req in reqs:
                try:
                    results.append((await self._record_inbound_tx([req]))[0])
                except IntegrityError:
                    results.append(False)
                except Exception as exc:  # noqa: BLE001 - that request's caller learns why
                    results.append(exc)
            return results

    async def _record_inbound_tx(self, reqs: Sequence[_Seen]) -> list[bool | BaseException]:
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for r in reqs:
            rows.setdefault((r.instance_id, r.message_id),
                            {"instance_id": r.instance_id, "message_id": r.message_id, "seen_at": r.now})
        async with self._tx() as conn:
            if self.is_sqlite:
                sql = _MARK_SEEN_SQL.format(rows=", ".join([_MARK_SEEN_ROW] * len(rows)))
                found = await direct.fetch_all(conn, sql, [v for row in rows.values() for v in row.values()])
            else:
                found = [tuple(r) for r in (await conn.execute(_MARK_SEEN_PG, list(rows.values()))).all()]
            inserted = {(iid, mid) for iid, mid in found}
            fresh: list[bool | BaseException] = []
            stored: list[tuple[EventDraft, int]] = []  # (event, now of its message)
            for r in reqs:
                key = (r.instance_id, r.message_id)
                fresh.append(key in inserted)
                inserted.discard(key)  # a second copy of the id in this batch is a duplicate
                if fresh[-1] and r.event is not None:
                    stored.append((r.event, r.now))
            if stored and self.is_sqlite:
                await direct.execute_many(conn, _INSERT_EVENTS_SQL, [
                    (e.event_id, e.instance_id, e.event, e.body, now, now) for e, now in stored])
            elif stored:
                await conn.execute(_INSERT_EVENTS, [
                    {"event_id": e.event_id, "instance_id": e.instance_id, "event": e.event, "body": e.body,
                     "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
                    for e, now in stored])
        return fresh

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, advances: AckRule, *,
                          now: int, event_for: Any) -> OutboxItem | None:
        """Move a sent item's ack forward only (the rule ``advances(current, new)`` decides).

        ``event_for(item)`` builds the event stored with the change. Returns the item when the
        ack advanced, None when it is unknown, equal or a step back.
        """
        async with self._tx() as conn:
            if self.is_sqlite:  # one hand-off per statement (a send's receipt runs this once or more)
                rows = await direct.fetch_all(conn, _ACK_ROW_SQL, (instance_id, message_id))
                if not rows:
                    return None
                item = outbox_item(dict(zip(_OUTBOX_COLUMNS, rows[0], strict=True)))
                if not advances(item.ack, ack):
                    return None
                if not await direct.fetch_all(conn, _ACK_SET_SQL, (ack, item.seq, item.ack)):
                    return None
                ev = event_for(item)
                if ev is not None:
                    await direct.execute_many(conn, _INSERT_EVENTS_SQL, [
                        (ev.event_id, ev.instance_id, ev.event, ev.body, now, now)])
                return item
            row = (await conn.execute(t.outbox.select().where(
                t.outbox.c.instance_id == instance_id, t.outbox.c.message_id == message_id))).first()
            if row is None:
                return None
            if not advances(row._mapping["ack"], ack):
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

    # -- identities ---------------------------------------------------------------------------------
    async def remember_identity(self, instance_id: str, lid: str, phone: str, *, now: int) -> None:
        """Remember that ``lid`` (``…@lid``) and ``phone`` (``…@c.us``) are one person (the newest pair wins)."""
        stmt = self._insert(t.identities).values(instance_id=instance_id, lid=lid, phone=phone, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["instance_id", "lid"],
                                          set_={"phone": stmt.excluded.phone, "updated_at": stmt.excluded.updated_at},
                                          where=t.identities.c.phone != stmt.excluded.phone)
        async with self._tx() as conn:
            await conn.execute(stmt)

    async def find_identity(self, instance_id: str, jid: str) -> tuple[str, str] | None:
        """``(lid, phone)`` of the person known under ``jid`` (either form; the newest pair), or None."""
        c = t.identities.c
        q = (sa.select(c.lid, c.phone).where(c.instance_id == instance_id, sa.or_(c.lid == jid, c.phone == jid))
             .order_by(c.updated_at.desc(), c.lid).limit(1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return (row.lid, row.phone) if row is not None else None
