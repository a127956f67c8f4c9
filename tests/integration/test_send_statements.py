"""What one send costs the database: statements and commits on SQLite, counted at the driver.

The send path is the hub's throughput ceiling on SQLite (one connection serves every instance),
so it is held to two transactions per send: the claim with its hand-over (committed before the
engine call), and the outcome with its send-log stamp and webhook event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support.fakehub import build
from tests.support.polling import until
from wahub.domain.outbox import ItemKind
from wahub.store.sql import SqlStore

SENDS = 60


@contextmanager
def counted(store: SqlStore) -> Iterator[dict[str, list[str]]]:
    """Every statement and commit the store's engine runs inside the block."""
    seen: dict[str, list[str]] = {"statements": [], "commits": []}
    engine = store.engine.sync_engine

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        seen["statements"].append(" ".join(text.split()[:3]) + (" RETURNING" if "RETURNING" in text else ""))

    def commit(_conn: Any) -> None:
        seen["commits"].append("COMMIT")

    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine, "commit", commit)


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
        with counted(store) as seen:
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
        print(f"statements per send {per_send:.2f}, commits per send {commits:.2f}: {statements[:8]}")
        assert per_send <= 4, (per_send, statements[:20])
        assert commits < 2.1, commits  # the link's own commit or two are counted too
    finally:
        await fh.hub.stop()
        await store.close()
