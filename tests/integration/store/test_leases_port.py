"""The leases port: claims spread and only grow tokens, renewals, give-up, and fencing of writes."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, enqueue
from tests.support.polling import until
from wahub.domain.outbox import ItemStatus as St
from wahub.store.base import Fenced, Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)
TTL = 10_000


async def _fleet(store: Store, n: int) -> None:
    for i in range(n):
        await store.create_instance(id=f"i{i:02d}", name=f"I{i}", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=T0 + 10 + i)


async def test_a_claim_takes_free_leases_once_with_a_growing_token(store: Store) -> None:
    await _fleet(store, 4)
    store.fence_as("n1")
    await store.heartbeat("n1", address="http://127.0.0.1:1", capacity=10, now=T0)
    await store.heartbeat("n2", address=None, capacity=10, now=T0)
    first = await store.claim_round("n1", now=T0, ttl_ms=TTL)
    assert (first.instances, first.free, first.live_nodes, first.owned) == (6, 6, 2, 0)
    mine, uncertain = await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=3)
    assert len(mine) == 3 and uncertain == []
    assert all(le.owner == "n1" and le.token == 1 and le.expires_at == T0 + TTL for le in mine)
    theirs, _ = await store.claim_leases("n2", now=T0, ttl_ms=TTL, limit=10)
    assert {le.instance_id for le in theirs}.isdisjoint({le.instance_id for le in mine}) and len(theirs) == 3
    assert (await store.claim_leases("n2", now=T0 + 1, ttl_ms=TTL, limit=10))[0] == []  # nothing free
    nodes = {n.id: n for n in await store.list_nodes()}
    assert (nodes["n1"].owned, nodes["n2"].owned, nodes["n1"].address) == (3, 3, "http://127.0.0.1:1")
    # n1 stops renewing: once expired, n2 takes them over under the next token
    await store.renew_leases("n2", now=T0 + TTL - 1, ttl_ms=TTL)
    moved, _ = await store.claim_leases("n2", now=T0 + TTL, ttl_ms=TTL, limit=10)
    assert {le.instance_id for le in moved} == {le.instance_id for le in mine}
    assert all(le.token == 2 for le in moved)
    assert await store.renew_leases("n1", now=T0 + TTL + 1, ttl_ms=TTL) == []  # n1 learns it lost them
    assert not any(store.holds(le.instance_id) for le in mine)


async def test_writes_of_a_node_that_lost_the_lease_are_refused_and_change_nothing(store: Store) -> None:
    store.fence_as("n1")
    await store.claim_round("n1", now=T0, ttl_ms=TTL)
    await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=10)
    first, _, _ = await enqueue(store, "k1")
    await enqueue(store, "k2")
    claimed = await store.claim_next("a", T0 + 1, hand_over=True)
    assert claimed is not None and claimed.queue_id == first.queue_id
    # paused past its lease: another node claims "a" (token 2) and recovers the handed-over item
    taken, uncertain = await store.claim_leases("n2", now=T0 + TTL + 5, ttl_ms=TTL, limit=10)
    assert {le.instance_id for le in taken} == {"a", "b"}
    assert [u.queue_id for u in uncertain] == [first.queue_id]
    assert await store.send_history("a", T0) == [T0 + TTL + 5]  # the move counts it as of the claim
    with pytest.raises(Fenced):
        await store.mark_sent(claimed, message_id="M1", now=T0 + TTL + 6, sent_at=T0 + TTL + 6)
    with pytest.raises(Fenced):
        await store.claim_next("a", T0 + TTL + 6, hand_over=True)
    with pytest.raises(Fenced):
        await store.release(claimed.seq, next_attempt_at=T0, now=T0 + TTL + 6, unlog=True)
    with pytest.raises(Fenced):
        await store.record_transition("a", from_state="ready", to_state="disconnected", reason="x",
                                      now=T0 + TTL + 6)
    item = await store.get_item(first.queue_id)
    assert item is not None and item.status == St.UNCERTAIN and item.message_id is None
    stats = await store.queue_stats("a")
    assert stats.by_status.get(St.QUEUED.value) == 1 and stats.by_status.get(St.SENDING.value, 0) == 0
    rec = await store.get_instance("a")
    assert rec is not None and rec.state == "initializing"


async def test_renewal_keeps_leases_and_a_given_up_lease_is_free_at_once(store: Store) -> None:
    store.fence_as("n1")
    await store.claim_round("n1", now=T0, ttl_ms=TTL)
    await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=10)
    renewed = await store.renew_leases("n1", now=T0 + TTL - 1, ttl_ms=TTL)
    assert [(le.instance_id, le.expires_at) for le in renewed] == [("a", T0 + 2 * TTL - 1), ("b", T0 + 2 * TTL - 1)]
    assert (await store.claim_leases("n2", now=T0 + TTL + 1, ttl_ms=TTL, limit=10))[0] == []  # renewed: not free
    assert store.holds("a")
    await enqueue(store, "k1")
    assert await store.claim_next("a", T0 + 2, hand_over=True) is not None  # the holder writes
    for node in ("n1", "n2"):
        await store.heartbeat(node, address=None, capacity=10, now=T0 + 2)
    assert (await store.claim_round("n2", now=T0 + 3, ttl_ms=TTL)).live_nodes == 2
    assert await store.release_leases("n1", ["a"]) == 1
    assert not store.holds("a")
    # a node that stopped cleanly is no longer live: the others' fair shares cover its instances at once
    assert (await store.claim_round("n2", now=T0 + 3, ttl_ms=TTL)).live_nodes == 1
    taken, _ = await store.claim_leases("n2", now=T0 + 3, ttl_ms=TTL, limit=10)
    assert [(le.instance_id, le.token) for le in taken] == [("a", 2)]


async def test_without_fencing_nothing_is_checked(store: Store) -> None:
    await enqueue(store, "k1")
    assert store.holds("a")
    assert await store.claim_next("a", T0 + 1, hand_over=True) is not None


async def test_a_wake_reaches_the_listeners(store: Store) -> None:
    heard: list[str] = []
    await store.listen_wakes(heard.append)
    await store.wake_owner("a")

    async def heard_it() -> bool:
        return heard == ["a"]

    await until(heard_it, within_s=5)


async def test_the_sweep_names_the_node_s_instances_with_due_items(store: Store) -> None:
    store.fence_as("n1")
    await store.claim_round("n1", now=T0, ttl_ms=TTL)
    await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=1)  # "a" only
    await enqueue(store, "k1", instance="a", now=T0 + 10)
    await enqueue(store, "k2", instance="b", now=T0 + 10)
    assert await store.due_on("n1", T0 + 9) == []  # not due yet
    assert await store.due_on("n1", T0 + 10) == ["a"]  # "b" is not n1's
    assert await store.due_on("n2", T0 + 10) == []
