"""The lifecycle port on every implementation: transitions, restarts (and purge)."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft, enqueue, send
from wahub.store.base import Store
from wahub.store.records import Transition

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- lifecycle records -----------------------------------------------------------------------------------
async def test_transitions_update_the_instance_and_store_events(store: Store) -> None:
    ev = draft("a", "change_state")
    await store.record_transition("a", from_state="initializing", to_state="connecting", reason="boot",
                                  now=T0 + 10, events=[ev])
    await store.record_transition("a", from_state="connecting", to_state="disconnected", reason="network",
                                  now=T0 + 20, last_error="socket closed")
    await store.record_transition("a", from_state="disconnected", to_state="restricted", reason="ban",
                                  now=T0 + 30, restricted_until=T0 + 90_000)
    rec = await store.get_instance("a")
    assert rec is not None
    assert (rec.state, rec.state_since, rec.state_reason, rec.last_error, rec.restricted_until) == (
        "restricted", T0 + 30, "ban", "socket closed", T0 + 90_000)
    assert await store.transitions("a", limit=2) == [
        Transition(T0 + 30, "disconnected", "restricted", "ban"),
        Transition(T0 + 20, "connecting", "disconnected", "network")]
    assert len(await store.transitions("a")) == 3
    assert await store.transitions("b") == []
    assert await store.count_transitions_to("a", "disconnected", T0) == 1
    assert await store.count_transitions_to("a", "disconnected", T0 + 20) == 0  # `since` is exclusive
    assert [e.event_id for e in await store.list_events("a", status=None, limit=5)] == [ev.event_id]


async def test_restarts_since_counts_the_budget_window(store: Store) -> None:
    for at in (T0 + 300, T0 + 100, T0 + 200):
        await store.record_restart("a", kind="soft", reason="disconnected", now=at)
    await store.record_restart("b", kind="hard", reason=None, now=T0 + 150)
    assert await store.restarts_since("a", T0) == [T0 + 100, T0 + 200, T0 + 300]
    assert await store.restarts_since("a", T0 + 100) == [T0 + 200, T0 + 300]
    assert await store.restarts_since("b", T0) == [T0 + 150]


async def test_purge_deletes_old_final_records_only(store: Store) -> None:
    old = T0
    new = T0 + 10_000
    sent, _, _ = await enqueue(store, "sent", now=old)
    claimed = await store.claim_next("a", old)
    assert claimed is not None
    await send(store, claimed, "m1", old)
    uncertain, _, _ = await enqueue(store, "uncertain", now=old)
    claimed = await store.claim_next("a", old)
    assert claimed is not None
    await store.mark_handed_over(claimed, old)
    await store.recover_in_flight(old)
    queued, _, _ = await enqueue(store, "queued", now=old)
    fresh_sent, _, _ = await enqueue(store, "fresh", now=new)
    e_old, e_pending, e_new = draft("a"), draft("a"), draft("a")
    await store.add_events([e_old, e_pending], old)
    await store.add_events([e_new], new)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e_old.event_id
    await store.event_delivered(head.seq, now=old, status_code=200)
    await store.record_inbound("a", "in-old", now=old, event=None)
    await store.record_inbound("a", "in-new", now=new, event=None)
    await store.record_restart("a", kind="soft", reason=None, now=old)
    await store.record_transition("a", from_state="initializing", to_state="connecting", reason=None, now=old)

    removed = await store.purge(old + 1)
    assert removed == {"outbox": 1, "outbox_retired": 0, "send_log": 2, "events": 1, "inbound_seen": 1,
                       "transitions": 1, "restarts": 1}
    assert await store.get_item(sent.queue_id) is None
    assert await store.find_item_by_key("a", "sent") is None  # the key may be used again
    for kept in (uncertain, queued, fresh_sent):
        assert await store.get_item(kept.queue_id) is not None
    assert [e.event_id for e in await store.list_events("a", status=None, limit=10)] == [
        e_new.event_id, e_pending.event_id]
    assert await store.record_inbound("a", "in-old", now=new, event=None) is True
    assert await store.record_inbound("a", "in-new", now=new, event=None) is False
    assert await store.restarts_since("a", 0) == [] and await store.transitions("a") == []
    assert await store.purge(old + 1) == dict.fromkeys(removed, 0)
