"""An enqueue's caller is answered as soon as its batch committed, and not before.

On SQLite the batch runs in the database's own thread, which answers the callers right after the
commit: before the call's return reaches the event loop and the connection goes back to the pool
(what the answers used to wait for: docs/PERFORMANCE.md, "Answers straight from the database thread").
An answer still means the row is durable: another connection reads it at that moment.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.store.conftest import T0, enqueue
from wahub.domain.errors import StoreUnavailable
from wahub.store.sql import SqlStore

pytestmark = pytest.mark.timeout(30)
StoreFile = tuple[SqlStore, Path]  # the store and its SQLite file


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[StoreFile]:
    """A migrated SQLite store with instance ``a``, and its file's path."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'answers.sqlite3'}", busy_timeout_ms=50)
    await store.migrate()
    await store.create_instance(id="a", name="A", webhook_url=None, webhook_events=[], webhook_secret=None, now=T0)
    try:
        yield store, tmp_path / "answers.sqlite3"
    finally:
        await store.close()


async def test_callers_are_answered_before_the_batch_gives_back_its_connection(sqlite_store: StoreFile) -> None:
    store, _ = sqlite_store
    order: list[str] = []
    sa.event.listen(store.engine.sync_engine, "checkin", lambda *_: order.append("connection returned"))

    async def one(key: str) -> None:
        await enqueue(store, key)
        order.append(f"answered {key}")

    await asyncio.gather(*(one(f"k{n}") for n in range(4)))
    first_return = order.index("connection returned")
    assert {f"answered k{n}" for n in range(4)} <= set(order[:first_return]), order


async def test_an_answer_means_the_row_is_in_the_file(sqlite_store: StoreFile) -> None:
    store, path = sqlite_store
    seen: list[int] = []

    async def one(key: str) -> None:
        item, created, _ = await enqueue(store, key)
        assert created
        with sqlite3.connect(path) as other:  # a second connection: committed rows only
            seen.append(other.execute("SELECT count(*) FROM outbox WHERE queue_id = ?", (item.queue_id,)).fetchone()[0])

    await asyncio.gather(*(one(f"k{n}") for n in range(6)))
    assert seen == [1] * 6


async def test_a_refused_batch_answers_every_caller_with_an_error_and_stores_nothing(sqlite_store: StoreFile) -> None:
    store, path = sqlite_store
    with sqlite3.connect(path) as other:  # a constraint the batch cannot meet: every key refused
        other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
    results = await asyncio.gather(*(enqueue(store, f"k{n}") for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


async def test_the_store_reports_its_recovery_before_the_caller_is_answered(sqlite_store: StoreFile) -> None:
    store, path = sqlite_store
    heard: list[str | None] = []
    store.watch_faults(heard.append)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await enqueue(store, "k0")
        other.execute("ROLLBACK")
        _, created, _ = await enqueue(store, "k1")
        assert created and heard == ["locked", None], heard
    finally:
        other.close()
