"""SQLite's enqueue batch answers each new item with the row it stored (its ``seq`` included).

Held to the rows in the file, including after the newest rows were deleted (rowids are reused then),
when another write inserted one of the batch's keys between the batch's read and its insert, and for
the open counts that refuse a full queue per instance (``store/sql/enqueue.py``).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from tests.support.sqlitefile import migrated_sqlite
from wahub.store.base import QueueFullSignal
from wahub.store.sql.connection import _NewItem
from wahub.store.sql.enqueue import sqlite_batch

NOW = 1_767_225_600_000


def _req(key: str, instance_id: str = "shop", max_open: int = 100) -> _NewItem:
    return _NewItem(queue_id=uuid.uuid4().hex, instance_id=instance_id, idempotency_key=key, key_source="header",
                    kind="text", chat_id="201000000001@c.us", payload={"message": key}, fingerprint="f" + key,
                    now=NOW, max_open=max_open)


def _stored(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[int, str]]:
    return {(i, k): (seq, q) for seq, q, i, k in
            conn.execute("SELECT seq, queue_id, instance_id, idempotency_key FROM outbox").fetchall()}


def _answers(results: list[Any]) -> dict[tuple[str, str], tuple[int, str, bool]]:
    out = {}
    for r in results:
        assert not isinstance(r, BaseException), r
        item, created, _count = r
        out[(item.instance_id, item.idempotency_key)] = (item.seq, item.queue_id, created)
    return out


def test_new_items_carry_the_seq_of_their_stored_rows(tmp_path: Path) -> None:
    conn = migrated_sqlite(tmp_path, ("shop", "other"))
    first = _answers(sqlite_batch(conn, [_req(f"a{i}", "shop" if i % 2 else "other") for i in range(7)]))
    conn.execute("DELETE FROM outbox WHERE seq >= (SELECT max(seq) - 2 FROM outbox)")  # rowids reused next
    conn.commit()
    second = _answers(sqlite_batch(conn, [_req(f"b{i}", "shop" if i % 3 else "other") for i in range(5)]))
    stored = _stored(conn)
    assert len(stored) == 7 - 3 + 5 and set(second) <= set(stored)
    for key, (seq, queue_id, created) in {**first, **second}.items():
        if key in stored:  # the three newest of the first batch were deleted
            assert created and stored[key] == (seq, queue_id), key


def test_a_key_another_write_inserted_since_the_read_is_answered_with_that_item(tmp_path: Path) -> None:
    conn = migrated_sqlite(tmp_path, ("shop", "other"))
    theirs = uuid.uuid4().hex

    class SlipIn:
        """The connection, with another write's row slipping in just before the batch's insert."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.startswith("INSERT INTO outbox"):
                conn.execute("INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, "
                             "chat_id, payload, fingerprint, status, attempts, next_attempt_at, created_at, "
                             "updated_at) VALUES (?, 'shop', 'k1', 'header', 'text', '201000000001@c.us', '{}', "
                             "'x', 'queued', 0, ?, ?, ?)", (theirs, NOW, NOW, NOW))
            return conn.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(conn, name)

    reqs = [_req("k0"), _req("k1"), _req("k2")]
    got = _answers(sqlite_batch(SlipIn(), reqs))  # type: ignore[arg-type]
    stored = _stored(conn)
    assert got[("shop", "k1")] == (*stored[("shop", "k1")], False) and stored[("shop", "k1")][1] == theirs
    for key in (("shop", "k0"), ("shop", "k2")):
        assert got[key] == (*stored[key], True)


def test_the_open_counts_still_refuse_a_full_queue_per_instance(tmp_path: Path) -> None:
    conn = migrated_sqlite(tmp_path, ("shop", "other"))
    results = sqlite_batch(conn, [_req("a", max_open=2), _req("b", max_open=2), _req("c", "other", max_open=1),
                                  _req("d", max_open=2), _req("e", "other", max_open=1)])
    assert [type(r).__name__ for r in results] == ["tuple", "tuple", "tuple", "QueueFullSignal", "QueueFullSignal"]
    full = results[3]
    assert isinstance(full, QueueFullSignal) and full.open_count == 2
