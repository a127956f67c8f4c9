"""No value compared with ``outbox.status`` is a bound parameter in the SQLite hot paths.

Why it matters: ``outbox`` has a partial index (``uq_outbox_one_sending``, ``WHERE status =
'sending'``). Where a statement compares ``status`` with a bound parameter, SQLite cannot know
while preparing whether that index applies, so it marks the statement to be prepared again every
time the parameter is bound: every execution. The claim then took 72–74 µs instead of 21–22 µs
(``bench/claim_sql.py``), and with a thousand instances due in one instant that was most of the
pacing lateness (``docs/PERFORMANCE.md``, "Constants in the SQL text"). Python's ``sqlite3`` gives no way to read
SQLite's re-prepare counter, so the text each hot path hands the driver is what is checked here.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support.sqlitefile import migrated_sqlite
from wahub.store.sql.connection import _NewItem
from wahub.store.sql.enqueue import sqlite_batch
from wahub.store.sql.sendbatch import Statement
from wahub.store.sql.sendsql import OnSqlite

BOUND_STATUS = re.compile(r"status\s*(=|<>|!=|\bIN\b)\s*\(?\s*[:?]", re.IGNORECASE)


class Recording:
    """A ``sqlite3`` connection that notes the SQL text of every statement it is given."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.sql: list[str] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.sql.append(sql)
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_the_prebuilt_send_statements_carry_their_constants_in_the_text() -> None:
    statements = [v for v in vars(OnSqlite).values() if isinstance(v, Statement)]
    statements += list(OnSqlite.RELEASE.values())
    assert len(statements) >= 14
    for st in statements:
        assert not BOUND_STATUS.search(st.sql), st.sql
    assert "status = 'queued'" in OnSqlite.CLAIM_HAND_OVER.sql
    assert "status='sending'" in OnSqlite.CLAIM_HAND_OVER.sql.replace(" = ", "=")
    assert "LIMIT 1" in OnSqlite.CLAIM.sql
    quoted = Statement.of(sa.select(sa.literal_column("1")).where(sa.column("x") == "it's"))
    assert "'it''s'" in quoted.sql


def test_a_claim_and_its_outcome_run_with_the_constants_inlined(tmp_path: Path) -> None:
    conn = migrated_sqlite(tmp_path)
    now = 1_767_225_600_000
    conn.execute("INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
                 "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) VALUES "
                 "('q1', 'shop', 'k1', 'header', 'text', '201000000001@c.us', '{\"message\": \"m\"}', 'f', 'queued', "
                 "0, ?, ?, ?)", (now, now, now))
    conn.commit()
    item = OnSqlite.claim(conn, "shop", now, True, "3EB0AA")
    assert item is not None and item.queue_id == "q1"
    assert OnSqlite.claim(conn, "shop", now, True, "3EB0AB") is None  # one `sending` per instance
    assert OnSqlite.sent(conn, item, "3EB0AA", now + 5, now + 5, [])
    row = conn.execute("SELECT status, handed_over_at, message_id FROM outbox").fetchone()
    assert row == ("sent", now, "3EB0AA")


def test_the_enqueue_batch_binds_no_status(tmp_path: Path) -> None:
    db = Recording(migrated_sqlite(tmp_path))
    reqs = [_NewItem(queue_id=uuid.uuid4().hex, instance_id="shop", idempotency_key=f"k{i}", key_source="header",
                     kind="text", chat_id="201000000001@c.us", payload={"message": "m"}, fingerprint="f",
                     now=1_767_225_600_000, max_open=2) for i in range(3)]
    results = sqlite_batch(db, reqs)  # type: ignore[arg-type]
    assert [type(r).__name__ for r in results].count("QueueFullSignal") == 1  # the open count still counts
    assert db.sql and not [s for s in db.sql if BOUND_STATUS.search(s)], db.sql
