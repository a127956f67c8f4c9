"""Polls, votes, acks and inbound dedupe on SQL (inbound port)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wahub.domain.outbox import OutboxItem
from wahub.store import tables as t
from wahub.store.base import AckRule, VoteRule
from wahub.store.records import (
    EventDraft,
    PollRecord,
    VoteRecord,
    dump_json,
)
from wahub.store.sql.connection import (
    SqlBase,
    _item,
)


class InboundSql(SqlBase):
    """Polls, votes, acks and inbound dedupe on SQL (inbound port)."""

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

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, advances: AckRule, *,
                          now: int, event_for: Any) -> OutboxItem | None:
        """Move a sent item's ack forward only (the rule ``advances(current, new)`` decides).

        ``event_for(item)`` builds the event stored with the change. Returns the item when the
        ack advanced, None when it is unknown, equal or a step back.
        """
        async with self._tx() as conn:
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
