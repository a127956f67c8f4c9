"""The inbound room: messages, poll votes and receipts from an engine, and what they prove.

Engine data events come here straight from the engine's sink (the supervisor only handles
connection events). A receipt or a from-me echo of a message id is also *evidence*: it lets the
outbox reconcile an ``uncertain`` send made under that id (:meth:`Outbox.reconcile`).
"""

from __future__ import annotations

from typing import Any

import structlog

from wahub.domain import acks, votes
from wahub.domain.clock import Clock
from wahub.domain.outbox import OutboxItem
from wahub.engines import base as eng
from wahub.runtime.events import Events, item_ref, short
from wahub.runtime.outbox import PENDING_ACK_TTL_MS, Outbox
from wahub.runtime.registry import InstanceRuntime
from wahub.store.base import InboundPort, OutboxPort
from wahub.store.records import EventDraft, PollRecord, VoteRecord

log = structlog.get_logger("wahub.inbound")


class Inbound:
    """Stores inbound messages, votes and acks with their webhook events, once each."""

    def __init__(self, store: InboundPort, items: OutboxPort, clock: Clock, events: Events, outbox: Outbox) -> None:
        self.store = store
        self.items = items
        self.clock = clock
        self.events = events
        self.outbox = outbox
        outbox.after_sent = self.early_acks

    async def on_event(self, rt: InstanceRuntime, ev: eng.EngineEvent) -> bool:
        """Handle a data event (message, vote, receipt); False when ``ev`` is not one."""
        if isinstance(ev, eng.InboundMessage):
            await self.on_message(rt, ev)
        elif isinstance(ev, eng.PollVote):
            await self.on_vote(rt, ev)
        elif isinstance(ev, eng.Receipt):
            await self.on_receipt(rt, ev)
        else:
            return False
        return True

    async def on_message(self, rt: InstanceRuntime, ev: eng.InboundMessage) -> None:
        """Store a ``message`` webhook for an inbound message, once per engine message id.

        A from-me message is our own send echoed back: no webhook, but evidence for reconciling.
        """
        if ev.from_me:
            await self.outbox.reconcile(rt, ev.message_id)
            return
        data = {"message": {
            "from": short(ev.sender), "body": ev.text, "text": ev.text, "type": "chat",
            "timestamp": ev.timestamp // 1000, "id": ev.message_id, "chatId": ev.chat_id, "fromId": ev.sender,
            "fromAlt": ev.sender_alt, "pushName": ev.push_name, "timestampMs": ev.timestamp}}
        drafts = self.events.drafts(rt.record, "message", data)
        fresh = await self.store.record_inbound(rt.id, ev.message_id, now=self.clock.now_ms(),
                                                event=drafts[0] if drafts else None)
        if fresh and drafts:
            self.events.notify(rt.id)
        log.info("inbound_message", instance_id=rt.id, message_id=ev.message_id, duplicate=not fresh)

    async def on_vote(self, rt: InstanceRuntime, ev: eng.PollVote) -> None:
        """Resolve a poll vote against the stored poll and store one ``vote_update`` per new vote."""
        poll = await self.store.get_poll(rt.id, ev.poll_message_id)
        unresolved: list[str] = []
        if ev.selected_options is not None:
            selected = list(ev.selected_options)
        else:
            selected, unresolved = votes.resolve(ev.selected_hashes or (), poll.options if poll else [])
        if poll is None:
            log.warning("vote_for_unknown_poll", instance_id=rt.id, poll_message_id=ev.poll_message_id)
        data: dict[str, Any] = {
            "vote": {"voter": short(ev.voter), "selectedOptions": selected, "timestamp": ev.timestamp,
                     "pollMessageId": ev.poll_message_id},
            "voterId": ev.voter,
            "chatId": poll.chat_id if poll else ev.chat_id,
            "idempotencyKey": poll.idempotency_key if poll else None,
            "queueId": poll.queue_id if poll else None,
            "caption": poll.caption if poll else None,
            "options": poll.options if poll else None,
            "pollKnown": poll is not None,
        }
        if ev.voter.endswith("@lid"):
            data["voterLid"] = ev.voter
        if ev.voter_alt:
            data["voterPhone"] = short(ev.voter_alt)
        if unresolved:
            data["unresolvedOptionHashes"] = unresolved
        drafts = self.events.drafts(rt.record, "vote_update", data)
        fresh = await self.store.record_vote(rt.id, ev.poll_message_id, ev.voter, timestamp=ev.timestamp,
                                             selected=selected, voter_alt=ev.voter_alt, now=self.clock.now_ms(),
                                             event=drafts[0] if drafts else None)
        if fresh and drafts:
            self.events.notify(rt.id)
        log.info("poll_vote", instance_id=rt.id, poll_message_id=ev.poll_message_id, duplicate_or_stale=not fresh)

    async def on_receipt(self, rt: InstanceRuntime, ev: eng.Receipt) -> None:
        """Advance acks (forward only); reconcile uncertain sends; hold receipts for unknown ids a minute."""
        if ev.ack not in acks.ACK_ORDER:
            return
        now = self.clock.now_ms()
        for mid in ev.message_ids:
            await self.outbox.reconcile(rt, mid)
            if not await self._advance(rt, mid, ev.ack, now):
                item = await self.items.get_item_by_message_id(rt.id, mid)
                if item is None:
                    rt.pending_acks[mid] = (ev.ack, now)
        for mid, (_, at) in list(rt.pending_acks.items()):
            if at < now - PENDING_ACK_TTL_MS:
                rt.pending_acks.pop(mid, None)

    async def early_acks(self, rt: InstanceRuntime, message_id: str, now: int) -> None:
        """Apply a receipt that arrived before the send was recorded (called after a send)."""
        early = rt.pending_acks.pop(message_id, None)
        if early is not None and early[1] >= now - PENDING_ACK_TTL_MS:
            await self._advance(rt, message_id, early[0], now)

    async def _advance(self, rt: InstanceRuntime, message_id: str, ack: str, now: int) -> bool:
        def build(item: OutboxItem) -> EventDraft | None:
            drafts = self.events.drafts(rt.record, "message_ack", {**item_ref(item), "messageId": message_id,
                                                                   "ack": ack, "at": now})
            return drafts[0] if drafts else None

        item = await self.store.advance_ack(rt.id, message_id, ack, acks.advances, now=now, event_for=build)
        if item is not None:
            self.events.notify(rt.id)
        return item is not None

    async def poll_votes(self, rt: InstanceRuntime, message_id: str) -> tuple[PollRecord | None, list[VoteRecord]]:
        """A poll wa-hub sent (None when unknown) and every voter's latest vote."""
        return await self.store.get_poll(rt.id, message_id), await self.store.latest_votes(rt.id, message_id)
