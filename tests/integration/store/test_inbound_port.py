"""The inbound port on every implementation: votes, inbound dedupe, acks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft, enqueue, send
from wahub.domain import acks
from wahub.domain import votes as vote_rules
from wahub.domain.outbox import OutboxItem
from wahub.store.base import Store
from wahub.store.records import EventDraft

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- polls, votes, acks, inbound -------------------------------------------------------------------------
async def test_record_vote_drops_duplicates_and_stale_votes(store: Store) -> None:
    def vote(ts: int, selected: list[str], voter: str = "201000000002@c.us") -> Any:
        return store.record_vote("a", "wamid.poll", voter, timestamp=ts, selected=selected,
                                 voter_alt="123@lid", now=T0 + ts, event=draft("a", "vote_update"),
                                 supersedes=vote_rules.supersedes)

    assert await vote(100, ["Yes"]) is True
    assert await vote(100, ["Yes"]) is False  # duplicate
    assert await vote(50, ["No"]) is False  # stale: arrived late
    assert await vote(200, []) is True  # a newer vote (here: retracted) replaces it
    assert await vote(10, ["No"], voter="201000000003@c.us") is True
    votes = await store.latest_votes("a", "wamid.poll")
    assert [(v.voter, v.selected, v.timestamp, v.voter_alt) for v in votes] == [
        ("201000000002@c.us", [], 200, "123@lid"), ("201000000003@c.us", ["No"], 10, "123@lid")]
    assert len(await store.list_events("a", status="pending", limit=10)) == 3  # one per accepted vote
    assert await store.latest_votes("b", "wamid.poll") == []


async def test_concurrent_identical_votes_are_recorded_once(store: Store) -> None:
    results = await asyncio.gather(*(
        store.record_vote("a", "wamid.poll", "201000000002@c.us", timestamp=100, selected=["Yes"],
                          voter_alt=None, now=T0, event=draft("a", "vote_update"), supersedes=vote_rules.supersedes)
        for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert len(await store.list_events("a", status=None, limit=10)) == 1


async def test_votes_under_a_persons_phone_and_lid_are_one_voter(store: Store) -> None:
    """Confirm as the phone, Cancel as the lid, then a late copy of the Confirm as the phone: the
    Cancel replaces the Confirm (one row for the person), the late Confirm is stale."""
    phone, lid = "201000000002@c.us", "99887766554433@lid"

    async def vote(voter: str, ts: int, selected: list[str], aliases: tuple[str, ...]) -> bool:
        return await store.record_vote("a", "wamid.poll", voter, timestamp=ts, selected=selected, voter_alt=None,
                                       now=T0 + ts, event=draft("a", "vote_update"), supersedes=vote_rules.supersedes,
                                       aliases=aliases)

    assert await vote(phone, 100, ["Confirm"], ()) is True  # the pair is not known yet
    assert await vote(lid, 200, ["Cancel"], (phone,)) is True
    assert await vote(phone, 100, ["Confirm"], (lid,)) is False  # late copy: stale for the person
    assert await vote(phone, 200, ["Cancel"], (lid,)) is False  # same instant under the other id: a copy
    latest = await store.latest_votes("a", "wamid.poll")
    assert [(v.voter, v.selected, v.timestamp) for v in latest] == [(lid, ["Cancel"], 200)]
    assert await vote(phone, 300, [], (lid,)) is True  # a newer retraction as the phone replaces the lid's row
    latest = await store.latest_votes("a", "wamid.poll")
    assert [(v.voter, v.selected, v.timestamp) for v in latest] == [(phone, [], 300)]
    assert len(await store.list_events("a", status=None, limit=10)) == 3


async def test_identities_are_remembered_per_instance_newest_pair_first(store: Store) -> None:
    lid, phone = "99887766554433@lid", "201000000002@c.us"
    assert await store.find_identity("a", lid) is None
    await store.remember_identity("a", lid, phone, now=T0)
    await store.remember_identity("a", lid, phone, now=T0 + 1)  # seen again: nothing changes
    assert await store.find_identity("a", lid) == (lid, phone)
    assert await store.find_identity("a", phone) == (lid, phone)
    assert await store.find_identity("b", lid) is None  # per instance
    await store.remember_identity("a", "11122233344455@lid", phone, now=T0 + 2)  # WhatsApp gave a new lid
    assert await store.find_identity("a", phone) == ("11122233344455@lid", phone)
    await store.remember_identity("a", lid, "201000000003@c.us", now=T0 + 3)  # the lid moved to another phone
    assert await store.find_identity("a", lid) == (lid, "201000000003@c.us")
    assert await store.delete_instance("a") == 0  # deleted, with no open items
    assert await store.find_identity("a", lid) is None


async def test_inbound_messages_are_deduplicated_with_their_event(store: Store) -> None:
    ev = draft("a", "message")
    assert await store.record_inbound("a", "in-1", now=T0, event=ev) is True
    assert await store.record_inbound("a", "in-1", now=T0 + 1, event=draft("a", "message")) is False
    assert await store.record_inbound("b", "in-1", now=T0 + 1, event=None) is True
    results = await asyncio.gather(*(
        store.record_inbound("a", "in-2", now=T0 + 2, event=draft("a", "message")) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    events = await store.list_events("a", status=None, limit=10)
    assert len(events) == 2 and events[-1].event_id == ev.event_id


async def test_ack_only_moves_forward(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "wamid.1", T0 + 1)
    built: list[str] = []

    def event_for(it: OutboxItem) -> EventDraft:
        built.append(it.queue_id)
        return draft("a", "message_ack")

    async def ack(value: str, message_id: str = "wamid.1") -> OutboxItem | None:
        return await store.advance_ack("a", message_id, value, acks.advances, now=T0 + 2, event_for=event_for)

    assert await ack("server") is None  # already `server` when sent
    got = await ack("delivered")
    assert got is not None and got.queue_id == item.queue_id
    assert await ack("delivered") is None
    assert await ack("read") is not None
    assert await ack("delivered") is None  # a late receipt never moves it back
    assert await ack("played") is not None
    assert await ack("read", message_id="unknown") is None
    assert built == [item.queue_id] * 3
    assert len(await store.list_events("a", status=None, limit=10)) == 3
