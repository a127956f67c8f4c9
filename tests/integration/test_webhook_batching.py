"""Delivery throughput on SQLite: lanes read their events in batches, marks of every lane share commits.

The dispatcher runs against a real SQLite store and a receiver stub that answers 200 at once (no
network), so what is counted is the database work per delivered event, at the driver.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.integration.store.conftest import draft
from tests.integration.test_send_statements import counted
from tests.support.polling import until
from wahub.runtime.clock import FakeClock
from wahub.runtime.hookclient import Answer
from wahub.runtime.webhooks import BATCH, Dispatcher, DispatchPolicy, Target
from wahub.store.sql import SqlStore

T0 = 1_767_225_600_000
INSTANCES = 5
PER_INSTANCE = 2 * BATCH + 22  # more than one batch: the lane reads the store again midway


class Stub:
    """A receiver that answers 200 at once and notes (instance, event id) per request, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
        await asyncio.sleep(0)  # let other lanes run between requests, as a real request would
        self.seen.append((url.rsplit("/", 1)[1], headers["webhook-id"]))
        return Answer(200, None)

    async def aclose(self) -> None:
        pass


async def test_events_of_five_lanes_are_each_delivered_once_in_order_with_shared_commits(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    await store.migrate()
    drafts = {f"i{n}": [draft(f"i{n}", "message") for _ in range(PER_INSTANCE)] for n in range(INSTANCES)}
    for k in range(PER_INSTANCE):  # interleaved, as events of several instances arrive
        await store.add_events([drafts[iid][k] for iid in drafts], T0)
    stub = Stub()
    policy = DispatchPolicy(timeout_ms=1000, base_ms=100, max_ms=1000, max_attempts=3, max_in_flight_per_url=2,
                            auth_token=None)
    dispatcher = Dispatcher(store, FakeClock(T0 + 1), policy, lambda iid: Target(f"http://127.0.0.1:9/{iid}", "s"),
                            rng=random.Random(1), client=stub)
    total = INSTANCES * PER_INSTANCE
    try:
        with counted(store) as seen:
            await dispatcher.start()

            async def drained() -> bool:
                return sum([(await store.event_stats(iid))["delivered"] for iid in drafts]) == total
            await until(drained)
    finally:
        await dispatcher.close()
    for iid, mine in drafts.items():
        assert [eid for who, eid in stub.seen if who == iid] == [d.event_id for d in mine]  # once each, in order
    assert len(stub.seen) == total
    marks = [s for s in seen["statements"] if s.startswith("UPDATE webhook_events")]
    commits = len(seen["commits"])
    print(f"{total} events: {len(seen['statements'])} statements, {commits} commits, {len(marks)} mark executions")
    assert commits <= total / 5, commits  # one commit per event before
    assert len(seen["statements"]) <= total / 2, seen["statements"][:20]
    await store.close()
