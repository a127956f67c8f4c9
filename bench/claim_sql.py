"""The send path's statements on SQLite, one by one, in the database thread's terms (µs per statement).

A migrated SQLite file (WAL, ``synchronous=NORMAL``, as the hub opens it) holds ``--instances``
instances with ``--items`` queued items each. In one transaction (rolled back), each instance's
claim runs once per variant:

- ``claim, statuses bound``: the claim ``UPDATE … RETURNING`` with ``'queued'``/``'sending'`` as bound
  parameters (what SQLAlchemy compiles by default);
- ``claim, statuses in the text``: the same statement with the constants written into the SQL
  (what :class:`wahub.store.sql.sendbatch.Statement` runs);
- ``claim + hand-over request``: :meth:`OnSqlite.claim` with its send-log row, in its savepoint, as
  one request of the send batch (:func:`wahub.store.sql.sendbatch._run_batch`), committed;
- ``outcome request``: :meth:`OnSqlite.sent` for the claimed items, committed.

Usage: ``.venv/bin/python bench/claim_sql.py --instances 1000``
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from wahub.store.migrate import upgrade_connection
from wahub.store.sql.sendbatch import _Request, _run_batch
from wahub.store.sql.sendsql import OnSqlite

NOW = 1_767_225_600_000


def database(path: Path, instances: int, items: int) -> sqlite3.Connection:
    """A migrated SQLite file at ``path`` with ``instances`` ready instances × ``items`` queued items each."""
    with sa.create_engine(f"sqlite:///{path}").begin() as c:
        upgrade_connection(c, default_engine="sandbox")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    for i in range(instances):
        iid = f"fleet{i:04d}"
        conn.execute("INSERT INTO instances (id, name, webhook_events, state, state_since, created_at, engine) "
                     "VALUES (?, ?, '[]', 'ready', ?, ?, 'sandbox')", (iid, iid, NOW, NOW))
        conn.executemany(
            "INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
            "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, ?, 'header', 'text', ?, ?, ?, 'queued', 0, ?, ?, ?)",
            [(uuid.uuid4().hex, iid, f"k{i}-{k}", f"2010{i:04d}0000@c.us", json.dumps({"message": f"m{k}"}),
              "f" * 64, NOW - 1, NOW, NOW) for k in range(items)])
    conn.execute("COMMIT")
    return conn


def per_statement(conn: sqlite3.Connection, sql: str, params: list[dict[str, Any]]) -> float:
    """µs per execution of ``sql`` over ``params``, in one transaction rolled back afterwards."""
    conn.execute("BEGIN")
    t0 = time.perf_counter()
    for p in params:
        conn.execute(sql, p).fetchall()
    dt = time.perf_counter() - t0
    conn.execute("ROLLBACK")
    return dt / len(params) * 1e6


def per_request(conn: sqlite3.Connection, requests: list[Any]) -> float:
    """µs per request of one send batch (savepoint each, one commit)."""
    t0 = time.perf_counter()
    _run_batch(conn, [_Request(r, (sqlite3.IntegrityError,), None) for r in requests])
    return (time.perf_counter() - t0) / len(requests) * 1e6


def main() -> None:
    """Measure each variant and print a Markdown table (µs per statement or request)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--items", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wahub-claim-sql-") as tmp:
        conn = database(Path(tmp) / "hub.sqlite3", args.instances, args.items)
        ids = [f"fleet{i:04d}" for i in range(args.instances)]
        inner = ("(SELECT seq FROM outbox WHERE instance_id = :i AND status = {q} AND next_attempt_at <= :n "
                 "ORDER BY seq LIMIT 1)")
        claim = ("UPDATE outbox SET status = {s}, updated_at = :n, handed_over_at = :n, chosen_message_id = 'x' "
                 "WHERE seq = " + inner + " AND status = {q} RETURNING *")
        bound = [{"i": i, "n": NOW, "s": "sending", "q": "queued"} for i in ids]
        text = [{"i": i, "n": NOW} for i in ids]
        rows = {
            "claim, statuses bound": per_statement(conn, claim.format(s=":s", q=":q"), bound),
            "claim, statuses in the text": per_statement(conn, claim.format(s="'sending'", q="'queued'"), text),
        }
        items: list[Any] = []

        def claimer(iid: str) -> Any:
            def apply(c: sqlite3.Connection) -> Any:
                item = OnSqlite.claim(c, iid, NOW, True, "3EB0" + uuid.uuid4().hex[:16])
                items.append(item)
                return item
            return apply

        def outcome(item: Any) -> Any:
            return lambda c: OnSqlite.sent(c, item, "3EB0" + item.queue_id[:12], NOW + 5, NOW + 5, [])

        rows["claim + hand-over request"] = per_request(conn, [claimer(i) for i in ids])
        rows["outcome request"] = per_request(conn, [outcome(it) for it in items if it is not None])
        conn.close()
    print(f"SQLite {sqlite3.sqlite_version}, {args.instances} instances × {args.items} items")
    print("| statement | µs each |\n|---|---:|")
    for name, us in rows.items():
        print(f"| {name} | {us:.0f} |")


if __name__ == "__main__":
    main()
