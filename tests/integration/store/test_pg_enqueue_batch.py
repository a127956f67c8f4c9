"""PostgreSQL's enqueue batch: one statement, one round trip, deciding as :func:`decide` does.

The batch's read, its decisions (replay, queue full per instance in arrival order, new row) and its
insert are one statement (``store/sql/enqueue.py`` ``_PG_ONE``). Held here to what the callers get and
what the table holds, against :func:`decide` run on the state before the batch: random batches over
instances near their queue limits, with repeated keys and stored keys, open or finished; a batch whose
limits differ within an instance (two statements); and a key another writer inserts while the
statement waits on it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.store.conftest import T0
from wahub.store.base import QueueFullSignal, Store
from wahub.store.sql import SqlStore
from wahub.store.sql import enqueue as enqueue_sql
from wahub.store.sql.connection import _NewItem
from wahub.store.sql.direct import driver

pytestmark = [pytest.mark.parametrize("fresh_store", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                                      indirect=True), pytest.mark.timeout(120)]

Answer = tuple[str, str, str, bool, int] | tuple[str, int]  # (instance, key, queue id, created, count) | refusal


class CountingConnection:
    """The asyncpg connection, counting the statements sent (each is a round trip)."""

    def __init__(self, pg: Any) -> None:
        self.pg, self.statements = pg, 0

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.statements += 1
        return await self.pg.fetch(sql, *args)


@asynccontextmanager
async def _pg(store: SqlStore) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection."""
    async with store.engine.connect() as conn:
        yield await driver(conn)


async def _migrated(fresh_store: Store, *instances: str) -> SqlStore:
    assert isinstance(fresh_store, SqlStore)
    await fresh_store.migrate()
    for name in instances:
        await fresh_store.create_instance(id=name, name=name, webhook_url=None, webhook_events=[],
                                          webhook_secret=None, now=T0)
    return fresh_store


# An item another writer (or the state before the batch) stored: queue id, instance, key, status, time
_INSERT_ROW = ("INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
               "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, "
               "'header', 'text', '201000000001@c.us', '{}', 'x', $4, 0, $5, $5, $5)")


async def _until_waiting_on_a_lock(other: Any, pg: Any, batch: asyncio.Future[Any]) -> None:
    """Until ``pg``'s statement waits on a row lock (asked on ``other``; the batch must not end first)."""
    pid = pg.get_server_pid()
    while not await other.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
        assert not batch.done(), batch


def _req(instance_id: str, key: str, max_open: int) -> _NewItem:
    return _NewItem(queue_id="q_" + uuid.uuid4().hex, instance_id=instance_id, idempotency_key=key,
                    key_source="header", kind="text", chat_id="201000000001@c.us", payload={"message": f"é {key}"},
                    fingerprint="f" * 64, now=T0, max_open=max_open)


async def _store_rows(pg: Any, rows: Sequence[tuple[str, str, str]]) -> None:
    """Items stored before the batch: (instance, key, status)."""
    for instance_id, key, status in rows:  # a key stored once; one item sending per instance
        await pg.execute(_INSERT_ROW + " ON CONFLICT DO NOTHING", "q_" + uuid.uuid4().hex, instance_id, key, status,
                         T0)


async def _expected(pg: Any, reqs: Sequence[_NewItem]) -> list[Answer]:
    """:func:`decide` on the state before the batch, read apart from the batch's own statement."""
    keys = list(dict.fromkeys((r.instance_id, r.idempotency_key) for r in reqs))
    stored = await enqueue_sql._pg_by_keys(pg, keys)
    counts = {r[0]: int(r[1]) for r in await pg.fetch(
        "SELECT instance_id, sum(delta) FROM outbox_open_delta WHERE instance_id = ANY($1::varchar[]) "
        "GROUP BY instance_id", list({r.instance_id for r in reqs}))}
    decided, new_rows = enqueue_sql.decide(reqs, stored, counts)
    out: list[Answer] = []
    for d in decided:
        if isinstance(d, BaseException):
            assert isinstance(d, QueueFullSignal)
            out.append(("full", d.open_count))
            continue
        how, key, count = d
        created = how == "created"
        item = new_rows[key]["queue_id"] if key in new_rows else stored[key]
        assert not isinstance(item, Exception), item
        queue_id = item if isinstance(item, str) else item.queue_id
        out.append((key[0], key[1], queue_id, created, count))
    return out


def _got(results: Sequence[Any]) -> list[Answer]:
    out: list[Answer] = []
    for r in results:
        if isinstance(r, QueueFullSignal):
            out.append(("full", r.open_count))
            continue
        assert not isinstance(r, BaseException), r
        item, created, count = r
        out.append((item.instance_id, item.idempotency_key, item.queue_id, created, count))
    return out


async def test_random_batches_are_answered_and_stored_as_decide_says(fresh_store: Store) -> None:
    rng = random.Random(20261201)
    store = await _migrated(fresh_store, *(f"c{case}{x}" for case in range(80) for x in "ab"))
    async with _pg(store) as pg:
        for case in range(80):
            names = [f"c{case}a", f"c{case}b"]
            keys = [f"k{i}" for i in range(6)]
            await _store_rows(pg, [(rng.choice(names), rng.choice(keys), rng.choice(["queued", "sent", "sending"]))
                                   for _ in range(rng.randrange(4))])
            limits = {name: rng.randrange(1, 5) for name in names}
            mixed = rng.random() < 0.2  # one instance's calls carry different limits: two statements
            reqs = [_req(name, rng.choice(keys), rng.randrange(1, 5) if mixed else limits[name])
                    for name in (rng.choice(names) for _ in range(rng.randrange(1, 12)))]
            expected = await _expected(pg, reqs)
            counting = CountingConnection(pg)
            results, _fold = await enqueue_sql.pg_batch(counting, reqs)
            assert _got(results) == expected, (case, reqs)
            one = enqueue_sql._one_statement_fits(reqs, list({(r.instance_id, r.idempotency_key) for r in reqs}))
            assert counting.statements == (1 if one else 2), case
            # each item answered (new or a replay) is the row stored under its key, seq included
            stored = {(r["instance_id"], r["idempotency_key"]): (r["seq"], r["queue_id"]) for r in await pg.fetch(
                "SELECT seq, queue_id, instance_id, idempotency_key FROM outbox WHERE instance_id = ANY($1)", names)}
            for r in results:
                if not isinstance(r, BaseException):
                    item = r[0]
                    assert stored[(item.instance_id, item.idempotency_key)] == (item.seq, item.queue_id)
            new = [r[0] for r in results if not isinstance(r, BaseException) and r[1]]
            assert [i.seq for i in new] == sorted(i.seq for i in new), "new rows keep the calls' order"


async def test_a_batch_is_one_round_trip_when_its_limits_agree(fresh_store: Store) -> None:
    store = await _migrated(fresh_store, "shop", "other")
    async with _pg(store) as pg:
        counting = CountingConnection(pg)
        results, _ = await enqueue_sql.pg_batch(counting, [_req("shop" if i % 2 else "other", f"k{i}", 100)
                                                           for i in range(64)])
        assert counting.statements == 1 and all(r[1] for r in results if not isinstance(r, BaseException))
        counting = CountingConnection(pg)
        results, _ = await enqueue_sql.pg_batch(counting, [_req("shop", "k1", 100), _req("shop", "k99", 50)])
        assert counting.statements == 2  # the limits differ within `shop`: read, decide, insert
        assert [r[1] for r in results if not isinstance(r, BaseException)] == [False, True]


async def test_a_key_another_writer_inserts_while_the_statement_waits_is_answered_with_theirs(
        fresh_store: Store) -> None:
    store = await _migrated(fresh_store, "shop")
    theirs = "q_" + uuid.uuid4().hex
    async with _pg(store) as pg:
        async with _pg(store) as other:
            tx = other.transaction()
            await tx.start()
            await other.execute(_INSERT_ROW, theirs, "shop", "k1", "queued", T0)
            reqs = [_req("shop", "k0", 100), _req("shop", "k1", 100), _req("shop", "k2", 100)]
            batch = asyncio.ensure_future(enqueue_sql.pg_batch(pg, reqs))
            # the batch's statement took its snapshot and now waits on the uncommitted row's key
            await _until_waiting_on_a_lock(other, pg, batch)
            await tx.commit()
            results, _ = await batch
    got = _got(results)
    assert got[1] == ("shop", "k1", theirs, False, 1)
    assert [not isinstance(r, BaseException) and r[1] for r in results] == [True, False, True]  # created


async def test_an_enqueue_is_answered_while_every_shared_connection_is_checked_out(fresh_store: Store) -> None:
    # The send loops of many instances at work hold the shared pool's connections; an enqueue batch
    # that had to wait for one of them waited for their statements (the enqueue's p99 under sends).
    store = await _migrated(fresh_store, "shop")
    pool = store.engine.pool
    assert isinstance(pool, sa.pool.QueuePool)
    held = [await store.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        assert pool.checkedout() == len(held)
        item, created, count = await asyncio.wait_for(  # without its own connections it waits for the pool's timeout
            store.insert_item(queue_id="q_" + uuid.uuid4().hex, instance_id="shop", idempotency_key="k",
                              key_source="header", kind="text", chat_id="201000000001@c.us",
                              payload={"message": "m"}, fingerprint="f" * 64, now=T0, max_open=10), 20)
        assert created and count == 1 and item.idempotency_key == "k"
    finally:
        for conn in held:
            await conn.close()


async def test_a_queue_limit_beyond_32_bits_admits_like_any_other(fresh_store: Store) -> None:
    # MAX_QUEUE_SIZE has no upper bound; a very large one means "no limit" and must not fail the batch
    store = await _migrated(fresh_store, "shop")
    async with _pg(store) as pg:
        big = 3_000_000_000
        results, _ = await enqueue_sql.pg_batch(pg, [_req("shop", "k1", big), _req("shop", "k2", big),
                                                     _req("shop", "k1", big)])
        assert _got(results)[0][3:] == (True, 1) and _got(results)[1][3:] == (True, 2)
        results, _ = await enqueue_sql.pg_batch(pg, [_req("shop", "k3", 10**20)])
        assert _got(results)[0][3:] == (True, 3)


async def test_a_stored_row_this_version_cannot_read_fails_only_the_calls_that_replay_it(fresh_store: Store) -> None:
    # a newer node's kind (its migration widened the check): the batch's other calls are answered as usual
    store = await _migrated(fresh_store, "shop")
    async with _pg(store) as pg:
        await pg.execute("ALTER TABLE outbox DROP CONSTRAINT ck_outbox_kind_known")
        await _store_rows(pg, [("shop", "newer", "queued")])
        await pg.execute("UPDATE outbox SET kind = 'poll2' WHERE idempotency_key = 'newer'")
        for depth, reqs in ((2, [_req("shop", "newer", 100), _req("shop", "a", 100)]),  # one statement
                            (3, [_req("shop", "newer", 100), _req("shop", "b", 50)])):  # two (the limits differ)
            results, _ = await enqueue_sql.pg_batch(pg, reqs)
            assert isinstance(results[0], ValueError)
            assert not isinstance(results[1], BaseException) and results[1][1] and results[1][2] == depth


async def test_a_deadlock_with_another_writer_runs_the_batch_again(fresh_store: Store) -> None:
    # The batch inserts k1 then waits on k2, which another writer holds; that writer then inserts k1.
    # PostgreSQL ends the batch's statement (its deadlock_timeout is the shorter); run again, it waits
    # for the other writer's commit and answers both keys as theirs.
    store = await _migrated(fresh_store, "shop")
    theirs = {k: "q_" + uuid.uuid4().hex for k in ("k1", "k2")}
    async with _pg(store) as pg:
        async with _pg(store) as other:
            await pg.execute("SET deadlock_timeout = '20ms'")
            tx = other.transaction()
            await tx.start()
            await other.execute(_INSERT_ROW, theirs["k2"], "shop", "k2", "queued", T0)
            batch = asyncio.ensure_future(enqueue_sql.pg_batch(pg, [_req("shop", "k1", 100), _req("shop", "k2", 100)]))
            await _until_waiting_on_a_lock(other, pg, batch)
            # the cycle: PostgreSQL ends the batch's statement
            await other.execute(_INSERT_ROW, theirs["k1"], "shop", "k1", "queued", T0)
            await tx.commit()
            results, _ = await batch
            await pg.execute("RESET deadlock_timeout")
    assert [g[1:4] for g in _got(results)] == [("k1", theirs["k1"], False), ("k2", theirs["k2"], False)]


async def test_a_vacuum_the_role_may_not_run_comes_back_as_a_warning(fresh_store: Store) -> None:
    store = await _migrated(fresh_store)
    role = f"wahub_not_owner_{uuid.uuid4().hex[:8]}"
    async with _pg(store) as pg:
        assert await enqueue_sql.pg_vacuum_changes(pg) == []  # the owner
        await pg.execute(f'CREATE ROLE "{role}" NOLOGIN')
        try:
            await pg.execute(f'SET ROLE "{role}"')
            warnings = await enqueue_sql.pg_vacuum_changes(pg)
            await pg.execute("RESET ROLE")
        finally:
            await pg.execute(f'DROP ROLE "{role}"')
    assert len(warnings) == 1 and "outbox_open_delta" in warnings[0]
