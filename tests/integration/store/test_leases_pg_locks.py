"""Fencing between two nodes on one PostgreSQL, with real locks: a claim never overtakes a write in progress."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, enqueue
from wahub.domain.outbox import ItemStatus as St
from wahub.store import tables as t
from wahub.store.base import Fenced, Store
from wahub.store.sql import SqlStore

pytestmark = pytest.mark.parametrize("fresh_store", [p for p in IMPLEMENTATIONS if p.id == "postgresql"],
                                     indirect=True)
TTL = 10_000


async def test_a_claim_never_overtakes_a_write_of_the_old_owner_in_progress(store: Store) -> None:
    """Two nodes on one PostgreSQL: while n1's fenced write is open, n2 cannot claim that lease (the row
    is share-locked, SKIP LOCKED passes it by); once it committed, n2 claims and its recovery sees the
    write; every later write of n1 is refused."""
    assert isinstance(store, SqlStore)
    other = SqlStore(store.url)
    try:
        store.fence_as("n1")
        other.fence_as("n2")
        await store.claim_round("n1", now=T0, ttl_ms=TTL)
        await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=10)
        item, _, _ = await enqueue(store, "k1")
        expired = T0 + TTL + 1
        async with store._fenced_tx("a") as conn:  # n1's write, begun before n2's claim
            await conn.execute(t.outbox.update().where(t.outbox.c.seq == item.seq).values(
                status=St.SENDING.value, handed_over_at=T0 + 5, updated_at=T0 + 5))
            during, _ = await other.claim_leases("n2", now=expired, ttl_ms=TTL, limit=10)
            assert [le.instance_id for le in during] == ["b"]  # "a" is held by the write in progress
        after, uncertain = await other.claim_leases("n2", now=expired, ttl_ms=TTL, limit=10)
        assert [(le.instance_id, le.token) for le in after] == [("a", 2)]
        assert [u.queue_id for u in uncertain] == [item.queue_id]  # the committed write was seen
        with pytest.raises(Fenced):
            await store.mark_sent(item, message_id="M", now=expired, sent_at=expired)
        stored = await other.get_item(item.queue_id)
        assert stored is not None and stored.status == St.UNCERTAIN
    finally:
        await other.close()
