"""One behavioural suite for every storage implementation: SQLite, PostgreSQL and the in-memory fake.

PostgreSQL runs when ``WAHUB_TEST_PG_URL`` names a server (``scripts/pg-start`` prints one);
each test gets a database of its own, created empty and dropped afterwards.
Times are plain epoch-ms integers: the store never reads a clock.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from wahub.domain.errors import Conflict, NotFound
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.runtime.compose import build_hub
from wahub.store.base import QueueFullSignal, Store
from wahub.store.memory import MemoryStore
from wahub.store.records import EventDraft, Transition
from wahub.store.sql import SqlStore

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
T0 = 1_700_000_000_000
ACKS = ("server", "delivered", "read", "played")
TABLES = {"instances", "outbox", "send_log", "webhook_events", "polls", "votes", "inbound_seen",
          "transitions", "restarts", "alembic_version"}

_: type[Store] = MemoryStore  # both implementations satisfy the protocol (checked by mypy)
__: type[Store] = SqlStore


def _asyncpg_url(url: str, database: str) -> str:
    base = url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


@pytest.fixture
async def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An implementation over an empty database (not migrated yet)."""
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
        return
    if kind == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'contract.sqlite3'}")
        try:
            yield store
        finally:
            await store.close()
        return
    if not PG_URL:
        if os.environ.get("CI"):  # .ci/run starts PostgreSQL: without it the suite must not pass quietly
            pytest.fail("CI without WAHUB_TEST_PG_URL", pytrace=False)
        pytest.skip("WAHUB_TEST_PG_URL is not set (start a server with scripts/pg-start and export its URL)")
    import asyncpg

    database = f"wahub_contract_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    store = SqlStore(_asyncpg_url(PG_URL, database))
    try:
        yield store
    finally:
        await store.close()
        admin = await asyncpg.connect(PG_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def store(fresh_store: Store) -> Store:
    """A migrated store with one instance ``a`` and one instance ``b``."""
    await fresh_store.migrate()
    await fresh_store.create_instance(id="a", name="A", webhook_url=None, webhook_events=[],
                                      webhook_secret=None, now=T0)
    await fresh_store.create_instance(id="b", name="B", webhook_url=None, webhook_events=[],
                                      webhook_secret=None, now=T0 + 1)
    return fresh_store


IMPLEMENTATIONS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("memory", id="memory"),
]
pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


async def enqueue(store: Store, key: str, *, instance: str = "a", now: int = T0, max_open: int = 100,
                  kind: str = "text", payload: dict[str, Any] | None = None) -> tuple[OutboxItem, bool, int]:
    """Insert an item under ``key`` with a fresh queue id."""
    payload = payload if payload is not None else {"message": f"body of {key}"}
    return await store.insert_item(queue_id="q_" + uuid.uuid4().hex, instance_id=instance,
                                   idempotency_key=key, key_source="header", kind=kind,
                                   chat_id="201000000001@c.us", payload=payload, fingerprint="f" * 64,
                                   now=now, max_open=max_open)


def draft(instance: str, event: str = "message_sent", body: str = "{}") -> EventDraft:
    """A webhook event with a unique id."""
    return EventDraft(event_id="evt_" + uuid.uuid4().hex, instance_id=instance, event=event, body=body)


async def send(store: Store, item: OutboxItem, message_id: str, now: int) -> None:
    """Hand the item over and record it sent."""
    await store.mark_handed_over(item, now)
    await store.mark_sent(item, message_id=message_id, now=now)


# -- schema ----------------------------------------------------------------------------------------------
async def test_migrate_brings_an_empty_database_to_the_newest_revision(fresh_store: Store) -> None:
    if isinstance(fresh_store, SqlStore):
        async with fresh_store.engine.connect() as conn:
            before = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert before == set()
    await fresh_store.migrate()
    await fresh_store.migrate()  # idempotent: a second start changes nothing
    assert await fresh_store.ping() is True
    if isinstance(fresh_store, SqlStore):
        async with fresh_store.engine.connect() as conn:
            after = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            revision = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert after == TABLES
        assert revision == "0002"
    assert await fresh_store.list_instances() == []


# -- instances -------------------------------------------------------------------------------------------
async def test_instance_create_read_update_delete(store: Store) -> None:
    rec = await store.create_instance(id="c", name="Shop C", webhook_url="http://127.0.0.1:9/hook",
                                      webhook_events=["message", "vote_update"], webhook_secret="s3",
                                      now=T0 + 5, state="stopped")
    assert (rec.id, rec.name, rec.webhook_url, rec.webhook_events, rec.webhook_secret) == (
        "c", "Shop C", "http://127.0.0.1:9/hook", ["message", "vote_update"], "s3")
    assert (rec.state, rec.state_since, rec.created_at) == ("stopped", T0 + 5, T0 + 5)
    assert (rec.state_reason, rec.restricted_until, rec.phone, rec.limit_per_minute, rec.last_error) == (
        None, None, None, None, None)
    assert await store.get_instance("c") == rec
    assert [r.id for r in await store.list_instances()] == ["a", "b", "c"]

    await store.update_instance("c", webhook_events=["message"], limit_per_minute=3, phone="201000000009")
    got = await store.get_instance("c")
    assert got is not None
    assert (got.webhook_events, got.limit_per_minute, got.phone, got.name) == (
        ["message"], 3, "201000000009", "Shop C")
    with pytest.raises(NotFound):
        await store.update_instance("nope", name="x")

    assert await store.delete_instance("c") is True
    assert await store.get_instance("c") is None
    assert await store.delete_instance("c") is False
    assert [r.id for r in await store.list_instances()] == ["a", "b"]


async def test_duplicate_instance_id_is_a_conflict(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.create_instance(id="a", name="again", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=T0 + 9)
    rec = await store.get_instance("a")
    assert rec is not None and rec.name == "A"


async def test_delete_instance_removes_everything_it_recorded(store: Store) -> None:
    for inst in ("a", "b"):
        item, _, _ = await enqueue(store, "k1", instance=inst)
        claimed = await store.claim_next(inst, T0)
        assert claimed is not None
        await send(store, claimed, f"m-{inst}", T0 + 1)
        await store.record_inbound(inst, "in-1", now=T0, event=draft(inst, "message"))
        await store.record_restart(inst, kind="soft", reason=None, now=T0)
        await store.record_transition(inst, from_state="initializing", to_state="connecting", reason=None,
                                      now=T0)
    assert await store.delete_instance("a") is True
    assert await store.find_item_by_key("a", "k1") is None
    assert await store.send_history("a", 0) == []
    assert await store.list_events("a", status=None, limit=10) == []
    assert await store.restarts_since("a", 0) == []
    assert await store.transitions("a") == []
    # a new instance under the same id starts clean: inbound ids were forgotten too
    await store.create_instance(id="a", name="A2", webhook_url=None, webhook_events=[], webhook_secret=None,
                                now=T0 + 2)
    assert await store.record_inbound("a", "in-1", now=T0 + 2, event=None) is True
    # the other instance is untouched
    assert (await store.find_item_by_key("b", "k1")) is not None
    assert await store.send_history("b", 0) == [T0 + 1]
    assert len(await store.list_events("b", status=None, limit=10)) == 1
    assert await store.record_inbound("b", "in-1", now=T0 + 2, event=None) is False


# -- outbox: enqueue -------------------------------------------------------------------------------------
async def test_insert_item_is_idempotent_per_instance_and_key(store: Store) -> None:
    first, created, depth = await enqueue(store, "order:1", payload={"message": "hello ✓"})
    assert created is True and depth == 1
    assert first.status == ItemStatus.QUEUED and first.attempts == 0
    assert (first.next_attempt_at, first.created_at, first.updated_at) == (T0, T0, T0)
    assert first.payload == {"message": "hello ✓"}

    again, created, depth = await enqueue(store, "order:1", now=T0 + 50, payload={"message": "other"})
    assert created is False and depth == 1
    assert again == first  # the stored item, untouched by the second payload

    other, created, _ = await enqueue(store, "order:1", instance="b")
    assert created is True and other.queue_id != first.queue_id  # keys are per instance
    assert await store.find_item_by_key("a", "order:1") == first
    assert await store.find_item_by_key("a", "order:2") is None
    assert await store.get_item(first.queue_id) == first
    items, total = await store.list_items("a", statuses=None, limit=10, offset=0)
    assert total == 1 and items == [first]


async def test_concurrent_identical_inserts_store_one_item(store: Store) -> None:
    results = await asyncio.gather(*(enqueue(store, "order:race") for _ in range(8)))
    assert sum(1 for _, created, _ in results if created) == 1
    assert len({item.queue_id for item, _, _ in results}) == 1
    _, total = await store.list_items("a", statuses=None, limit=100, offset=0)
    assert total == 1


async def test_queue_full_is_signalled_and_frees_up_when_items_finish(store: Store) -> None:
    await enqueue(store, "k1", max_open=2)
    await enqueue(store, "k2", max_open=2)
    with pytest.raises(QueueFullSignal) as full:
        await enqueue(store, "k3", max_open=2)
    assert full.value.open_count == 2
    assert await store.find_item_by_key("a", "k3") is None
    replay, created, depth = await enqueue(store, "k1", max_open=2)  # a replay is never refused
    assert created is False and depth == 2
    _, created, _ = await enqueue(store, "k3", instance="b", max_open=2)  # other instances unaffected
    assert created is True
    item = await store.claim_next("a", T0)
    assert item is not None and item.queue_id == replay.queue_id
    await send(store, item, "m1", T0 + 1)
    _, created, depth = await enqueue(store, "k3", max_open=2)
    assert created is True and depth == 2


# -- outbox: drain ---------------------------------------------------------------------------------------
async def test_claim_is_fifo_among_due_items(store: Store) -> None:
    a1, _, _ = await enqueue(store, "k1", now=T0)
    a2, _, _ = await enqueue(store, "k2", now=T0 + 1)
    a3, _, _ = await enqueue(store, "k3", now=T0 + 2)
    # the oldest is deferred: the next due one goes first, the deferred one when it is due
    first = await store.claim_next("a", T0 + 10)
    assert first is not None and first.queue_id == a1.queue_id
    assert first.status == ItemStatus.SENDING and first.updated_at == T0 + 10
    await store.release(first.seq, next_attempt_at=T0 + 1_000, now=T0 + 11)
    order = []
    for now in (T0 + 20, T0 + 30, T0 + 1_000):
        item = await store.claim_next("a", now)
        assert item is not None
        order.append(item.queue_id)
        await send(store, item, f"m-{item.queue_id}", now)
    assert order == [a2.queue_id, a3.queue_id, a1.queue_id]
    assert await store.claim_next("a", T0 + 5_000) is None


async def test_next_attempt_at_is_respected(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    assert await store.next_due_at("a") == T0
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    assert await store.next_due_at("a") is None  # nothing queued while it is sending
    await store.release(claimed.seq, next_attempt_at=T0 + 1_000, now=T0 + 1)
    assert await store.next_due_at("a") == T0 + 1_000
    assert await store.claim_next("a", T0 + 999) is None
    again = await store.claim_next("a", T0 + 1_000)
    assert again is not None and again.queue_id == item.queue_id
    assert await store.next_due_at("b") is None


async def test_only_one_item_per_instance_is_sending(store: Store) -> None:
    await enqueue(store, "k1")
    k2, _, _ = await enqueue(store, "k2")
    await enqueue(store, "k1", instance="b")
    first = await store.claim_next("a", T0)
    assert first is not None
    assert await store.claim_next("a", T0 + 1) is None  # k2 is due, but k1 holds the slot
    other = await store.claim_next("b", T0 + 1)  # instances are independent
    assert other is not None and other.instance_id == "b"
    await store.mark_failed(first, error="boom", reason="invalid_recipient", now=T0 + 2, count_attempt=True)
    second = await store.claim_next("a", T0 + 3)
    assert second is not None and second.queue_id == k2.queue_id


async def test_concurrent_claims_hand_out_exactly_one_item(store: Store) -> None:
    for i in range(5):
        await enqueue(store, f"a{i}")
        await enqueue(store, f"b{i}", instance="b")
    results = await asyncio.gather(*(store.claim_next(inst, T0) for inst in ("a", "b") * 6))
    claimed = [r for r in results if r is not None]
    assert sorted((r.instance_id, r.idempotency_key) for r in claimed) == [("a", "a0"), ("b", "b0")]
    for inst in ("a", "b"):
        stats = await store.queue_stats(inst)
        assert stats.by_status == {"queued": 4, "sending": 1}
        assert stats.depth == 5 and stats.oldest_queued_at == T0


async def test_release_mark_handed_over_sent_and_failed(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 1)
    got = await store.get_item(item.queue_id)
    assert got is not None and got.handed_over_at == T0 + 1 and got.status == ItemStatus.SENDING
    assert await store.send_history("a", 0) == [T0 + 1]

    # transient error: back to the queue with the error, one attempt counted, send log kept
    await store.release(claimed.seq, next_attempt_at=T0 + 500, now=T0 + 2, error="timeout", reason="timeout",
                        count_attempt=True)
    got = await store.get_item(item.queue_id)
    assert got is not None
    assert (got.status, got.attempts, got.next_attempt_at, got.handed_over_at, got.last_error,
            got.error_reason, got.updated_at) == (
        ItemStatus.QUEUED, 1, T0 + 500, None, "timeout", "timeout", T0 + 2)
    assert await store.send_history("a", 0) == [T0 + 1]

    # not connected: nothing went out, so the send log forgets it and no attempt is counted
    claimed = await store.claim_next("a", T0 + 500)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 501)
    await store.release(claimed.seq, next_attempt_at=T0 + 600, now=T0 + 502, unlog=True)
    got = await store.get_item(item.queue_id)
    assert got is not None and got.attempts == 1 and got.last_error == "timeout"
    assert await store.send_history("a", 0) == []

    # sent: message id, sent time, attempts, event stored with it
    claimed = await store.claim_next("a", T0 + 600)
    assert claimed is not None
    await store.mark_handed_over(claimed, T0 + 601)
    ev = draft("a")
    await store.mark_sent(claimed, message_id="wamid.1", now=T0 + 602, events=[ev])
    got = await store.get_item(item.queue_id)
    assert got is not None
    assert (got.status, got.message_id, got.sent_at, got.attempts, got.updated_at) == (
        ItemStatus.SENT, "wamid.1", T0 + 602, 2, T0 + 602)
    assert await store.get_item_by_message_id("a", "wamid.1") == got
    assert await store.get_item_by_message_id("b", "wamid.1") is None
    assert [e.event_id for e in await store.list_events("a", status=None, limit=10)] == [ev.event_id]
    assert await store.count_sent_since("a", T0) == 1

    # permanent failure: final at once, with reason, attempt counted, send log dropped on request
    bad, _, _ = await enqueue(store, "k2", now=T0 + 700)
    claimed = await store.claim_next("a", T0 + 700)
    assert claimed is not None and claimed.queue_id == bad.queue_id
    await store.mark_handed_over(claimed, T0 + 701)
    await store.mark_failed(claimed, error="not on WhatsApp", reason="not_on_whatsapp", now=T0 + 702,
                            count_attempt=True, events=[draft("a", "message_failed")], unlog=True)
    got = await store.get_item(bad.queue_id)
    assert got is not None
    assert (got.status, got.attempts, got.last_error, got.error_reason) == (
        ItemStatus.FAILED, 1, "not on WhatsApp", "not_on_whatsapp")
    assert await store.send_history("a", 0) == [T0 + 601]
    assert await store.count_failures_since("a", T0 + 701) == 1
    assert await store.count_failures_since("a", T0 + 702) == 0
    assert [e.event for e in await store.list_events("a", status=None, limit=10)] == [
        "message_failed", "message_sent"]


async def test_release_of_an_item_that_is_not_sending_changes_nothing(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "m1", T0 + 1)
    await store.release(claimed.seq, next_attempt_at=T0 + 9, now=T0 + 9, error="late", count_attempt=True)
    got = await store.get_item(item.queue_id)
    assert got is not None and (got.status, got.attempts, got.last_error) == (ItemStatus.SENT, 1, None)


async def test_poll_is_stored_when_sent(store: Store) -> None:
    payload = {"caption": "Confirm order #1?", "options": ["Yes", "No"], "multipleAnswers": False}
    await enqueue(store, "poll:1", kind="poll", payload=payload)
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "wamid.poll", T0 + 1)
    poll = await store.get_poll("a", "wamid.poll")
    assert poll is not None
    assert (poll.queue_id, poll.chat_id, poll.idempotency_key, poll.caption, poll.options, poll.multiple) == (
        claimed.queue_id, "201000000001@c.us", "poll:1", "Confirm order #1?", ["Yes", "No"], False)
    assert await store.get_poll("b", "wamid.poll") is None


async def test_recover_in_flight_requeues_or_marks_uncertain(store: Store) -> None:
    a_item, _, _ = await enqueue(store, "k1")
    b_item, _, _ = await enqueue(store, "k1", instance="b")
    waiting, _, _ = await enqueue(store, "k2")
    claimed_a = await store.claim_next("a", T0)
    claimed_b = await store.claim_next("b", T0)
    assert claimed_a is not None and claimed_b is not None
    await store.mark_handed_over(claimed_b, T0 + 1)  # b's item may have reached WhatsApp

    requeued, uncertain = await store.recover_in_flight(T0 + 100)
    assert requeued == 1
    assert [u.queue_id for u in uncertain] == [b_item.queue_id]
    assert uncertain[0].status == ItemStatus.UNCERTAIN  # reported as it is now stored
    assert uncertain[0].error_reason == "uncertain" and uncertain[0].last_error
    assert uncertain[0] == await store.get_item(b_item.queue_id)
    got_a = await store.get_item(a_item.queue_id)
    assert got_a is not None and got_a.status == ItemStatus.QUEUED and got_a.updated_at == T0 + 100
    got_w = await store.get_item(waiting.queue_id)
    assert got_w is not None and got_w.status == ItemStatus.QUEUED and got_w.updated_at == T0
    # an uncertain item is never claimed again by itself; FIFO resumes with the re-queued one
    assert await store.claim_next("b", T0 + 200) is None
    again = await store.claim_next("a", T0 + 200)
    assert again is not None and again.queue_id == a_item.queue_id
    assert await store.recover_in_flight(T0 + 300) == (1, [])


async def test_send_history_counts_handovers_in_window(store: Store) -> None:
    for i, at in enumerate((T0 + 10, T0 + 20, T0 + 30)):
        await enqueue(store, f"k{i}")
        claimed = await store.claim_next("a", at)
        assert claimed is not None
        await send(store, claimed, f"m{i}", at)
    assert await store.send_history("a", 0) == [T0 + 10, T0 + 20, T0 + 30]
    assert await store.send_history("a", T0 + 10) == [T0 + 20, T0 + 30]  # `since` is exclusive
    assert await store.count_sent_since("a", T0 + 10) == 2
    assert await store.send_history("b", 0) == []


async def test_operator_actions_and_queue_listing(store: Store) -> None:
    items = [(await enqueue(store, f"k{i}", now=T0 + i))[0] for i in range(5)]
    assert await store.set_item_status(items[0].queue_id, from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 10) is True
    assert await store.set_item_status(items[0].queue_id, from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 11) is False
    assert await store.set_item_status("missing", from_statuses=["queued"], to_status="canceled",
                                       now=T0 + 11) is False
    claimed = await store.claim_next("a", T0 + 20)
    assert claimed is not None and claimed.queue_id == items[1].queue_id
    await store.mark_failed(claimed, error="x", reason="too_long", now=T0 + 21, count_attempt=True)
    ev = draft("a", "retry")
    assert await store.set_item_status(items[1].queue_id, from_statuses=["failed"], to_status="queued",
                                       now=T0 + 30, reset_attempts=True, events=[ev]) is True
    retried = await store.get_item(items[1].queue_id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.next_attempt_at, retried.handed_over_at) == (
        ItemStatus.QUEUED, 0, T0 + 30, None)
    assert [e.event_id for e in await store.list_events("a", status=None, limit=5)] == [ev.event_id]

    page, total = await store.list_items("a", statuses=["queued"], limit=2, offset=1)
    assert total == 4 and [i.queue_id for i in page] == [items[2].queue_id, items[3].queue_id]
    assert await store.clear_queue("a", T0 + 40) == 4
    stats = await store.queue_stats("a")
    assert stats.by_status == {"canceled": 5} and stats.depth == 0 and stats.oldest_queued_at is None
    cleared = await store.get_item(items[4].queue_id)
    assert cleared is not None and (cleared.error_reason, cleared.updated_at) == ("canceled", T0 + 40)


# -- polls, votes, acks, inbound -------------------------------------------------------------------------
async def test_record_vote_drops_duplicates_and_stale_votes(store: Store) -> None:
    def vote(ts: int, selected: list[str], voter: str = "201000000002@c.us") -> Any:
        return store.record_vote("a", "wamid.poll", voter, timestamp=ts, selected=selected,
                                 voter_alt="123@lid", now=T0 + ts, event=draft("a", "vote_update"))

    assert await vote(100, ["Yes"]) is True
    assert await vote(100, ["Yes"]) is False  # duplicate
    assert await vote(50, ["No"]) is False  # stale: arrived late
    assert await vote(200, []) is True  # a newer vote (here: retracted) replaces it
    assert await vote(10, ["No"], voter="201000000003@c.us") is True
    votes = await store.latest_votes("a", "wamid.poll")
    assert [(v.voter, v.selected, v.timestamp, v.voter_alt) for v in votes] == [
        ("201000000002@c.us", [], 200, "123@lid"), ("201000000003@c.us", ["No"], 10, "123@lid")]
    assert len(await store.list_events("a", status="pending", limit=10)) == 3  # one per accepted vote
    assert await store.latest_votes("b", "wamid.poll") == []


async def test_concurrent_identical_votes_are_recorded_once(store: Store) -> None:
    results = await asyncio.gather(*(
        store.record_vote("a", "wamid.poll", "201000000002@c.us", timestamp=100, selected=["Yes"],
                          voter_alt=None, now=T0, event=draft("a", "vote_update")) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert len(await store.list_events("a", status=None, limit=10)) == 1


async def test_inbound_messages_are_deduplicated_with_their_event(store: Store) -> None:
    ev = draft("a", "message")
    assert await store.record_inbound("a", "in-1", now=T0, event=ev) is True
    assert await store.record_inbound("a", "in-1", now=T0 + 1, event=draft("a", "message")) is False
    assert await store.record_inbound("b", "in-1", now=T0 + 1, event=None) is True
    results = await asyncio.gather(*(
        store.record_inbound("a", "in-2", now=T0 + 2, event=draft("a", "message")) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    events = await store.list_events("a", status=None, limit=10)
    assert len(events) == 2 and events[-1].event_id == ev.event_id


async def test_ack_only_moves_forward(store: Store) -> None:
    item, _, _ = await enqueue(store, "k1")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "wamid.1", T0 + 1)
    built: list[str] = []

    def event_for(it: OutboxItem) -> EventDraft:
        built.append(it.queue_id)
        return draft("a", "message_ack")

    async def ack(value: str, message_id: str = "wamid.1") -> OutboxItem | None:
        return await store.advance_ack("a", message_id, value, ACKS, now=T0 + 2, event_for=event_for)

    assert await ack("server") is None  # already `server` when sent
    got = await ack("delivered")
    assert got is not None and got.queue_id == item.queue_id
    assert await ack("delivered") is None
    assert await ack("read") is not None
    assert await ack("delivered") is None  # a late receipt never moves it back
    assert await ack("played") is not None
    assert await ack("read", message_id="unknown") is None
    assert built == [item.queue_id] * 3
    assert len(await store.list_events("a", status=None, limit=10)) == 3


# -- webhook events --------------------------------------------------------------------------------------
async def test_event_lifecycle_add_head_delivered_failed_dead_replay(store: Store) -> None:
    e1, e2, e3 = draft("a", "ready"), draft("a", "message"), draft("a", "message_ack")
    await store.add_events([e1, e2], T0)
    await store.add_events([draft("b")], T0)
    await store.add_events([e3], T0 + 1)
    assert sorted(await store.instances_with_pending_events()) == ["a", "b"]

    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.event, head.body, head.status, head.attempts, head.next_attempt_at) == (
        e1.event_id, "ready", "{}", "pending", 0, T0)
    # a failed attempt with a retry keeps the event at the head: later events wait (order per instance)
    await store.event_failed(head.seq, now=T0 + 5, next_attempt_at=T0 + 1_005, error="HTTP 503",
                             status_code=503)
    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.attempts, head.next_attempt_at, head.last_error, head.last_status_code) == (
        e1.event_id, 1, T0 + 1_005, "HTTP 503", 503)
    await store.event_delivered(head.seq, now=T0 + 1_006, status_code=200)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e2.event_id
    # the last failed attempt makes a dead letter; the lane moves on
    await store.event_failed(head.seq, now=T0 + 1_007, next_attempt_at=None, error="HTTP 410",
                             status_code=410)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e3.event_id
    await store.event_delivered(head.seq, now=T0 + 1_008, status_code=204)
    assert await store.head_event("a") is None
    assert await store.instances_with_pending_events() == ["b"]

    listed = await store.list_events("a", status=None, limit=10)
    assert [e.event_id for e in listed] == [e3.event_id, e2.event_id, e1.event_id]  # newest first
    assert [e.event_id for e in await store.list_events("a", status=None, limit=1, offset=1)] == [e2.event_id]
    delivered = listed[2]
    assert (delivered.status, delivered.attempts, delivered.delivered_at, delivered.last_error,
            delivered.last_status_code) == ("delivered", 2, T0 + 1_006, None, 200)
    dead = await store.list_events("a", status="dead", limit=10)
    assert [(e.event_id, e.attempts, e.last_status_code) for e in dead] == [(e2.event_id, 1, 410)]
    assert await store.event_stats("a") == {"backlog": 0, "dead": 1, "delivered": 2,
                                            "lastSuccessAt": T0 + 1_008, "lastError": "HTTP 410"}

    assert await store.replay_events("a", event_id="evt_unknown", now=T0 + 2_000) == 0
    assert await store.replay_events("a", event_id=e2.event_id, now=T0 + 2_000) == 1
    head = await store.head_event("a")
    assert head is not None
    assert (head.event_id, head.status, head.attempts, head.next_attempt_at) == (
        e2.event_id, "pending", 0, T0 + 2_000)
    await store.event_failed(head.seq, now=T0 + 2_001, next_attempt_at=None, error="again", status_code=None)
    await store.event_failed((await store.head_event("b") or head).seq, now=T0 + 2_001, next_attempt_at=None,
                             error="b down", status_code=None)
    assert await store.replay_events("a", event_id=None, now=T0 + 3_000) == 1  # only this instance's
    assert (await store.event_stats("b"))["dead"] == 1


async def test_events_keep_their_order_per_instance(store: Store) -> None:
    drafts = [draft("a", f"e{i}") for i in range(6)]
    for i, d in enumerate(drafts):
        await store.add_events([d, draft("b", f"b{i}")], T0 + i)
    seen = []
    while (head := await store.head_event("a")) is not None:
        seen.append(head.event_id)
        await store.event_delivered(head.seq, now=T0 + 100, status_code=200)
    assert seen == [d.event_id for d in drafts]
    assert (await store.event_stats("b"))["backlog"] == 6


# -- lifecycle records -----------------------------------------------------------------------------------
async def test_transitions_update_the_instance_and_store_events(store: Store) -> None:
    ev = draft("a", "change_state")
    await store.record_transition("a", from_state="initializing", to_state="connecting", reason="boot",
                                  now=T0 + 10, events=[ev])
    await store.record_transition("a", from_state="connecting", to_state="disconnected", reason="network",
                                  now=T0 + 20, last_error="socket closed")
    await store.record_transition("a", from_state="disconnected", to_state="restricted", reason="ban",
                                  now=T0 + 30, restricted_until=T0 + 90_000)
    rec = await store.get_instance("a")
    assert rec is not None
    assert (rec.state, rec.state_since, rec.state_reason, rec.last_error, rec.restricted_until) == (
        "restricted", T0 + 30, "ban", "socket closed", T0 + 90_000)
    assert await store.transitions("a", limit=2) == [
        Transition(T0 + 30, "disconnected", "restricted", "ban"),
        Transition(T0 + 20, "connecting", "disconnected", "network")]
    assert len(await store.transitions("a")) == 3
    assert await store.transitions("b") == []
    assert await store.count_transitions_to("a", "disconnected", T0) == 1
    assert await store.count_transitions_to("a", "disconnected", T0 + 20) == 0  # `since` is exclusive
    assert [e.event_id for e in await store.list_events("a", status=None, limit=5)] == [ev.event_id]


async def test_restarts_since_counts_the_budget_window(store: Store) -> None:
    for at in (T0 + 300, T0 + 100, T0 + 200):
        await store.record_restart("a", kind="soft", reason="disconnected", now=at)
    await store.record_restart("b", kind="hard", reason=None, now=T0 + 150)
    assert await store.restarts_since("a", T0) == [T0 + 100, T0 + 200, T0 + 300]
    assert await store.restarts_since("a", T0 + 100) == [T0 + 200, T0 + 300]
    assert await store.restarts_since("b", T0) == [T0 + 150]


async def test_purge_deletes_old_final_records_only(store: Store) -> None:
    old = T0
    new = T0 + 10_000
    sent, _, _ = await enqueue(store, "sent", now=old)
    claimed = await store.claim_next("a", old)
    assert claimed is not None
    await send(store, claimed, "m1", old)
    uncertain, _, _ = await enqueue(store, "uncertain", now=old)
    claimed = await store.claim_next("a", old)
    assert claimed is not None
    await store.mark_handed_over(claimed, old)
    await store.recover_in_flight(old)
    queued, _, _ = await enqueue(store, "queued", now=old)
    fresh_sent, _, _ = await enqueue(store, "fresh", now=new)
    e_old, e_pending, e_new = draft("a"), draft("a"), draft("a")
    await store.add_events([e_old, e_pending], old)
    await store.add_events([e_new], new)
    head = await store.head_event("a")
    assert head is not None and head.event_id == e_old.event_id
    await store.event_delivered(head.seq, now=old, status_code=200)
    await store.record_inbound("a", "in-old", now=old, event=None)
    await store.record_inbound("a", "in-new", now=new, event=None)
    await store.record_restart("a", kind="soft", reason=None, now=old)
    await store.record_transition("a", from_state="initializing", to_state="connecting", reason=None, now=old)

    removed = await store.purge(old + 1)
    assert removed == {"outbox": 1, "send_log": 2, "events": 1, "inbound_seen": 1, "transitions": 1,
                       "restarts": 1}
    assert await store.get_item(sent.queue_id) is None
    assert await store.find_item_by_key("a", "sent") is None  # the key may be used again
    for kept in (uncertain, queued, fresh_sent):
        assert await store.get_item(kept.queue_id) is not None
    assert [e.event_id for e in await store.list_events("a", status=None, limit=10)] == [
        e_new.event_id, e_pending.event_id]
    assert await store.record_inbound("a", "in-old", now=new, event=None) is True
    assert await store.record_inbound("a", "in-new", now=new, event=None) is False
    assert await store.restarts_since("a", 0) == [] and await store.transitions("a") == []
    assert await store.purge(old + 1) == dict.fromkeys(removed, 0)


# -- composition -----------------------------------------------------------------------------------------
async def test_a_hub_runs_on_the_store_it_is_given(fresh_store: Store, tmp_path: Path) -> None:
    hub = build_hub(make_settings(tmp_path), store=fresh_store, rng=random.Random(7))
    assert hub.store is fresh_store
    await hub.start(restore=False)
    try:
        rt = await hub.create_instance("WASP-shop.myshopify.com", None, None)
        body = {"chatId": "+20 100 000 0001", "message": "order #1 confirmed"}
        first = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, body, header_key="order:1")
        again = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, body, header_key="order:1")
        assert (first.replay, again.replay) == (False, True)
        assert again.item.queue_id == first.item.queue_id
        stored = await fresh_store.find_item_by_key(rt.id, "order:1")
        assert stored is not None and stored.queue_id == first.item.queue_id
        assert [r.id for r in await fresh_store.list_instances()] == ["WASP-shop_myshopify_com"]
    finally:
        await hub.stop()
