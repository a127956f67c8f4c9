"""The SQLite send-write batch: many requests in one transaction, each request on its own.

What a caller of the batch must be able to rely on: its answer means committed; another request's
failure is not its failure; a failure of the transaction itself (the file locked by another process)
is every request's :class:`StoreUnavailable`, reported as a store fault and cleared once a batch
commits again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from wahub.domain.errors import StoreUnavailable
from wahub.store.sql import SqlStore


def _insert(name: str) -> object:
    def apply(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO number_ids (instance_id, typed, resolved, checked_at) VALUES ('a', ?, ?, 1)",
                     (name, name))
        return name
    return apply


def _rows(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT typed FROM number_ids"))
    finally:
        conn.close()


async def test_one_failing_request_rolls_back_alone_and_the_others_commit(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    batch = store._send_writes
    assert batch is not None

    def half_then_fail(conn: sqlite3.Connection) -> None:
        _insert("half")(conn)  # type: ignore[operator]
        raise ValueError("a bug after the first statement")

    def duplicate(conn: sqlite3.Connection) -> None:
        _insert("one")(conn)  # type: ignore[operator]

    try:
        results = await asyncio.gather(
            batch.run(_insert("one")), batch.run(half_then_fail), batch.run(_insert("two")),
            batch.run(duplicate, catch=(sqlite3.IntegrityError,), on_caught="taken"), batch.run(_insert("three")),
            return_exceptions=True)
        assert results[0] == "one" and results[2] == "two" and results[4] == "three"
        assert isinstance(results[1], ValueError)  # only its caller hears of it
        assert results[3] == "taken"  # the caught error answers the agreed value
        assert _rows(path) == ["one", "three", "two"]  # nothing of the failed request was written
    finally:
        await store.close()


async def test_a_locked_file_fails_the_batch_as_a_store_fault_until_writes_succeed_again(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=50)
    await store.migrate()
    faults: list[str | None] = []
    store.watch_faults(faults.append)
    batch = store._send_writes
    assert batch is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the file
        results = await asyncio.gather(batch.run(_insert("x")), batch.run(_insert("y")), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert faults == ["locked"]
        other.execute("ROLLBACK")
        assert await batch.run(_insert("z")) == "z"
        assert faults == ["locked", None]
        assert _rows(path) == ["z"]
    finally:
        other.close()
        await store.close()


async def test_the_database_thread_seam_exists() -> None:
    """The batch runs its function through aiosqlite's ``Connection._execute``; an aiosqlite release
    without it must fail here, not in production."""
    aiosqlite = pytest.importorskip("aiosqlite")
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)
