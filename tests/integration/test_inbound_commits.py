"""Inbound messages on SQLite: messages arriving together share one transaction, each still stored once;
the webhook lanes read their pending events without a hand-off to the driver's thread.

SQLite serves every write of the hub on one connection, and on a loaded machine each transaction's
hand-offs to the driver's thread take milliseconds; with one transaction per inbound message, a
burst queued behind itself and the webhook of the last message waited for all the others'
(docs/PERFORMANCE.md, "Inbound latency under load"). Counted at the driver, looked at where the
app looks: the webhooks the hub delivers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.store.conftest import draft
from tests.integration.test_state_truth import advance_until, ready_instance, sqlite_store
from tests.support.fakehub import build
from tests.support.sqltrace import trace, transactions
from wahub.store.sql import direct

pytestmark = pytest.mark.timeout(60)

SENDER = "201000000001@c.us"


async def test_messages_arriving_together_share_one_commit_and_each_goes_out_once_in_order(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    fh = build(tmp_path, store=store)
    iid = await ready_instance(fh)
    await fh.world.inject_message(iid, SENDER, "first", message_id="3EB0FIRST")  # the sender's ids are now known
    await advance_until(fh, lambda: len(fh.hooks.of("message")) == 1)
    statements = await trace(store.engine)
    ids = [f"3EB0IN{n:04d}" for n in range(40)]
    arriving = ids + ids[:5]  # the engine hands five of them over twice (as after a reconnect)
    await asyncio.gather(*(fh.world.inject_message(iid, SENDER, f"text {n}", message_id=mid)
                           for n, mid in enumerate(arriving)))
    inbound_tx = [tx for tx in transactions(statements) if any("inbound_seen" in s for s in tx)]
    assert len(inbound_tx) == 1, [tx[:2] for tx in inbound_tx]  # one per message before
    assert inbound_tx[0][-1] == "COMMIT"
    await advance_until(fh, lambda: len(fh.hooks.of("message")) >= 1 + len(ids))
    await fh.advance(5_000)  # a duplicate would go out by now
    delivered = [b["data"]["message"]["id"] for b in fh.hooks.of("message")]
    assert delivered == ["3EB0FIRST", *ids]
    await fh.hub.stop()


async def test_a_message_already_seen_before_its_batch_stores_no_second_event(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    fh = build(tmp_path, store=store)
    iid = await ready_instance(fh)
    await fh.world.inject_message(iid, SENDER, "once", message_id="3EB0ONCE")
    await asyncio.gather(*(fh.world.inject_message(iid, SENDER, f"text {n}", message_id=mid)
                           for n, mid in enumerate(["3EB0ONCE", "3EB0NEW1", "3EB0ONCE", "3EB0NEW2"])))
    await advance_until(fh, lambda: len(fh.hooks.of("message")) >= 3)
    await fh.advance(5_000)
    assert [b["data"]["message"]["id"] for b in fh.hooks.of("message")] == ["3EB0ONCE", "3EB0NEW1", "3EB0NEW2"]
    events = await fh.hub.list_events(iid, limit=50)
    assert sorted(e.event for e in events if e.event == "message") == ["message"] * 3
    await fh.hub.stop()


async def test_lanes_read_pending_events_on_the_loop_thread_and_fall_back_to_the_driver(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    await store.migrate()
    drafts = [draft("a", "message") for _ in range(3)]
    await store.add_events(drafts, 1_000)
    read = await trace(store.reader)
    assert [e.event_id for e in await store.pending_events("a", 10)] == [d.event_id for d in drafts]
    assert not [s for s in read if s.startswith("SELECT")]  # not through aiosqlite's thread
    assert store._loop_reader is not None
    store._loop_reader.close()  # given up (as after an error): the driver's thread answers the same
    assert [e.event_id for e in await store.pending_events("a", 2)] == [d.event_id for d in drafts[:2]]
    assert [s for s in read if s.startswith("SELECT")]
    await store.close()


def test_the_loop_reader_reads_only_a_database_file(tmp_path: Path) -> None:
    assert direct.LoopReader(":memory:").fetch_all("SELECT 1", ()) is None
    assert direct.LoopReader(None).fetch_all("SELECT 1", ()) is None
    reader = direct.LoopReader(str(tmp_path / "x.sqlite3"))
    assert reader.fetch_all("SELECT 1", ()) == [(1,)]
    assert reader.fetch_all("SELECT * FROM missing", ()) is None  # an error: given up for good
    assert reader.fetch_all("SELECT 1", ()) is None
