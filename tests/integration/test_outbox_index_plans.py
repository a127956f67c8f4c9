"""The lookups that read ``outbox``'s partial indexes (migration 0011) still find them: no table scan.

Migration 0011 keeps rows without a message id out of ``ix_outbox_message_id`` and
``ix_outbox_chosen_message_id``, and rows whose key was not derived out of ``ix_outbox_fingerprint``.
A query the planner cannot prove to match the index's ``WHERE`` would scan the whole outbox instead
(every ack, vote reply and derived-key enqueue, growing with the stored items): each query below is
taken as the store hands it to SQLite (the driver's trace, values expanded) and its plan is read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.store.conftest import T0, enqueue
from wahub.store.sql import SqlStore

pytestmark = pytest.mark.timeout(60)


async def test_message_id_and_derived_key_lookups_use_the_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plans.sqlite3"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
        await store.create_instance(id="a", name="a", webhook_url=None, webhook_events=[], webhook_secret=None,
                                    now=T0)
        item, _, _ = await enqueue(store, "k1")
        claimed = await store.claim_next("a", T0 + 1, hand_over=True, chosen_message_id="3EB0CHOSEN")
        assert claimed is not None and claimed.queue_id == item.queue_id
        await store.mark_sent(claimed, message_id="3EB0SENT", now=T0 + 2)  # handed over at the claim

        seen: list[str] = []
        handed: list[str] = []  # the SQL text as the store hands it to the driver, before values are bound

        def record(conn: object, cursor: object, statement: str, *args: object) -> None:
            handed.append(statement)

        async with store.engine.connect() as conn:
            aio = (await conn.get_raw_connection()).driver_connection
        await aio.set_trace_callback(seen.append)
        for engine in {store.engine, store.reader}:
            sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            assert (await store.get_item_by_message_id("a", "3EB0SENT")) is not None
            assert (await store.find_by_chosen_id("a", "3EB0CHOSEN")) is not None
            assert await store.latest_derived("a", "f" * 64) is None
            await store.advance_ack("a", "3EB0SENT", "device", lambda old, new: True, now=T0 + 3,
                                    event_for=lambda item: None)
        finally:
            await aio.set_trace_callback(None)
            for engine in {store.engine, store.reader}:
                sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    finally:
        await store.close()

    # The fingerprint lookup names 'derived' in its text: bound, SQLite would prepare it again at every
    # execution to use the partial index, and PostgreSQL's generic plan could not use it at all.
    derived = [sql for sql in handed if "fingerprint =" in sql]
    assert derived and all("key_source = 'derived'" in sql for sql in derived), derived

    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT") and " outbox" in s]
    wanted = {"message_id": "ix_outbox_message_id", "chosen_message_id": "ix_outbox_chosen_message_id",
              "fingerprint": "ix_outbox_fingerprint"}
    plans: dict[str, str] = {}
    db = sqlite3.connect(path)
    try:
        for sql in selects:
            plans[sql] = " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
    finally:
        db.close()
    assert len(plans) >= 4, selects  # the three lookups and the ack's read
    for sql, plan in plans.items():
        assert "SCAN outbox" not in plan, (sql, plan)
        column = next(c for c in ("chosen_message_id", "message_id", "fingerprint") if f"{c} =" in sql)
        assert wanted[column] in plan, (sql, plan)
