"""Claimers end the open transactions of gone nodes, by session name, and nobody else's (PostgreSQL only)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import sqlalchemy as sa
import structlog

from tests.integration.store.conftest import IMPLEMENTATIONS, PG_URL, T0, enqueue
from wahub.domain.errors import StoreUnavailable
from wahub.store.base import Store
from wahub.store.sql import SqlStore
from wahub.store.sql.leases import session_name

pytestmark = pytest.mark.parametrize("fresh_store", [p for p in IMPLEMENTATIONS if p.id == "postgresql"],
                                     indirect=True)
TTL = 10_000


def _raw_url(store: SqlStore) -> str:
    return store.url.replace("postgresql+asyncpg://", "postgresql://")


async def _lock_free_lease(store: SqlStore, instance_id: str) -> asyncpg.Connection:
    """Another session (not named after any node) share-locks a free lease row, as a stuck write would."""
    raw = await asyncpg.connect(_raw_url(store))
    tx = raw.transaction()
    await tx.start()
    await raw.execute("SELECT 1 FROM leases WHERE instance_id = $1 FOR SHARE", instance_id)
    return raw


async def _names(store: SqlStore) -> list[str]:
    raw = await asyncpg.connect(_raw_url(store))
    try:
        return [r[0] for r in await raw.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")]
    finally:
        await raw.close()


async def test_long_node_ids_that_share_their_head_never_share_a_session_name(store: Store) -> None:
    """NODE_ID allows 120 characters, application_name keeps 63 bytes: two ids that share their first 56
    bytes must still get different session names, or a live node's write is ended because the other is gone."""
    assert isinstance(store, SqlStore)
    base = "wa-hub-production-eu-west-1-cluster-a-statefulset-pod-" + "x" * 2  # 56 characters
    live_id, gone_id = base + "-node-1", base + "-node-2"
    assert session_name(live_id) != session_name(gone_id)
    assert all(len(session_name(i).encode()) <= 63 for i in (live_id, gone_id))
    live = store
    claimer = SqlStore(store.url)
    await live.claim_round(live_id, now=T0, ttl_ms=TTL)  # lease rows, free
    lock = await _lock_free_lease(store, "a")
    try:
        await live.heartbeat(live_id, address=None, capacity=10, now=T0)
        live.fence_as(live_id)
        assert [le.instance_id for le in (await live.claim_leases(live_id, now=T0, ttl_ms=TTL, limit=1))[0]] == ["b"]
        await live.heartbeat(gone_id, address=None, capacity=10, now=T0 - 2 * TTL)  # long gone
        await claimer.heartbeat("n3", address=None, capacity=10, now=T0 + 1)
        claimer.fence_as("n3")
        outcome: BaseException | None = None
        try:
            async with live._fenced_tx("b") as conn:  # live_id's write in progress (it is live: heartbeat T0)
                await claimer.claim_leases("n3", now=T0 + 1, ttl_ms=TTL, limit=10)  # passes "a" (locked)
                await conn.execute(sa.text("SELECT 1"))
        except BaseException as exc:  # noqa: BLE001 - what the caller (API, send loop) would see
            outcome = exc
        assert outcome is None, "a live node's transaction was ended"
    finally:
        await lock.close()
        await claimer.close()


async def test_a_write_whose_session_is_ended_fails_as_the_store_and_the_next_one_works(store: Store) -> None:
    """A node resumed after a pause (or any node whose session is ended) in the middle of a write such as an
    API enqueue: the caller gets StoreUnavailable (the API's 503 with Retry-After), not a raw driver error
    (a 500); the pool drops the connection and the next write's session carries the node's name again."""
    assert isinstance(store, SqlStore)
    await store.heartbeat("n1", address=None, capacity=10, now=T0)
    store.fence_as("n1")
    await store.ping()  # a named session
    admin = await asyncpg.connect(_raw_url(store))
    seen: BaseException | None = None
    try:
        try:
            async with store._tx() as conn:
                await conn.execute(sa.text("SELECT 1"))
                await admin.execute("SELECT pg_terminate_backend(pid, 2000) FROM pg_stat_activity "
                                    "WHERE application_name = $1 AND datname = current_database()",
                                    session_name("n1"))
                await conn.execute(sa.text("SELECT 1"))
        except BaseException as exc:  # noqa: BLE001
            seen = exc
        # the next write works and its session carries the name again
        await enqueue(store, "after")
        assert session_name("n1") in await _names(store)
        assert isinstance(seen, StoreUnavailable), f"the API would answer 500, not 503: {type(seen)}"
    finally:
        await admin.close()


async def test_a_session_is_named_once_per_connection_not_per_checkout(store: Store,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(store, SqlStore)
    calls: list[str] = []
    real = asyncpg.connection.Connection.execute

    async def execute(self: asyncpg.connection.Connection, query: str, *args: object, **kw: object) -> object:
        if "application_name" in query:
            calls.append(query)
        return await real(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", execute)
    store.fence_as("n1")
    for _ in range(50):
        await store.ping()
    assert len(calls) == 1


async def test_a_claimer_whose_role_cannot_end_the_session_logs_it(store: Store) -> None:
    """A gone node's session of a role the claimer is not a member of cannot be ended: that is logged
    (gone_node_sessions_not_ended, docs/scaling.md), while a claimer that may end it does."""
    assert isinstance(store, SqlStore) and PG_URL
    suffix = uuid.uuid4().hex[:8]
    r1, r2 = f"wahub_claimer_{suffix}", f"wahub_other_{suffix}"
    admin = await asyncpg.connect(_raw_url(store))
    for role in (r1, r2):
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    host_db = store.url.split("@", 1)[1]
    url_a = f"postgresql+asyncpg://{r1}@{host_db}"
    raw_b = await asyncpg.connect(f"postgresql://{r2}@{host_db}", server_settings={"application_name": "wa-hub gone"})
    a = SqlStore(url_a)
    try:
        await store.heartbeat("gone", address=None, capacity=10, now=T0 - 2 * TTL)
        await store.claim_round("gone", now=T0, ttl_ms=TTL)  # lease rows, free
        tx = raw_b.transaction()
        await tx.start()
        await raw_b.execute("SELECT 1 FROM leases WHERE instance_id = 'a' FOR SHARE")
        await a.heartbeat("n1", address=None, capacity=10, now=T0)
        a.fence_as("n1")
        with structlog.testing.capture_logs() as cap:
            got, _ = await a.claim_leases("n1", now=T0, ttl_ms=TTL, limit=10)
        still = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wa-hub gone' "
                                     "AND xact_start IS NOT NULL")
        assert still == 1 and [le.instance_id for le in got] == ["b"]
        assert [e.get("event") for e in cap] == ["gone_node_sessions_not_ended"], cap
        # the same claim by a role that may end the session ends it, and says so
        store.fence_as("n9")
        await store.heartbeat("n9", address=None, capacity=10, now=T0)
        with structlog.testing.capture_logs() as cap2:
            await store.claim_leases("n9", now=T0, ttl_ms=TTL, limit=10)
        assert [e.get("event") for e in cap2] == ["gone_node_sessions_ended"]
    finally:
        await a.close()
        await raw_b.close()
        for role in (r1, r2):
            await admin.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            await admin.execute(f'DROP OWNED BY "{role}"')
            await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()
