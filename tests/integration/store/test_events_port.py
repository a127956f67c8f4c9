"""The events port on every implementation."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft
from wahub.store.base import Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- webhook events --------------------------------------------------------------------------------------
async def test_event_lifecycle_add_head_delivered_failed_dead_replay(store: Store) -> None:
    e1, e2, e3 = draft("a", "ready"), draft("a", "message"), draft("a", "message_ack")
    await store.add_events([e1, e2], T0)
    await store.add_events([draft("b")], T0)
    await store.add_events([e3], T0 + 1)
    assert sorted(await store.instances_with_pending_events()) == ["a", "b"]

    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.event, head.body, head.status, head.attempts, head.next_attempt_at) == (
        e1.event_id, "ready", "{}", "pending", 0, T0)
    # a failed attempt with a retry keeps the event at the head: later events wait (order per instance)
    await store.event_failed(head.seq, now=T0 + 5, next_attempt_at=T0 + 1_005, error="HTTP 503",
                             status_code=503)
    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.attempts, head.next_attempt_at, head.last_error, head.last_status_code) == (
        e1.event_id, 1, T0 + 1_005, "HTTP 503", 503)
    await store.event_delivered(head.seq, now=T0 + 1_006, status_code=200)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e2.event_id
    # the last failed attempt makes a dead letter; the lane moves on
    await store.event_failed(head.seq, now=T0 + 1_007, next_attempt_at=None, error="HTTP 410",
                             status_code=410)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e3.event_id
    await store.event_delivered(head.seq, now=T0 + 1_008, status_code=204)
    assert await store.head_event("a") is None
    assert await store.instances_with_pending_events() == ["b"]

    listed = await store.list_events("a", status=None, limit=10)
    assert [e.event_id for e in listed] == [e3.event_id, e2.event_id, e1.event_id]  # newest first
    assert [e.event_id for e in await store.list_events("a", status=None, limit=1, offset=1)] == [e2.event_id]
    delivered = listed[2]
    assert (delivered.status, delivered.attempts, delivered.delivered_at, delivered.last_error,
            delivered.last_status_code) == ("delivered", 2, T0 + 1_006, None, 200)
    dead = await store.list_events("a", status="dead", limit=10)
    assert [(e.event_id, e.attempts, e.last_status_code) for e in dead] == [(e2.event_id, 1, 410)]
    assert await store.event_stats("a") == {"backlog": 0, "dead": 1, "delivered": 2,
                                            "lastSuccessAt": T0 + 1_008, "lastError": "HTTP 410"}

    assert await store.replay_events("a", event_id="evt_unknown", now=T0 + 2_000) == 0
    assert await store.replay_events("a", event_id=e2.event_id, now=T0 + 2_000) == 1
    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.status, head.attempts, head.next_attempt_at) == (
        e2.event_id, "pending", 0, T0 + 2_000)
    await store.event_failed(head.seq, now=T0 + 2_001, next_attempt_at=None, error="again", status_code=None)
    await store.event_failed((await store.head_event("b") or head).seq, now=T0 + 2_001, next_attempt_at=None,
                             error="b down", status_code=None)
    assert await store.replay_events("a", event_id=None, now=T0 + 3_000) == 1  # only this instance's
    assert (await store.event_stats("b"))["dead"] == 1


async def test_events_keep_their_order_per_instance(store: Store) -> None:
    drafts = [draft("a", f"e{i}") for i in range(6)]
    for i, d in enumerate(drafts):
        await store.add_events([d, draft("b", f"b{i}")], T0 + i)
    seen = []
    while (head := await store.head_event("a")) is not None:
        seen.append(head.event_id)
        await store.event_delivered(head.seq, now=T0 + 100, status_code=200)
    assert seen == [d.event_id for d in drafts]
    assert (await store.event_stats("b"))["backlog"] == 6


async def test_pending_events_come_oldest_first_and_marks_in_one_call_deliver_them(store: Store) -> None:
    drafts = [draft("a", f"e{i}") for i in range(5)]
    await store.add_events(drafts[:3] + [draft("b")], T0)
    await store.add_events(drafts[3:], T0 + 1)
    batch = await store.pending_events("a", 4)
    assert [e.event_id for e in batch] == [d.event_id for d in drafts[:4]]
    await store.events_delivered([(batch[0].seq, T0 + 10, 200), (batch[1].seq, T0 + 11, 204)])
    rest = await store.pending_events("a", 10)
    assert [e.event_id for e in rest] == [d.event_id for d in drafts[2:]]
    first = await store.get_event("a", drafts[1].event_id)
    assert first is not None
    assert (first.status, first.delivered_at, first.attempts, first.last_status_code) == ("delivered", T0 + 11, 1, 204)
    await store.events_delivered([])
    assert (await store.event_stats("a"))["delivered"] == 2
