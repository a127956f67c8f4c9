"""The enqueue group commit's batch on the driver's connection: one thread hop (SQLite), one round trip (PG).

Why not SQLAlchemy here: the batch is the hub's hottest write, and through SQLAlchemy's async
adapters each statement costs four hand-offs to aiosqlite's thread (cursor, execute, fetch,
close) plus the transaction's, or a ``BEGIN`` and ``COMMIT`` round trip on PostgreSQL, and the
statement and result machinery around each. The statements are few and fixed, so they are written
here once per dialect and run on the pooled connection's driver:

* SQLite: the whole batch (read the keys and open counts, decide, insert, commit) is one function
  run on the aiosqlite connection's own thread — the thread SQLAlchemy's adapter feeds as well
  (through the same queue), so the connection is never used from two threads. The open counts are
  read from ``outbox_open``, which triggers keep in every write's own transaction (migration 0010):
  counting the open rows cost one index step per open item, 8 ms per batch of 8 at 10,000 queued
  per instance (``bench/enqueue_batch.py``).
* PostgreSQL: one statement on the asyncpg connection, outside an explicit transaction (``_PG_ONE``:
  the read, the admission and the ``INSERT … ON CONFLICT DO NOTHING``, atomic on its own); a batch
  whose queue limits differ within an instance takes two (the read, then the insert). The open
  counts are sums of the changes triggers insert into ``outbox_open_delta`` (migration 0012), folded
  when an instance has many (another statement, in a task of its own after the batch answered). The
  reads were never locking reads, and a row another writer inserted after the statement's snapshot
  is read back as before.

The decisions (replay, queue full, new row) are :func:`decide`'s, the same for both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from wahub.domain.outbox import ItemStatus as St
from wahub.domain.outbox import OutboxItem
from wahub.store import tables as t
from wahub.store.base import QueueFullSignal
from wahub.store.records import dump_json, outbox_item
from wahub.store.sql.connection import _Inserted, _new_item, _NewItem

Key = tuple[str, str]  # (instance_id, idempotency_key)
# The rows stored under keys: the item, or why its row could not be read (a kind this version does not
# know, written by a newer node, say): then only the calls that replay that key fail, with that error.
Stored = dict[Key, OutboxItem | Exception]
Decided = tuple[str, Key, int] | BaseException  # ("created" | "existing", key, open count) or the refusal

COLUMNS = [c.name for c in t.outbox.columns]
INSERTED = ("queue_id", "instance_id", "idempotency_key", "key_source", "kind", "chat_id", "payload",
            "fingerprint", "status", "attempts", "next_attempt_at", "created_at", "updated_at")
CHUNK = 400  # keys per read (SQLite's bound-parameter limit is far above 2 × 400)


def decide(reqs: Sequence[_NewItem], stored: Stored, counts: dict[str, int],
           payloads: Sequence[str] | None = None) -> tuple[list[Decided], dict[Key, dict[str, Any]]]:
    """Each request's fate in arrival order, and the rows to insert by key.

    An existing key (stored, or created earlier in the batch) is a replay; a full queue is a
    :class:`QueueFullSignal` for that request only. ``counts`` (open items per instance) is updated.
    ``payloads``: each request's payload as JSON text, when already made (else made here).
    """
    decided: list[Decided] = []
    new_rows: dict[Key, dict[str, Any]] = {}
    for i, r in enumerate(reqs):
        key = (r.instance_id, r.idempotency_key)
        count = counts.get(r.instance_id, 0)
        if key in stored or key in new_rows:
            decided.append(("existing", key, count))
        elif count >= r.max_open:
            decided.append(QueueFullSignal(count))
        else:
            new_rows[key] = {
                "queue_id": r.queue_id, "instance_id": r.instance_id, "idempotency_key": r.idempotency_key,
                "key_source": r.key_source, "kind": r.kind, "chat_id": r.chat_id,
                "payload": dump_json(r.payload) if payloads is None else payloads[i],
                "fingerprint": r.fingerprint, "status": St.QUEUED.value, "attempts": 0, "next_attempt_at": r.now,
                "created_at": r.now, "updated_at": r.now}
            counts[r.instance_id] = count + 1
            decided.append(("created", key, count + 1))
    return decided, new_rows


def answers(decided: list[Decided], created: dict[Key, OutboxItem], stored: Stored) -> list[_Inserted | BaseException]:
    """Each request's ``(item, created, open_count)`` (or its refusal) once the batch committed."""
    results: list[_Inserted | BaseException] = []
    for d in decided:
        if isinstance(d, BaseException):
            results.append(d)
            continue
        how, key, count = d
        if how == "created" and key in created:
            results.append((created[key], True, count))
        elif key in stored:  # stored before, or inserted by another writer since our read: theirs is the item
            item = stored[key]
            results.append(item if isinstance(item, Exception)
                           else (item, False, count if how == "existing" else count - 1))
        else:  # an earlier request of this batch created it
            results.append((created[key], False, count))
    return results


def _keys_and_ids(reqs: Sequence[_NewItem]) -> tuple[list[Key], list[str]]:
    keys = list(dict.fromkeys((r.instance_id, r.idempotency_key) for r in reqs))
    return keys, list(dict.fromkeys(r.instance_id for r in reqs))


def _rows_to_items(rows: Sequence[Sequence[Any]], wanted: set[Key]) -> Stored:
    found: Stored = {}
    for row in rows:
        values = dict(zip(COLUMNS, row, strict=True))
        key = (values["instance_id"], values["idempotency_key"])
        if key in wanted:
            try:
                found[key] = outbox_item(values)
            except (ValueError, TypeError, KeyError) as exc:
                found[key] = exc
    return found


# -- SQLite: the whole batch in one call on the connection's thread ----------------------------------
def _marks(n: int) -> str:
    return ",".join("?" * n)


def _sqlite_by_keys(db: sqlite3.Connection, keys: Sequence[Key]) -> Stored:
    """The stored items under ``keys``: one probe of the unique (instance, key) index per pair.

    The pairs are a ``VALUES`` list joined to ``outbox`` (``CROSS JOIN`` keeps the list outside). Two
    ``IN`` lists (instances, keys) would probe every combination, ids × keys: 773 µs instead of 54 µs
    for 64 pairs; a row-value ``IN (VALUES …)`` scans the whole table."""
    found: Stored = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        pairs = ",".join(["(?,?)"] * len(chunk))
        rows = db.execute(f"WITH k(instance_id, idempotency_key) AS (VALUES {pairs}) SELECT "
                          f"{', '.join('o.' + c for c in COLUMNS)} FROM k CROSS JOIN outbox o ON o.instance_id = "
                          "k.instance_id AND o.idempotency_key = k.idempotency_key",
                          [v for k in chunk for v in k]).fetchall()
        found.update(_rows_to_items(rows, set(chunk)))
    return found


def sqlite_batch(db: sqlite3.Connection, reqs: Sequence[_NewItem],
                 answer: Callable[[list[_Inserted | BaseException]], None] | None = None,
                 ) -> list[_Inserted | BaseException]:
    """The batch on the raw ``sqlite3`` connection, committed (rolled back on any error, which is raised).

    ``answer`` (the group commit's :meth:`~wahub.store.groupcommit.Batch.answer`) gets the results right
    after the commit, from this thread, so the callers are answered without waiting for this call's
    return to reach the event loop and the connection's return to the pool."""
    try:
        keys, ids = _keys_and_ids(reqs)
        stored = _sqlite_by_keys(db, keys)
        counts = {row[0]: int(row[1]) for row in db.execute(  # kept by triggers (migration 0010)
            f"SELECT instance_id, open_count FROM outbox_open WHERE instance_id IN ({_marks(len(ids))})",
            ids).fetchall()}
        decided, new_rows = decide(reqs, stored, counts)
        created: dict[Key, OutboxItem] = {}
        rows = list(new_rows.values())
        for start in range(0, len(rows), 200):  # 13 parameters a row
            chunk = rows[start:start + 200]
            values = ",".join(f"({_marks(len(INSERTED))})" for _ in chunk)
            sql = (f"INSERT INTO outbox ({', '.join(INSERTED)}) VALUES {values} ON CONFLICT (instance_id, "
                   "idempotency_key) DO NOTHING RETURNING seq, instance_id, idempotency_key")
            for seq, instance_id, key in db.execute(sql, [v[c] for v in chunk for c in INSERTED]).fetchall():
                created[(instance_id, key)] = _new_item(seq, new_rows[(instance_id, key)])
        lost = [k for k in new_rows if k not in created]
        if lost:  # inserted by another writer since our read: theirs is the item
            stored.update(_sqlite_by_keys(db, lost))
        db.commit()
    except BaseException:
        db.rollback()
        raise
    results = answers(decided, created, stored)
    if answer is not None:
        answer(results)
    return results


# -- PostgreSQL: one statement on the asyncpg connection (two when the limits differ) -----------------
# An instance's open items are the sum of its rows in ``outbox_open_delta`` (migration 0012). Both reads
# return them as extra rows beside the stored items, shaped like an outbox row (:func:`_count_row`): the
# sum in ``seq``, the number of rows summed in ``attempts`` (a fold's cue), the instance in ``instance_id``.
def _open_count(ids: str) -> str:
    """``FROM`` text: each instance id of ``ids`` (a one-column relation) as ``i.id``, with its sum
    ``d.open_items`` and its number of rows ``d.change_rows``."""
    return (f"FROM {ids} AS i(id) CROSS JOIN LATERAL (SELECT coalesce(sum(delta), 0) AS open_items, count(*) AS "
            "change_rows FROM outbox_open_delta WHERE outbox_open_delta.instance_id = i.id) AS d")


def _count_row(instance_id: str, open_items: str, change_rows: str) -> str:
    """A count's columns, shaped like an outbox row (the others NULL)."""
    return ", ".join(open_items if c == "seq" else change_rows if c == "attempts" else instance_id
                     if c == "instance_id" else "NULL" for c in COLUMNS)


# The read of the two statements: the rows under the batch's keys (tag false) and the counts (tag true).
_PG_READ = (f"SELECT false, {', '.join('o.' + c for c in COLUMNS)} FROM unnest($1::varchar[], $2::varchar[]) AS "
            "k(instance_id, idempotency_key) JOIN outbox o ON o.instance_id = k.instance_id AND o.idempotency_key = "
            "k.idempotency_key UNION ALL SELECT true, " + _count_row("i.id", "d.open_items", "d.change_rows")
            + " " + _open_count("unnest($3::varchar[])"))
COMPACT_AT = 64  # an instance's change rows beyond which the batch folds them into one (pg_compact)
# One statement: the instances' change rows replaced by their sum (none when it is 0). Each instance's
# rows only under a transaction advisory lock of that instance, taken with try (no wait) before a row is
# deleted: a fold skips the rows of an instance another fold holds, so two folds never delete the same
# rows (no row lock waits, no deadlock), and the inserts of the triggers never wait for a fold. Keys:
# the two-int space (apart from the migrations' one-bigint MIGRATION_LOCK_KEY); a hash collision only
# makes two instances share a lock.
FOLD_LOCK_CLASS = 0x77616864  # "wahd"
# Instances per fold statement: each holds its advisory lock until the statement's end, and PostgreSQL's
# lock table has max_locks_per_transaction (64) × connections slots for all sessions together.
FOLD_CHUNK = 32
_PG_COMPACT = ("WITH gone AS (DELETE FROM outbox_open_delta WHERE instance_id = ANY($1::varchar[]) AND "
               f"pg_try_advisory_xact_lock({FOLD_LOCK_CLASS}, hashtext(instance_id)) RETURNING instance_id, delta), "
               "sums AS (INSERT INTO outbox_open_delta (instance_id, delta) SELECT instance_id, sum(delta) FROM gone "
               "GROUP BY instance_id HAVING sum(delta) <> 0 RETURNING 1) "
               "SELECT count(*) FROM gone")
# Rows the folds deleted (dead rows until a vacuum) beyond which the store vacuums the table itself
# (pg_vacuum_changes): the triggers insert a row per instance and enqueue statement, the folds delete
# them, so the table churns at the enqueue rate, while autovacuum visits a database once a minute
# (autovacuum_naptime) at best. The count read is an index scan over every dead row: at ~3,500
# enqueues per s the enqueue rate fell by a quarter within 10 s (docs/PERFORMANCE.md, "The open
# counts' dead rows").
VACUUM_AFTER = 5_000
# TRUNCATE false: giving the empty pages at the table's end back takes a lock that blocks the triggers'
# inserts for its moment; the space is reused by the next rows anyway.
_PG_VACUUM = "VACUUM (SKIP_LOCKED, TRUNCATE false) outbox_open_delta"
_ATTEMPTS = COLUMNS.index("attempts") + 1
_PG_BY_KEYS = (f"SELECT {', '.join('o.' + c for c in COLUMNS)} FROM unnest($1::varchar[], $2::varchar[]) AS "
               "k(instance_id, idempotency_key) JOIN outbox o ON o.instance_id = k.instance_id AND "
               "o.idempotency_key = k.idempotency_key")
_PG_TYPES = {"attempts": "integer", "next_attempt_at": "bigint", "created_at": "bigint", "updated_at": "bigint",
             "payload": "text"}
_PG_INSERT = (f"INSERT INTO outbox ({', '.join(INSERTED)}) SELECT * FROM unnest("
              + ", ".join(f"${i}::{_PG_TYPES.get(c, 'varchar')}[]" for i, c in enumerate(INSERTED, 1))
              + ") ON CONFLICT (instance_id, idempotency_key) DO NOTHING RETURNING seq, instance_id, idempotency_key")
_SEQ = COLUMNS.index("seq") + 1
_INSTANCE = COLUMNS.index("instance_id") + 1
_KEY = COLUMNS.index("idempotency_key") + 1


async def _pg_by_keys(pg: Any, keys: Sequence[Key]) -> Stored:
    found: Stored = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        rows = await pg.fetch(_PG_BY_KEYS, [k[0] for k in chunk], [k[1] for k in chunk])
        found.update(_rows_to_items([tuple(r) for r in rows], set(chunk)))
    return found


# The whole batch as one statement, one round trip: the requests as arrays (arrival order kept by
# ``WITH ORDINALITY``); the rows stored under their keys and the instances' open counts, read in the
# statement's one snapshot; the requests admitted among the keys not stored; their insert; and all
# three read back as tagged rows (0 inserted, 1 stored, 2 counts: :func:`_count_row`). Admission is
# :func:`decide`'s, in SQL: the n-th new key of an instance (by first arrival) is inserted while its
# open items + n <= max_open. That is :func:`decide`'s order only when every request of an instance
# carries the same ``max_open``: :func:`pg_batch` checks, and a batch whose limits differ within an
# instance (settings changed between two calls) takes the two statements. :func:`pg_batch` then
# decides again in Python on the same snapshot, which gives each caller its answer (replay, queue
# full, open count) and checks that both chose the same rows.
# The parameters, in order ($1 … $10; _pg_one_statement passes them so):
_REQUEST_COLUMNS = ("instance_id", "idempotency_key", "queue_id", "key_source", "kind", "chat_id", "payload",
                    "fingerprint", "at_ms", "max_open")
_REQUEST_TYPES = {"payload": "text", "at_ms": "bigint", "max_open": "bigint"}
_BIGINT_MAX = 2**63 - 1  # MAX_QUEUE_SIZE has no upper bound; above this it is as good as none
_PG_ONE = (
    "WITH r AS (SELECT * FROM unnest("
    + ", ".join(f"${i}::{_REQUEST_TYPES.get(c, 'varchar')}[]" for i, c in enumerate(_REQUEST_COLUMNS, 1))
    + f") WITH ORDINALITY AS r({', '.join(_REQUEST_COLUMNS)}, ord)), "
    "stored AS (SELECT o.* FROM (SELECT DISTINCT instance_id, idempotency_key FROM r) k JOIN outbox o "
    "ON o.instance_id = k.instance_id AND o.idempotency_key = k.idempotency_key), "
    f"counts AS (SELECT i.id, d.open_items, d.change_rows {_open_count('(SELECT DISTINCT instance_id FROM r)')}), "
    "fresh AS (SELECT DISTINCT ON (r.instance_id, r.idempotency_key) r.* FROM r WHERE NOT EXISTS (SELECT 1 FROM "
    "stored s WHERE s.instance_id = r.instance_id AND s.idempotency_key = r.idempotency_key) "
    "ORDER BY r.instance_id, r.idempotency_key, r.ord), "
    "admitted AS (SELECT f.* FROM (SELECT fresh.*, row_number() OVER (PARTITION BY fresh.instance_id "
    "ORDER BY fresh.ord) AS n FROM fresh) f JOIN counts c ON c.id = f.instance_id "
    "WHERE c.open_items + f.n <= f.max_open), "
    f"ins AS (INSERT INTO outbox ({', '.join(INSERTED)}) SELECT queue_id, instance_id, idempotency_key, "
    f"key_source, kind, chat_id, payload, fingerprint, '{St.QUEUED.value}', 0, at_ms, at_ms, at_ms FROM admitted "
    "ORDER BY ord ON CONFLICT (instance_id, idempotency_key) DO NOTHING RETURNING seq, instance_id, "
    "idempotency_key) "
    "SELECT 0, " + ", ".join("ins." + c if c in ("seq", "instance_id", "idempotency_key") else "NULL"
                             for c in COLUMNS) + " FROM ins "
    "UNION ALL SELECT 1, " + ", ".join("s." + c for c in COLUMNS) + " FROM stored s "
    "UNION ALL SELECT 2, " + _count_row("c.id", "c.open_items", "c.change_rows") + " FROM counts c")


def _one_statement_fits(reqs: Sequence[_NewItem], keys: Sequence[Key]) -> bool:
    """Whether :data:`_PG_ONE` decides as :func:`decide` does: one ``max_open`` per instance, one read."""
    if len(keys) > CHUNK:
        return False
    limits: dict[str, int] = {}
    return all(limits.setdefault(r.instance_id, r.max_open) == r.max_open for r in reqs)


# Two batches inserting the same keys in opposite orders (two nodes, or a client's retry landing in
# the other writer's batch) wait on each other's uncommitted keys until PostgreSQL ends one with
# SQLSTATE 40P01 (after deadlock_timeout, 1 s by default). The batch's one write is a single statement,
# rolled back whole, so it is run again; the other batch's rows are then read as stored (replays).
DEADLOCK_DETECTED = "40P01"
DEADLOCK_ATTEMPTS = 3


async def pg_batch(pg: Any, reqs: Sequence[_NewItem]) -> tuple[list[_Inserted | BaseException], list[str]]:
    """The batch on the raw asyncpg connection (not in a transaction: the insert is one statement).

    One statement (:data:`_PG_ONE`) when it decides as :func:`decide` does, else two (the read, then
    the insert). A key another writer inserted between the snapshot and the insert costs one more read.
    A deadlock with another batch runs the batch again (``DEADLOCK_ATTEMPTS`` in all).
    Returns the answers and the instances whose open-count changes should be folded (:func:`pg_compact`,
    after the batch answered: more than ``COMPACT_AT`` rows).
    """
    keys, ids = _keys_and_ids(reqs)
    run = _pg_one_statement if _one_statement_fits(reqs, keys) else _pg_two_statements
    for _ in range(DEADLOCK_ATTEMPTS - 1):
        try:
            return await run(pg, reqs, keys, ids)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != DEADLOCK_DETECTED:
                raise
    return await run(pg, reqs, keys, ids)


def _counts_and_fold(count_rows: Sequence[Any]) -> tuple[dict[str, int], list[str]]:
    """The open items per instance, and the instances with more than ``COMPACT_AT`` change rows, from
    count rows (:func:`_count_row`, after the tag)."""
    return ({r[_INSTANCE]: int(r[_SEQ]) for r in count_rows},
            [r[_INSTANCE] for r in count_rows if r[_ATTEMPTS] > COMPACT_AT])


async def _answers_after_insert(pg: Any, decided: list[Decided], new_rows: dict[Key, dict[str, Any]],
                                inserted: Sequence[tuple[int, str, str]],
                                stored: Stored) -> list[_Inserted | BaseException]:
    """The answers once the insert returned ``inserted`` (``seq``, instance id, key); a key
    :func:`decide` chose that another writer inserted first is read back (theirs is the item)."""
    created: dict[Key, OutboxItem] = {}
    for seq, instance_id, idempotency_key in inserted:
        key = (instance_id, idempotency_key)
        if key not in new_rows:  # committed, so the caller's retry under its key replays it
            raise RuntimeError(f"enqueue statement inserted a row the batch did not decide: {key}")
        created[key] = _new_item(seq, new_rows[key])
    lost = [k for k in new_rows if k not in created]
    if lost:
        stored.update(await _pg_by_keys(pg, lost))
    return answers(decided, created, stored)


async def _pg_one_statement(pg: Any, reqs: Sequence[_NewItem], keys: list[Key],
                            _ids: list[str]) -> tuple[list[_Inserted | BaseException], list[str]]:
    """:func:`pg_batch` as :data:`_PG_ONE`, then :func:`decide` on the statement's snapshot."""
    payloads = [dump_json(r.payload) for r in reqs]
    rows = await pg.fetch(_PG_ONE, [r.instance_id for r in reqs], [r.idempotency_key for r in reqs],
                          [r.queue_id for r in reqs], [r.key_source for r in reqs], [r.kind for r in reqs],
                          [r.chat_id for r in reqs], payloads, [r.fingerprint for r in reqs], [r.now for r in reqs],
                          [min(r.max_open, _BIGINT_MAX) for r in reqs])
    stored = _rows_to_items([tuple(r)[1:] for r in rows if r[0] == 1], set(keys))
    counts, fold = _counts_and_fold([r for r in rows if r[0] == 2])
    decided, new_rows = decide(reqs, stored, counts, payloads)
    inserted = [(r[_SEQ], r[_INSTANCE], r[_KEY]) for r in rows if r[0] == 0]
    return await _answers_after_insert(pg, decided, new_rows, inserted, stored), fold


async def _pg_two_statements(pg: Any, reqs: Sequence[_NewItem], keys: list[Key],
                             ids: list[str]) -> tuple[list[_Inserted | BaseException], list[str]]:
    """:func:`pg_batch` as the read, the decisions in Python, then the insert."""
    if len(keys) > CHUNK:  # a batch larger than one read: keys and counts apart
        stored = await _pg_by_keys(pg, keys)
        rows = await pg.fetch(_PG_READ, [], [], ids)
    else:
        rows = await pg.fetch(_PG_READ, [k[0] for k in keys], [k[1] for k in keys], ids)
        stored = _rows_to_items([tuple(r)[1:] for r in rows if not r[0]], set(keys))
    counts, fold = _counts_and_fold([r for r in rows if r[0]])
    decided, new_rows = decide(reqs, stored, counts)
    inserted: list[tuple[int, str, str]] = []
    if new_rows:
        values = list(new_rows.values())
        inserted = [tuple(r) for r in await pg.fetch(_PG_INSERT, *([v[c] for v in values] for c in INSERTED))]
    return await _answers_after_insert(pg, decided, new_rows, inserted, stored), fold


async def pg_compact(pg: Any, instance_ids: Sequence[str]) -> int:
    """Fold each instance's rows of ``outbox_open_delta`` into one (their sum; none when it is 0).

    One statement per ``FOLD_CHUNK`` instances, each committed on its own (no explicit transaction).
    Leaves the rows of an instance another fold is folding at the same time (they stay counted; a later
    fold takes them). Returns the number of rows deleted (dead until vacuumed: :func:`pg_vacuum_changes`).
    """
    ids = list(instance_ids)
    deleted = 0
    for start in range(0, len(ids), FOLD_CHUNK):
        deleted += int(await pg.fetchval(_PG_COMPACT, ids[start:start + FOLD_CHUNK]))
    return deleted


async def pg_vacuum_changes(pg: Any) -> list[str]:
    """``VACUUM`` ``outbox_open_delta`` (outside a transaction; skipped while another vacuum holds it).

    Returns the warnings PostgreSQL sent back (asyncpg drops them otherwise): a role that does not own
    the table gets one and nothing is vacuumed. The counts stay exact either way; only their read
    slows as dead rows build up."""
    warnings: list[str] = []

    def heard(_conn: Any, message: Any) -> None:
        if getattr(message, "severity_en", None) == "WARNING":  # not translated (lc_messages)
            warnings.append(str(message.message))

    pg.add_log_listener(heard)
    try:
        await pg.execute(_PG_VACUUM)
    finally:
        pg.remove_log_listener(heard)
    return warnings
