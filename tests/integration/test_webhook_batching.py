"""Delivery throughput on SQLite: lanes read their events in batches, marks of every lane share commits.

The dispatcher runs against a real SQLite store and a receiver stub that answers 200 at once (no
network), so what is counted is the database work per delivered event, at the driver.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

from tests.integration.store.conftest import draft
from tests.support.polling import until
from tests.support.sqltrace import trace, transactions
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
    written, read = await trace(store.engine), await trace(store.reader)  # at the driver: every statement
    try:
        await dispatcher.start()

        async def drained() -> bool:
            return sum([(await store.event_stats(iid))["delivered"] for iid in drafts]) == total
        await until(drained)
    finally:
        await dispatcher.close()
    for iid, mine in drafts.items():
        assert [eid for who, eid in stub.seen if who == iid] == [d.event_id for d in mine]  # once each, in order
    assert len(stub.seen) == total
    marking = [tx for tx in transactions(written) if any(s.startswith("UPDATE webhook_events") for s in tx)]
    reads = [s for s in read if s.startswith("SELECT") and "webhook_events" in s and "pending" in s]
    print(f"{total} events: {len(marking)} transactions of marks, {len(reads)} reads of pending events")
    assert len(marking) <= total / 5, len(marking)  # one commit per event before
    assert len(reads) <= total / 5, len(reads)  # one read per event before
    await store.close()


class HeldMarks(SqlStore):
    """A SQLite store whose delivered marks wait for ``release`` (and fail ``fail`` times first)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = asyncio.Event()
        self.fail = 0

    async def events_delivered(self, marks: Sequence[tuple[int, int, int]]) -> None:
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk I/O error")
        await super().events_delivered(marks)


async def seen_async(stub: Stub, event_id: str) -> bool:
    """Whether the stub received ``event_id``."""
    return event_id in [eid for _, eid in stub.seen]


async def delivered(store: SqlStore, instance_id: str, count: int) -> bool:
    """Whether ``count`` events of the instance are marked delivered in the store."""
    return bool((await store.event_stats(instance_id))["delivered"] == count)


def dispatcher_for(store: SqlStore, stub: Stub) -> Dispatcher:
    policy = DispatchPolicy(timeout_ms=1000, base_ms=100, max_ms=1000, max_attempts=3, max_in_flight_per_url=2,
                            auth_token=None)
    return Dispatcher(store, FakeClock(T0 + 1), policy, lambda iid: Target(f"http://127.0.0.1:9/{iid}", None),
                      rng=random.Random(1), client=stub)


async def test_events_stored_while_marks_wait_for_their_commit_are_each_delivered_once(tmp_path: Path) -> None:
    store = HeldMarks(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    await store.migrate()
    stub = Stub()
    dispatcher = dispatcher_for(store, stub)
    drafts = [draft("a", "message") for _ in range(30)]
    try:
        for d in drafts:  # one at a time, as inbound messages arrive; the lane reads the store after each
            await store.add_events([d], T0)
            dispatcher.notify("a")
            await until(lambda d=d: seen_async(stub, d.event_id))
        assert (await store.event_stats("a"))["delivered"] == 0  # no mark committed yet
        store.release.set()
        await until(lambda: delivered(store, "a", 30))
    finally:
        await dispatcher.close()
        await store.close()
    assert [eid for _, eid in stub.seen] == [d.event_id for d in drafts]


async def test_marks_that_fail_to_commit_leave_their_events_pending_and_they_go_out_again(tmp_path: Path) -> None:
    store = HeldMarks(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    await store.migrate()
    store.fail = 1
    store.release.set()
    stub = Stub()
    dispatcher = dispatcher_for(store, stub)
    drafts = [draft("a", "message") for _ in range(5)]
    await store.add_events(drafts, T0)
    try:
        dispatcher.notify("a")
        await until(lambda: delivered(store, "a", 5))
    finally:
        await dispatcher.close()
        await store.close()
    ids = [eid for _, eid in stub.seen]
    assert set(ids) == {d.event_id for d in drafts}
    assert len(ids) > 5  # the events of the failed batch went out again, with the same ids
