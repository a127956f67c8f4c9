"""What one send costs the database: statements and commits on SQLite, counted at the driver.

The send path is the hub's throughput ceiling on SQLite (one connection serves every instance),
so it is held to two transactions per send: the claim with its hand-over (committed before the
engine call), and the outcome with its send-log stamp and webhook event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support.fakehub import build
from tests.support.polling import until
from wahub.domain.outbox import ItemKind
from wahub.store.sql import SqlStore

SENDS = 60


CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@asynccontextmanager
async def traced(store: SqlStore) -> AsyncIterator[dict[str, list[str]]]:
    """Every statement and commit SQLite runs on the store's writer connection inside the block,
    counted by the driver itself (``sqlite3`` trace callback), whichever layer issued them; and the
    calls made into the database thread."""
    seen: dict[str, list[str]] = {"statements": [], "commits": [], "control": [], "thread_calls": []}

    def trace(text: str) -> None:
        words = text.split()
        head = words[0].upper() if words else ""
        if head == "COMMIT":
            seen["commits"].append(head)
        elif head in CONTROL:
            seen["control"].append(head)
        else:
            seen["statements"].append(" ".join(words[:3]) + (" RETURNING" if "RETURNING" in text else ""))

    async with store.engine.begin() as conn:
        # SQLite traces a trigger's program (outbox_open's, migration 0010) with the text of the statement
        # that fired it: indistinguishable from that statement run twice. The send path's own statements
        # are what is counted here, so this database has no triggers (their cost: docs/PERFORMANCE.md).
        for (name,) in (await conn.execute(sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'outbox'"))).all():
            await conn.execute(sa.text(f"DROP TRIGGER {name}"))
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        aio = raw.driver_connection
    await aio.set_trace_callback(trace)
    original = aio._execute

    async def execute(fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen["thread_calls"].append(getattr(fn, "__name__", "call"))
        return await original(fn, *args, **kwargs)

    aio._execute = execute
    try:
        yield seen
    finally:
        await aio.set_trace_callback(None)
        del aio._execute  # the class's own again


async def test_a_send_costs_two_transactions_and_four_statements(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    fh = build(tmp_path, store=store, max_sends_per_minute=1000, max_sends_per_hour=10000, send_interval_ms=0,
               max_queue_size=1000)
    try:
        await fh.hub.start(restore=False)
        rt = await fh.hub.create_instance("shop", None, [])
        # Steady state: WhatsApp was already asked who the number is (the first send to a new number
        # costs that question and a claim without hand-over; see tests/unit/test_resolve.py).
        fh.hub.resolver._keep(rt.id, "201000000001@c.us", "201000000001@c.us", fh.clock.now_ms())
        for i in range(SENDS):  # queued before the link: the sends all run inside the counted block
            await fh.hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": "201000000001", "message": f"m{i}"},
                                        header_key=f"k{i}")
        async with traced(store) as seen:
            await fh.link(rt.id)

            async def all_sent() -> bool:  # read from the hub's counters: the test itself runs no query
                await fh.advance(10)
                sent = fh.hub.metrics.registry.get_sample_value(
                    "wahub_sends_total", {"instance": rt.id, "outcome": "sent"})
                return sent == SENDS
            await until(all_sent)
        # From the first claim to the last outcome: what ran before finished the link, what runs after
        # is the loop finding the queue empty.
        texts = seen["statements"]
        first = next(i for i, text in enumerate(texts) if text.endswith("RETURNING"))
        last = max(i for i, text in enumerate(texts) if text == "UPDATE outbox SET")
        statements = texts[first:last + 1]
        claims = sum(1 for text in statements if text.endswith("RETURNING"))
        assert claims == SENDS, "\n".join(statements)
        per_send = len(statements) / SENDS
        commits = len(seen["commits"]) / SENDS
        print(f"statements per send {per_send:.2f}, commits per send {commits:.2f}, database thread calls per "
              f"send {len(seen['thread_calls']) / SENDS:.2f}: {statements[:8]}")
        assert per_send <= 4, (per_send, statements[:20])
        assert commits < 2.1, commits  # the link's own commit or two are counted too
    finally:
        await fh.hub.stop()
        await store.close()


async def test_sends_of_many_instances_share_transactions_and_database_thread_calls(tmp_path: Path) -> None:
    """The fault: every instance's send paid its own commits and its own round trips into the database
    thread (about 17 per send), which capped a hub at ~100 sends per second whatever the number of
    instances. Sends of instances that are due together are written in shared batches."""
    instances, per_instance = 40, 20
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    fh = build(tmp_path, store=store, max_sends_per_minute=1000, max_sends_per_hour=10000, send_interval_ms=0,
               max_queue_size=1000)
    try:
        await fh.hub.start(restore=False)
        ids = []
        for n in range(instances):
            rt = await fh.hub.create_instance(f"shop{n}", None, [])
            ids.append(rt.id)
            fh.hub.resolver._keep(rt.id, "201000000001@c.us", "201000000001@c.us", fh.clock.now_ms())
            for i in range(per_instance):
                await fh.hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": "201000000001", "message": f"m{i}"},
                                            header_key=f"k{i}")
        total = instances * per_instance
        async with traced(store) as seen:
            await fh.advance(10)
            for iid in ids:
                await fh.world.scan(iid)
            await fh.advance(10)

            async def all_sent() -> bool:
                await fh.advance(10)
                return sum(fh.hub.metrics.registry.get_sample_value(
                    "wahub_sends_total", {"instance": iid, "outcome": "sent"}) or 0 for iid in ids) == total
            await until(all_sent)
        claims = sum(1 for text in seen["statements"] if text.endswith("RETURNING"))
        commits, calls = len(seen["commits"]) / total, len(seen["thread_calls"]) / total
        print(f"{total} sends: {claims} claims, commits per send {commits:.2f}, database thread calls per send "
              f"{calls:.2f}")
        assert claims >= total
        for iid in ids:  # every instance's sends reached the engine, in its own FIFO order
            assert [d.text for d in fh.world.phones[iid].deliveries] == [f"m{i}" for i in range(per_instance)]
        assert commits < 1.0, commits  # one send on its own costs two
        # One send on its own costs four; through SQLAlchemy each cost ~17. Counted here besides the
        # batches: each instance's link (its state change and its send-log read), ~12 calls each.
        assert calls < 1.5, calls
    finally:
        await fh.hub.stop()
        await store.close()
