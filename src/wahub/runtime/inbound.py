"""The inbound room: messages, reactions, edits, deletes, poll votes and receipts from an engine.

Engine data events come here straight from the engine's sink (the supervisor only handles
connection events). Every person's two ids (``@lid`` and phone) are learned and applied here
(:mod:`wahub.runtime.identities`). A receipt or a from-me echo of a message id is also *evidence*: it lets the
outbox reconcile an ``uncertain`` send made under that id (:meth:`Outbox.reconcile`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import structlog

from wahub.domain import acks, chatid, votes
from wahub.domain.clock import Clock
from wahub.domain.outbox import OutboxItem
from wahub.engines import base as eng
from wahub.runtime import inboundshapes as shapes
from wahub.runtime.events import Events, item_ref, short
from wahub.runtime.identities import Identities
from wahub.runtime.outbox import PENDING_ACK_TTL_MS, Outbox
from wahub.runtime.registry import InstanceRuntime
from wahub.store.base import InboundPort, OutboxPort
from wahub.store.records import EventDraft, PollRecord, VoteRecord

log = structlog.get_logger("wahub.inbound")


class Inbound:
    """Stores inbound messages, reactions, edits, deletes, votes and acks with their webhook events, once each."""

    def __init__(self, store: InboundPort, items: OutboxPort, clock: Clock, events: Events, outbox: Outbox) -> None:
        self.store = store
        self.items = items
        self.clock = clock
        self.events = events
        self.outbox = outbox
        self.identities = Identities(store, clock)
        outbox.after_sent = self.early_acks

    async def on_event(self, rt: InstanceRuntime, ev: eng.EngineEvent) -> bool:
        """Handle a data event (message, reaction, edit, delete, vote, receipt); False when ``ev`` is not one."""
        if isinstance(ev, eng.InboundMessage):
            await self.on_message(rt, ev)
        elif isinstance(ev, eng.PollVote):
            await self.on_vote(rt, ev)
        elif isinstance(ev, eng.Receipt):
            await self.on_receipt(rt, ev)
        elif isinstance(ev, (eng.Reaction, eng.MessageEdit, eng.MessageRevoke)):
            await self.on_change(rt, ev)
        else:
            return False
        return True

    def forget(self, instance_id: str) -> None:
        """Drop what is kept in memory for a deleted instance."""
        self.identities.forget(instance_id)

    async def on_message(self, rt: InstanceRuntime, ev: eng.InboundMessage) -> None:
        """Store a ``message`` webhook for an inbound message, once per engine message id.

        A from-me message is our own send echoed back: no webhook, but evidence for reconciling.
        """
        if ev.from_me:
            await self.outbox.reconcile(rt, ev.message_id)
            return
        alt = await self.identities.other(rt.id, ev.sender, ev.sender_alt)
        await self._once(rt, ev.message_id, "message", shapes.message(ev, alt), kind=ev.kind)

    async def on_change(self, rt: InstanceRuntime, ev: eng.Reaction | eng.MessageEdit | eng.MessageRevoke) -> None:
        """Store a ``message_reaction`` / ``message_edit`` / ``message_revoke`` webhook, once per change.

        Our own reactions, edits and deletes (from the phone or another device) give none, as our
        own messages give no ``message``.
        """
        alt = await self.identities.other(rt.id, ev.sender, ev.sender_alt)
        if ev.from_me:
            return
        if isinstance(ev, eng.Reaction):
            await self._once(rt, ev.message_id, "message_reaction", shapes.reaction(ev, alt))
        elif isinstance(ev, eng.MessageEdit):
            key = _key("edit", ev.chat_id, ev.original_message_id, str(ev.timestamp), ev.text)
            await self._once(rt, key, "message_edit", shapes.edit(ev, alt))
        else:
            await self._once(rt, _key("revoke", ev.chat_id, ev.original_message_id), "message_revoke",
                             shapes.revoke(ev, alt))

    async def _once(self, rt: InstanceRuntime, key: str, event: str, data: dict[str, Any], **log_fields: Any) -> bool:
        """Store ``event`` marked seen under ``key`` in one transaction; False when ``key`` was seen before."""
        drafts = self.events.drafts(rt.record, event, data)
        fresh = await self.store.record_inbound(rt.id, key, now=self.clock.now_ms(),
                                                event=drafts[0] if drafts else None)
        if fresh and drafts:
            self.events.notify(rt.id)
        log.info("inbound_" + event.removeprefix("message_"), instance_id=rt.id, message_id=key,
                 duplicate=not fresh, **log_fields)
        return fresh

    async def on_vote(self, rt: InstanceRuntime, ev: eng.PollVote) -> None:
        """Resolve a poll vote against the stored poll and store one ``vote_update`` per new vote.

        The voter's phone and ``@lid`` are one voter: a vote under either id is checked against
        (and replaces) the latest vote under both. A vote that could not be decrypted is announced
        with ``decryptFailed: true`` and never replaces the voter's known choice.
        """
        poll = await self.store.get_poll(rt.id, ev.poll_message_id)
        if poll is None:
            log.warning("vote_for_unknown_poll", instance_id=rt.id, poll_message_id=ev.poll_message_id)
        alt = await self.identities.other(rt.id, ev.voter, ev.voter_alt)
        unresolved: list[str] = []
        selected: list[str] | None = None
        if ev.selected_options is not None:
            selected = list(ev.selected_options)
        elif not ev.decrypt_failed:
            selected, unresolved = votes.resolve(ev.selected_hashes or (), poll.options if poll else [])
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
            "decryptFailed": selected is None,
        }
        for jid in (ev.voter, alt):
            if jid and jid.endswith("@lid"):
                data["voterLid"] = jid
            elif jid and chatid.phone_number(jid):
                data["voterPhone"] = chatid.phone_number(jid)
        if unresolved:
            data["unresolvedOptionHashes"] = unresolved
        ids = votes.person_ids(ev.voter, alt)
        if selected is None:
            await self._undecryptable(rt, ev, ids, data)
            return
        drafts = self.events.drafts(rt.record, "vote_update", data)
        fresh = await self.store.record_vote(rt.id, ev.poll_message_id, ev.voter, timestamp=ev.timestamp,
                                             selected=selected, voter_alt=alt, now=self.clock.now_ms(),
                                             event=drafts[0] if drafts else None, supersedes=votes.supersedes,
                                             aliases=ids[1:])
        if fresh and drafts:
            self.events.notify(rt.id)
        log.info("poll_vote", instance_id=rt.id, poll_message_id=ev.poll_message_id, duplicate_or_stale=not fresh)

    async def _undecryptable(self, rt: InstanceRuntime, ev: eng.PollVote, ids: tuple[str, ...],
                             data: dict[str, Any]) -> None:
        """Announce a vote whose choice could not be read, once; the stored latest vote stays as it was.

        Older than (or as old as) the person's latest known vote, it is stale and dropped like any
        late vote: the app already has a newer choice.
        """
        latest = [v.timestamp for v in await self.store.latest_votes(rt.id, ev.poll_message_id) if v.voter in ids]
        if not votes.supersedes(ev.timestamp, latest):
            log.info("poll_vote", instance_id=rt.id, poll_message_id=ev.poll_message_id, duplicate_or_stale=True,
                     decrypt_failed=True)
            return
        key = _key("vote-undecryptable", ev.poll_message_id, *sorted(ids), str(ev.timestamp))
        await self._once(rt, key, "vote_update", data, poll_message_id=ev.poll_message_id, decrypt_failed=True)

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


def _key(*parts: str) -> str:
    """A dedupe key for a change that has no message id of its own (fits the 128-character column)."""
    return f"{parts[0]}:" + hashlib.sha256("\x1f".join(parts[1:]).encode()).hexdigest()[:48]
