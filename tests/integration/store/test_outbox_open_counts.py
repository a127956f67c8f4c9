"""The kept open counts equal the open items they stand for after every kind of write: SQLite's
``outbox_open`` (migration 0010), PostgreSQL's sums of ``outbox_open_delta`` (0012, folded as they grow).

The enqueue batch answers queue depths (``queueDepth``) and refuses full queues (``MAX_QUEUE_SIZE``)
from these, so a write the triggers miss would be a wrong ``queueDepth`` or a queue refused while
it has room (or accepted beyond its size).
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog

import wahub.store
from tests.conftest import API_KEY, make_settings
from tests.integration.store.conftest import T0, enqueue, send
from wahub.runtime.compose import build_hub
from wahub.store import migrate
from wahub.store.base import QueueFullSignal, Store
from wahub.store.sql import SqlStore
from wahub.store.sql import enqueue as enqueue_sql
from wahub.web.app import create_app


def _migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(  # the file's name is not a module name
        name.split("_")[0], Path(wahub.store.__file__).parent / "migrations" / "versions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


m0010, m0012 = _migration("0010_outbox_open_counts"), _migration("0012_outbox_open_deltas")
_PG = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)
both = pytest.mark.parametrize("fresh_store", [pytest.param("sqlite", id="sqlite"), _PG], indirect=True)
postgresql = pytest.mark.parametrize("fresh_store", [_PG], indirect=True)  # 0012's own mechanics
pytestmark = pytest.mark.timeout(60)


async def _counts(store: SqlStore) -> tuple[dict[str, int], dict[str, int]]:
    kept_sql = ("SELECT instance_id, open_count FROM outbox_open WHERE open_count != 0" if store.is_sqlite else
                "SELECT instance_id, sum(delta) FROM outbox_open_delta GROUP BY instance_id HAVING sum(delta) <> 0")
    async with store.engine.connect() as conn:
        kept = {r[0]: int(r[1]) for r in (await conn.execute(sa.text(kept_sql))).all()}
        counted = {r[0]: r[1] for r in (await conn.execute(sa.text(
            "SELECT instance_id, count(*) FROM outbox WHERE status IN ('queued', 'sending') "
            "GROUP BY instance_id"))).all()}
    return kept, counted


async def _wait_in_flight(*stores: SqlStore) -> None:
    """Wait for the stores' calls and folds in flight (a fold runs in a task after its batch answered)."""
    for store in stores:
        while store._inflight:
            await asyncio.gather(*store._inflight)


async def _store(fresh_store: Store, *names: str) -> SqlStore:
    assert isinstance(fresh_store, SqlStore)
    await fresh_store.migrate()
    for name in names:
        await fresh_store.create_instance(id=name, name=name, webhook_url=None, webhook_events=[],
                                          webhook_secret=None, now=T0)
    return fresh_store


@both
async def test_the_newest_schema_has_every_trigger_that_keeps_the_counts(fresh_store: Store) -> None:
    # a later migration that rebuilds `outbox` (batch_alter_table) drops its triggers on SQLite
    store = await _store(fresh_store)
    sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'outbox'" if store.is_sqlite else
           "SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox'::regclass AND NOT tgisinternal")
    async with store.engine.connect() as conn:
        names = {r[0] for r in (await conn.execute(sa.text(sql))).all()}
    assert names >= set((m0010 if store.is_sqlite else m0012).TRIGGERS)


@both
async def test_the_kept_open_counts_follow_every_write(fresh_store: Store) -> None:
    store = await _store(fresh_store, "a", "b")
    steps = []
    items = [(await enqueue(store, f"k{i}", now=T0 + i))[0] for i in range(6)]
    await enqueue(store, "k0")  # a replay changes nothing
    await enqueue(store, "k0", instance="b")
    steps.append(await _counts(store))
    claimed = await store.claim_next("a", T0 + 10)  # queued -> sending: still open
    assert claimed is not None
    steps.append(await _counts(store))
    await send(store, claimed, "m1", T0 + 11)  # sending -> sent
    steps.append(await _counts(store))
    await store.set_item_status(items[1].queue_id, from_statuses=["queued"], to_status="canceled", now=T0 + 12)
    steps.append(await _counts(store))
    await store.set_item_status(items[1].queue_id, from_statuses=["canceled"], to_status="queued", now=T0 + 13,
                                reset_attempts=True)  # back into the queue
    steps.append(await _counts(store))
    claimed = await store.claim_next("a", T0 + 20, hand_over=True)
    assert claimed is not None
    await store.release(claimed.seq, next_attempt_at=T0 + 30, now=T0 + 21, error="timeout", reason="timeout",
                        count_attempt=True, unlog=True)  # sending -> queued
    steps.append(await _counts(store))
    claimed = await store.claim_next("a", T0 + 30)
    assert claimed is not None
    await store.mark_failed(claimed, error="x", reason="too_long", now=T0 + 31, count_attempt=True)
    steps.append(await _counts(store))
    claimed = await store.claim_next("a", T0 + 32, hand_over=True)
    assert claimed is not None
    await store.recover_in_flight(T0 + 33)  # sending, handed over -> uncertain (a restart)
    steps.append(await _counts(store))
    assert await store.clear_queue("a", T0 + 40) > 0
    steps.append(await _counts(store))
    await enqueue(store, "k9", now=T0 + 50)
    await store.delete_instance("b")
    steps.append(await _counts(store))
    for kept, counted in steps:
        assert kept == counted
    assert steps[0][1] == {"a": 6, "b": 1}
    assert steps[-1][1] == {"a": 1}


@both
async def test_random_writes_never_let_the_kept_counts_drift_and_refusals_follow_them(
        fresh_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 writes of every kind in a seeded random order; after each, kept == counted, and an enqueue is
    refused exactly when the counted open items reach ``max_open``. (PostgreSQL: folded every few changes.)"""
    monkeypatch.setattr(enqueue_sql, "COMPACT_AT", 3)
    rng = random.Random(18)
    store = await _store(fresh_store, "a", "b", "c")
    max_open = 7
    now, n = T0, 0
    for _ in range(300):
        now += 10
        instance = rng.choice("abc")
        op = rng.randrange(8)
        if op <= 2:  # enqueue (a new key or a replay)
            key = f"k{rng.randrange(n + 1)}"
            n += 1
            _, counted = await _counts(store)
            try:
                _, created, depth = await enqueue(store, key, instance=instance, now=now, max_open=max_open)
            except QueueFullSignal as full:
                assert counted.get(instance, 0) >= max_open and full.open_count == counted.get(instance, 0)
            else:
                assert depth == counted.get(instance, 0) + (1 if created else 0)
        elif op == 3:  # claim, then sent, failed, released or left in flight
            item = await store.claim_next(instance, now, hand_over=rng.random() < 0.5)
            if item is not None:
                fate = rng.randrange(4)
                if fate == 0:
                    await send(store, item, f"m{now}", now)
                elif fate == 1:
                    await store.mark_failed(item, error="x", reason="rejected", now=now, count_attempt=True)
                elif fate == 2:
                    await store.release(item.seq, next_attempt_at=now, now=now, count_attempt=True)
        elif op == 4:  # cancel or requeue one item
            async with store.engine.connect() as conn:
                row = (await conn.execute(sa.text(
                    "SELECT queue_id, status FROM outbox WHERE instance_id = :i ORDER BY random() LIMIT 1"),
                    {"i": instance})).first()
            if row is not None:
                to = "canceled" if row[1] == "queued" else "queued"
                await store.set_item_status(row[0], from_statuses=[row[1]], to_status=to, now=now)
        elif op == 5:
            await store.clear_queue(instance, now)
        elif op == 6:
            await store.recover_in_flight(now)
        else:  # delete and re-create the instance
            await store.delete_instance(instance)
            await store.create_instance(id=instance, name=instance, webhook_url=None, webhook_events=[],
                                        webhook_secret=None, now=now)
        kept, counted = await _counts(store)
        assert kept == counted, f"after op {op} on {instance}"
    if not store.is_sqlite:  # the batches folded the changes as they went (~100 per instance without)
        await _wait_in_flight(store)
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT count(*) FROM outbox_open_delta GROUP BY instance_id ORDER BY 1 DESC LIMIT 1"))).scalar()
        assert rows is not None and rows < 20


@both
async def test_an_existing_database_upgraded_starts_with_its_queues_counted(fresh_store: Store) -> None:
    """A hub upgraded with items already queued, in flight and finished: migration 0010 (SQLite) or 0012
    (PostgreSQL) counts them and 0011's partial indexes still find the sent items by message id; enqueues
    then refuse at the size."""
    assert isinstance(fresh_store, SqlStore)
    store = fresh_store
    async with store.engine.begin() as conn:  # the schema before 0010, with a backlog in it
        await conn.run_sync(migrate.upgrade_connection, None, "0008")
        await conn.execute(sa.text(
            "INSERT INTO instances (id, name, webhook_events, state, state_since, created_at, engine) "
            "VALUES ('a', 'A', '[]', 'ready', 1, 1, 'sandbox'), ('b', 'B', '[]', 'ready', 1, 1, 'sandbox')"))
        statuses = ["queued"] * 4 + ["sending"] + ["sent"] * 3 + ["failed", "canceled", "uncertain"]
        for i, status in enumerate(statuses):
            for instance in ("a", "b")[: 1 if i % 2 else 2]:
                await conn.execute(sa.text(
                    "INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
                    "fingerprint, status, attempts, next_attempt_at, created_at, updated_at, message_id) VALUES "
                    "(:q, :i, :k, 'header', 'text', '201000000001@c.us', '{}', :f, :s, 0, 1, 1, 1, :m)"),
                    {"q": f"q{i}{instance}", "i": instance, "k": f"k{i}", "f": "f" * 64, "s": status,
                     "m": f"3EB0{i}" if status == "sent" else None})
    await store.migrate()
    kept, counted = await _counts(store)
    assert kept == counted == {"a": 5, "b": 3}
    assert (await store.get_item_by_message_id("a", "3EB05")) is not None
    with pytest.raises(QueueFullSignal) as full:
        await enqueue(store, "new", instance="a", max_open=5)
    assert full.value.open_count == 5
    _, created, depth = await enqueue(store, "new", instance="b", max_open=5)
    assert created and depth == 4


@postgresql
async def test_two_nodes_writing_and_folding_at_once_keep_the_counts_exact(
        fresh_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stores on one PostgreSQL database (two nodes) enqueue, send, cancel and fold the change rows
    all at once (folds after every 2 changes, and by hand). Nothing waits on a counter row, so nothing
    deadlocks or fails; at the end the sums equal the open items, every answered depth was possible,
    and the folds left about one row per instance."""
    store = await _store(fresh_store, "a", "b", "c", "d")
    monkeypatch.setattr(enqueue_sql, "COMPACT_AT", 2)
    other = SqlStore(store.engine.url.render_as_string(hide_password=False))
    rng = random.Random(12)
    depths: list[tuple[str, int]] = []

    async def enqueues(s: SqlStore, node: str) -> None:
        for i in range(60):
            instance = "abcd"[i % 4]
            _, created, depth = await enqueue(s, f"{node}{i}", instance=instance, now=T0 + i, max_open=10_000)
            assert created
            depths.append((instance, depth))

    async def sends(s: SqlStore) -> None:
        for i in range(60):
            item = await s.claim_next("abcd"[rng.randrange(4)], T0 + 1_000 + i)
            if item is not None:
                await send(s, item, f"m{item.seq}", T0 + 1_000 + i)

    async def folds() -> None:
        async with other.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            for _ in range(30):
                await enqueue_sql.pg_compact(raw, ["a", "b", "c", "d"])
                await asyncio.sleep(0)

    try:
        await other.migrate()
        await asyncio.gather(enqueues(store, "x"), enqueues(other, "y"), enqueues(store, "z"), sends(store),
                             sends(other), folds())
        assert await store.clear_queue("d", T0 + 5_000) > 0
        kept, counted = await _counts(store)
        assert kept == counted and "d" not in counted and sum(counted.values()) > 0
        assert len(depths) == 180 and all(1 <= depth <= 180 for _, depth in depths)
        await _wait_in_flight(store, other)  # a background fold holding an instance's lock would skip it below
        async with other.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await enqueue_sql.pg_compact(raw, ["a", "b", "c", "d"])
            rows = {r[0]: r[1] for r in await raw.fetch(
                "SELECT instance_id, count(*) FROM outbox_open_delta GROUP BY instance_id")}
        assert rows == {instance: 1 for instance in counted}  # d's sum is 0: no row
        assert await _counts(store) == (kept, counted)
    finally:
        await other.close()


@postgresql
async def test_the_folds_dead_rows_are_vacuumed_by_the_store(fresh_store: Store,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The folds delete what the triggers insert, at the enqueue rate; autovacuum comes once a minute at
    best, and the count read walks every dead row (the enqueue rate fell by a quarter in 10 s). The store
    vacuums ``outbox_open_delta`` itself once its folds deleted ``VACUUM_AFTER`` rows."""
    monkeypatch.setattr(enqueue_sql, "COMPACT_AT", 3)
    monkeypatch.setattr(enqueue_sql, "VACUUM_AFTER", 20)
    store = await _store(fresh_store, "a", "b")

    async def vacuums() -> int:
        async with store.engine.connect() as conn:
            return int((await conn.execute(sa.text(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox_open_delta'"))).scalar_one())

    assert await vacuums() == 0
    for n in range(60):
        await enqueue(store, f"k{n}", instance="ab"[n % 2], now=T0 + n)
        await _wait_in_flight(store)
    assert await vacuums() >= 1
    kept, counted = await _counts(store)
    assert kept == counted == {"a": 30, "b": 30}


@postgresql
async def test_a_role_that_may_not_vacuum_the_changes_is_logged_once_and_the_counts_stay_exact(
        fresh_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrations run by an admin role, the hub by another (managed PostgreSQL): PostgreSQL answers the
    store's vacuum with a warning and vacuums nothing; the store says so once (the enqueue slows down as
    the dead rows build up, and an operator must know why)."""
    monkeypatch.setattr(enqueue_sql, "COMPACT_AT", 3)
    monkeypatch.setattr(enqueue_sql, "VACUUM_AFTER", 10)
    owner = await _store(fresh_store, "a")
    role = f"wahub_app_{uuid.uuid4().hex[:8]}"
    async with owner.engine.connect() as conn:
        for sql in (f'CREATE ROLE "{role}" LOGIN', f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
                    f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"'):
            await conn.execute(sa.text(sql))
        await conn.commit()
    app = SqlStore(f"postgresql+asyncpg://{role}@{owner.url.split('@', 1)[1]}")
    try:
        with structlog.testing.capture_logs() as logs:
            for n in range(40):
                await enqueue(app, f"k{n}", instance="a", now=T0 + n)
                await _wait_in_flight(app)
        assert [e["event"] for e in logs if e["event"].startswith("open_count_")] == ["open_count_vacuum_refused"]
        kept, counted = await _counts(app)
        assert kept == counted == {"a": 40}
    finally:
        await app.close()
        async with owner.engine.connect() as conn:
            await conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            await conn.execute(sa.text(f'DROP ROLE "{role}"'))
            await conn.commit()


@postgresql
async def test_truncate_a_restore_with_another_search_path_and_a_deleted_instance_leave_nothing_wrong(
        fresh_store: Store) -> None:
    """On PostgreSQL ``TRUNCATE outbox`` empties the changes (a queue emptied that way is not full); a write
    from a session whose ``search_path`` is empty (as ``pg_restore`` sets it) still reaches the changes
    table; a deleted instance leaves no change rows behind."""
    store = await _store(fresh_store, "a", "b")
    for i in range(5):
        await enqueue(store, f"k{i}", max_open=5)
    with pytest.raises(QueueFullSignal):
        await enqueue(store, "k5", max_open=5)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE outbox CASCADE"))
    assert await _counts(store) == ({}, {})
    _, created, depth = await enqueue(store, "k5", max_open=5)
    assert created and depth == 1
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("SET LOCAL search_path = ''"))
        await conn.execute(sa.text(
            "INSERT INTO public.outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
            "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) VALUES "
            "('q-restored', 'b', 'restored', 'header', 'text', '201000000001@c.us', '{}', :f, 'queued', 0, 1, 1, 1)"),
            {"f": "f" * 64})
    kept, counted = await _counts(store)
    assert kept == counted == {"a": 1, "b": 1}
    await store.delete_instance("b")
    await _wait_in_flight(store)
    async with store.engine.connect() as conn:
        left = (await conn.execute(sa.text("SELECT count(*) FROM outbox_open_delta WHERE instance_id = 'b'"))).scalar()
    assert left == 0


@both
async def test_callers_cancelled_while_their_batch_commits_leave_it_whole(fresh_store: Store) -> None:
    """An enqueue's caller cancelled (the client went away) while its group commit runs does not cut the
    batch short: every item of the batch is stored once, the kept counts agree, and close() waits for the
    batch rather than closing the database under it. (``insert_item`` is not run as a shielded task of its
    own: the batch runs in the writer task whatever becomes of its callers.)"""
    store = await _store(fresh_store, "a")
    flushing, flush = asyncio.Event(), store._enqueue._flush

    async def flagged(reqs: Any) -> Any:
        flushing.set()
        return await flush(reqs)

    store._enqueue._flush = flagged
    callers = [asyncio.ensure_future(enqueue(store, f"k{i}", max_open=1_000)) for i in range(40)]
    await flushing.wait()  # the writer took all 40 (one batch) and runs it
    assert not store._enqueue._pending
    for caller in callers:
        caller.cancel()
    await store.close()
    assert all(caller.cancelled() for caller in callers)
    reopened = SqlStore(store.engine.url.render_as_string(hide_password=False))
    try:
        kept, counted = await _counts(reopened)
        assert kept == counted == {"a": 40}
    finally:
        await reopened.close()


@both
async def test_queue_depths_and_refusals_through_the_api_follow_the_kept_counts(
        fresh_store: Store, tmp_path: Path) -> None:
    """What a client sees of the kept counts, on each database: ``queueDepth`` 1, 2, 3, then 429 at
    ``MAX_QUEUE_SIZE=3`` (with ``queueDepth`` 3); clearing the queue makes room again (depth 1)."""
    hub = build_hub(make_settings(tmp_path, max_queue_size=3), store=fresh_store, rng=random.Random(7))
    await hub.start(restore=False)
    try:
        app = create_app(hub, manage_hub=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                     headers={"authorization": f"Bearer {API_KEY}"}) as client:
            assert (await client.post("/instances", json={"name": "shop"})).status_code in (200, 201)
            send_url = "/instances/shop/client/action/send-message"
            body = {"chatId": "201000000001@c.us", "message": "order #1 confirmed"}
            depths = []
            for i in range(3):
                answer = await client.post(send_url, json=body, headers={"Idempotency-Key": f"o{i}"})
                assert answer.status_code == 202
                depths.append(answer.json()["queueDepth"])
            assert depths == [1, 2, 3]
            full = await client.post(send_url, json=body, headers={"Idempotency-Key": "o3"})
            assert full.status_code == 429 and full.json()["queueDepth"] == 3
            replay = await client.post(send_url, json=body, headers={"Idempotency-Key": "o1"})
            assert replay.json()["replay"] is True and replay.json()["queueDepth"] == 3
            assert (await client.delete("/instances/shop/queue")).json()["cleared"] == 3
            again = await client.post(send_url, json=body, headers={"Idempotency-Key": "o3"})
            assert again.status_code == 202 and again.json()["queueDepth"] == 1
    finally:
        await hub.stop()
