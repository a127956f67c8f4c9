"""Polls, votes, acks and inbound dedupe in memory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from wahub.domain.outbox import OutboxItem
from wahub.store.base import AckRule, EventBuilder, VoteRule
from wahub.store.memory.state import MemoryBase, _item
from wahub.store.records import (
    EventDraft,
    PollRecord,
    VoteRecord,
    dump_json,
)


class InboundMemory(MemoryBase):
    """Polls, votes, acks and inbound dedupe in memory."""

    # -- polls, votes, acks, inbound ---------------------------------------------------------------
    async def get_poll(self, instance_id: str, message_id: str) -> PollRecord | None:
        """The poll wa-hub sent as ``message_id``, or None."""
        poll = self._polls.get((instance_id, message_id))
        return replace(poll, options=list(poll.options)) if poll else None

    async def record_vote(self, instance_id: str, poll_message_id: str, voter: str, *, timestamp: int,
                          selected: list[str], voter_alt: str | None, now: int, event: EventDraft | None,
                          supersedes: VoteRule, aliases: Sequence[str] = ()) -> bool:
        """Store a person's latest vote and its event; False for a duplicate or stale vote.

        ``supersedes`` decides against the person's stored votes under ``voter`` and ``aliases``
        (their other ids), which an accepted vote replaces: one latest vote per person.
        """
        keys = [(instance_id, poll_message_id, v) for v in (voter, *[a for a in aliases if a != voter])]
        stored = [self._votes[k]["timestamp"] for k in keys if k in self._votes]
        if not supersedes(timestamp, stored):
            return False
        for key in keys[1:]:
            self._votes.pop(key, None)
        self._votes[keys[0]] = {"timestamp": timestamp, "selected": dump_json(selected), "voter_alt": voter_alt,
                                "updated_at": now}
        if event is not None:
            self._add_events([event], now)
        return True

    async def latest_votes(self, instance_id: str, poll_message_id: str) -> list[VoteRecord]:
        """Every voter's latest vote on a poll."""
        return [VoteRecord(voter, json.loads(v["selected"]), v["timestamp"], v["voter_alt"])
                for (iid, pid, voter), v in sorted(self._votes.items())
                if iid == instance_id and pid == poll_message_id]

    async def record_inbound(self, instance_id: str, message_id: str, *, now: int,
                             event: EventDraft | None) -> bool:
        """Mark an inbound message seen together with its event; False when it was seen before."""
        if (instance_id, message_id) in self._inbound_seen:
            return False
        self._inbound_seen[(instance_id, message_id)] = now
        if event is not None:
            self._add_events([event], now)
        return True

    async def advance_ack(self, instance_id: str, message_id: str, ack: str, advances: AckRule, *,
                          now: int, event_for: EventBuilder) -> OutboxItem | None:
        """Move a sent item's ack forward only (the rule ``advances(current, new)`` decides).

        ``event_for(item)`` builds the event stored with the change. Returns the item when the
        ack advanced, None when it is unknown, equal or a step back.
        """
        row = self._by_message_id(instance_id, message_id)
        if row is None:
            return None
        if not advances(row["ack"], ack):
            return None
        row["ack"] = ack
        item = _item(row)
        ev = event_for(item)
        if ev is not None:
            self._add_events([ev], now)
        return item

    # -- identities ---------------------------------------------------------------------------------
    async def remember_identity(self, instance_id: str, lid: str, phone: str, *, now: int) -> None:
        """Remember that ``lid`` (``…@lid``) and ``phone`` (``…@c.us``) are one person (the newest pair wins)."""
        stored = self._identities.get((instance_id, lid))
        if stored is None or stored[0] != phone:
            self._identities[(instance_id, lid)] = (phone, now)

    async def find_identity(self, instance_id: str, jid: str) -> tuple[str, str] | None:
        """``(lid, phone)`` of the person known under ``jid`` (either form; the newest pair), or None."""
        found = sorted((-at, lid, phone) for (iid, lid), (phone, at) in self._identities.items()
                       if iid == instance_id and jid in (lid, phone))
        return (found[0][1], found[0][2]) if found else None
