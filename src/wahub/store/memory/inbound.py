"""Polls, votes, acks and inbound dedupe in memory."""

from __future__ import annotations

import json
from dataclasses import replace

from wahub.domain.outbox import OutboxItem
from wahub.store.base import AckRule, EventBuilder
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
                          selected: list[str], voter_alt: str | None, now: int,
                          event: EventDraft | None) -> bool:
        """Store a voter's latest vote and its event; False for a duplicate or stale vote.

        A vote is a duplicate when the stored one has the same timestamp, and stale when it is
        older than the stored one (votes can arrive out of order after reconnects).
        """
        key = (instance_id, poll_message_id, voter)
        stored = self._votes.get(key)
        if stored is not None and timestamp <= stored["timestamp"]:
            return False
        self._votes[key] = {"timestamp": timestamp, "selected": dump_json(selected), "voter_alt": voter_alt,
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
