"""Leases on one PostgreSQL, with real locks and transactions in flight: a claim never overtakes a write in
progress, a write that will never finish (its node stopped) does not keep the lease from being claimed, and
a node's renewal in flight does not take from it a lease it claimed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, enqueue
from wahub.domain.errors import StoreUnavailable
from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.runtime.clock import FakeClock
from wahub.runtime.leases import LeasePolicy, Leases
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


class StopMidStatement:
    """Freezes the next ``UPDATE outbox`` of a fenced write right after its statement was prepared.

    asyncpg prepares a statement with Parse, Describe and Flush (no Sync) and sends Bind, Execute and
    Sync once the answer is in; SQLAlchemy prepares every statement its per-connection cache lacks.
    A process stopped (SIGSTOP, or starved of CPU) between the two leaves its backend ``active``
    waiting for the client: PostgreSQL's idle-in-transaction timeout only starts after a Sync and a
    statement timeout is ignored while the backend reads from the client, so the transaction and
    the fence's ``FOR SHARE`` lock on the lease row stay until the process runs again. Waiting here,
    the server sees exactly that.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stopped = asyncio.Event()
        self.resume = asyncio.Event()
        self.armed = True
        real = asyncpg.connection.Connection.prepare

        async def prepare(conn: asyncpg.connection.Connection, query: str, **kw: Any) -> Any:
            stmt = await real(conn, query, **kw)
            if self.armed and query.startswith("UPDATE outbox"):
                self.armed = False
                self.stopped.set()
                await self.resume.wait()
            return stmt

        monkeypatch.setattr(asyncpg.connection.Connection, "prepare", prepare)


async def test_a_lease_whose_old_owner_stopped_mid_statement_is_claimed_within_two_rounds(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """n1 holds "a" and "b" and stops in the middle of a fenced write of "a" (its backend keeps the lease
    row share-locked; no server timeout ends it). Once n1's leases expired and its heartbeat is older
    than the TTL, n2, the only live node, runs claim rounds: it holds both within two rounds, and n1's
    write, when n1 runs again, changes nothing."""
    assert isinstance(store, SqlStore)
    store.fence_as("n1")
    await store.heartbeat("n1", address=None, capacity=10, now=T0)
    await store.claim_round("n1", now=T0, ttl_ms=TTL)
    await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=10)
    item, _, _ = await enqueue(store, "k1")
    stop = StopMidStatement(monkeypatch)
    write = asyncio.ensure_future(store.claim_next("a", T0 + 1, hand_over=True))
    await asyncio.wait_for(stop.stopped.wait(), 10)

    other = SqlStore(store.url)
    adopted: list[str] = []

    async def adopt(instance_id: str, _uncertain: list[OutboxItem]) -> None:
        adopted.append(instance_id)

    async def nothing(*_args: object) -> None:
        return None

    clock = FakeClock(T0 + TTL + 1)  # n1's leases expired and its heartbeat is one TTL old
    n2 = Leases(other, clock, LeasePolicy("n2", None, capacity=10, ttl_ms=TTL), adopt=adopt, drop=nothing,
                sync=nothing)
    try:
        await other.heartbeat("n2", address=None, capacity=10, now=clock.now_ms())
        other.fence_as("n2")  # what Leases.start does, without its loops: the rounds run here, one by one
        for _ in range(2):
            await n2.renew()
            await n2.claim()
            await clock.advance(TTL // 3)
        assert sorted(n2.owned) == ["a", "b"] and sorted(adopted) == ["a", "b"]
        assert {(le.instance_id, le.owner) for le in await other.list_leases()} == {("a", "n2"), ("b", "n2")}
        stop.resume.set()
        # n2 ended n1's transaction: the write fails as the store's failure (503 to an API caller, a retry
        # for a send loop), and nothing of it lands
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(write, 10)
        stored = await other.get_item(item.queue_id)
        assert stored is not None and stored.status == St.QUEUED and stored.handed_over_at is None
    finally:
        stop.resume.set()
        await asyncio.wait([write], timeout=10)
        if write.done() and not write.cancelled():
            write.exception()  # retrieved: the outcome was asserted above, or the test failed before it
        await other.close()


async def test_a_lease_claimed_while_a_renewal_is_in_flight_stays_writable(store: Store) -> None:
    """The renewal's UPDATE ran before a claim of the same node committed, and its answer comes after the
    claim's: the lease just claimed is missing from that answer without being lost, so this node's writes
    for it are not refused."""
    assert isinstance(store, SqlStore)
    store.fence_as("n1")
    await store.claim_round("n1", now=T0, ttl_ms=TTL)
    await store.claim_leases("n1", now=T0, ttl_ms=TTL, limit=1)  # "a"
    tx = store._tx
    ran, resume = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def answer_late() -> AsyncIterator[AsyncConnection]:
        async with tx() as conn:
            yield conn
        ran.set()
        await resume.wait()

    store._tx = answer_late  # type: ignore[method-assign]
    renewal = asyncio.ensure_future(store.renew_leases("n1", now=T0 + 1, ttl_ms=TTL))
    await asyncio.wait_for(ran.wait(), 10)
    store._tx = tx  # type: ignore[method-assign]
    taken, _ = await store.claim_leases("n1", now=T0 + 2, ttl_ms=TTL, limit=10)
    assert [le.instance_id for le in taken] == ["b"]
    resume.set()
    assert [le.instance_id for le in await renewal] == ["a"]
    assert store.holds("a") and store.holds("b")
    await enqueue(store, "k1", instance="b")
    assert await store.claim_next("b", T0 + 3, hand_over=True) is not None
