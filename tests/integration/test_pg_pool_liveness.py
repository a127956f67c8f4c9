"""PostgreSQL pool without pre-ping: a connection the server closed is dropped at checkout, not used.

``pool_pre_ping`` cost a round trip before every checkout (every enqueue batch); it is replaced by a
check of asyncpg's own view of the socket. This proves a terminated backend does not fail the next call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.polling import until
from wahub.store.sql import SqlStore

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="needs WAHUB_TEST_PG_URL")


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    assert PG_URL is not None
    plain = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute("DROP DATABASE IF EXISTS wahub_liveness")
        await admin.execute("CREATE DATABASE wahub_liveness")
    finally:
        await admin.close()
    s = SqlStore("postgresql+asyncpg://" + plain.split("://", 1)[1].rsplit("/", 1)[0] + "/wahub_liveness")
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def test_a_connection_the_server_closed_is_not_handed_out(store: SqlStore) -> None:
    assert store.engine.pool._pre_ping is False  # the round trip per checkout is gone
    assert await store.next_due_at("shop") is None  # a pooled connection now exists
    assert PG_URL is not None
    admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        killed = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = 'wahub_liveness' AND pid <> pg_backend_pid()")
        assert killed >= 1

        async def gone() -> bool:
            return not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = 'wahub_liveness'")
        await until(gone)

        async def seen_closed() -> bool:  # the client reads the server's goodbye on its own loop turn
            pooled = list(store.engine.pool._pool._queue._queue)  # type: ignore[attr-defined]
            return all(rec.dbapi_connection.driver_connection.is_closed() for rec in pooled
                       if rec.dbapi_connection is not None)
        await until(seen_closed)
    finally:
        await admin.close()
    for _ in range(3):  # every call after the kill gets a live connection
        assert await store.next_due_at("shop") is None
