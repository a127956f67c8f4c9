"""The SQLite enqueue batch alone: its time and the pages its commit writes, by queue depth.

What it does, in one process (no HTTP, no event loop):

1. migrates a fresh SQLite file (WAL, ``synchronous=NORMAL`` as the hub opens it) and creates 20
   instances;
2. queues ``--depth`` items per instance (what a backlog looks like to the batch);
3. runs ``--batches`` enqueue batches of ``--size`` new items each (instances round-robin, a new
   idempotency key per item) through ``wahub.store.sql.enqueue.sqlite_batch``, the function the hub
   runs in its database thread, and times each call (wall clock, ``time.perf_counter``);
4. counts the pages the commits wrote to the write-ahead log: checkpoints are off while the batches
   run, so the log grows by one frame (page + 24-byte header) per page written.

Usage::

    .venv/bin/python bench/enqueue_batch.py --depth 0,200,2000,10000 [--pythonpath /tmp/old/src]

``--pythonpath`` runs another source tree (e.g. older code from ``git archive``) in a subprocess. The
items carry queue ids made the way that tree makes them (``new_queue_id`` where it exists, else
``uuid4``), with header keys, as ``bench/enqueue.py``'s requests do.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

INSTANCES = 20


def measure(depth: int, size: int, batches: int, workdir: Path) -> dict[str, Any]:
    """One depth: p50/p90 batch time (µs) and pages written per batch."""
    from wahub.store.sql import SqlStore
    from wahub.store.sql import enqueue as batch_sql
    from wahub.store.sql.connection import _NewItem

    try:
        from wahub.domain.outbox import new_queue_id  # type: ignore[attr-defined]
    except ImportError:  # older trees: random ids
        new_queue_id = None

    path = workdir / f"batch-{depth}.sqlite3"

    async def prepare() -> None:
        store = SqlStore(f"sqlite+aiosqlite:///{path}")
        await store.migrate()
        for i in range(INSTANCES):
            await store.create_instance(id=f"i{i:02d}", name="bench", webhook_url=None, webhook_events=[],
                                        webhook_secret=None, now=1)
        await store.close()

    asyncio.run(prepare())
    fields = set(inspect.signature(_NewItem).parameters)

    def item(instance: str, key: str) -> Any:
        now = int(time.time() * 1000)
        queue_id = new_queue_id(now) if new_queue_id else uuid.uuid4().hex
        values: dict[str, Any] = {
            "queue_id": queue_id, "instance_id": instance, "idempotency_key": key, "key_source": "header",
            "kind": "text", "chat_id": "201000000001@c.us",
            "payload": {"chatId": "201000000001@c.us", "message": f"benchmark message {key}"},
            "fingerprint": "f" * 64, "now": now, "max_open": 10**9}
        return _NewItem(**{k: v for k, v in values.items() if k in fields})

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    page = int(db.execute("PRAGMA page_size").fetchone()[0])
    for i in range(INSTANCES):
        for start in range(0, depth, 500):
            batch_sql.sqlite_batch(db, [item(f"i{i:02d}", f"seed-{i}-{j}")
                                        for j in range(start, min(depth, start + 500))])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    wal = Path(f"{path}-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    times, n = [], 0
    for b in range(batches):
        reqs = [item(f"i{(b * size + j) % INSTANCES:02d}", f"new-{n + j}") for j in range(size)]
        n += size
        started = time.perf_counter()
        batch_sql.sqlite_batch(db, reqs)
        times.append(time.perf_counter() - started)
    frames = (wal.stat().st_size - max(wal_before, 32)) / (page + 24)
    db.close()
    times.sort()
    return {"depth": depth, "size": size, "batches": batches, "p50_us": round(times[len(times) // 2] * 1e6),
            "p90_us": round(times[len(times) * 9 // 10] * 1e6), "pages_per_batch": round(frames / batches, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", default="0,200,2000,10000", help="comma-separated queued items per instance")
    parser.add_argument("--size", type=int, default=8, help="new items per batch")
    parser.add_argument("--batches", type=int, default=300, help="timed batches per depth")
    parser.add_argument("--pythonpath", default=None, help="run this source tree (e.g. older code)")
    args = parser.parse_args()
    if args.pythonpath:
        env = {**os.environ, "PYTHONPATH": args.pythonpath}
        cmd = [sys.executable, __file__, "--depth", args.depth, "--size", str(args.size),
               "--batches", str(args.batches)]
        sys.exit(subprocess.call(cmd, env=env))
    with tempfile.TemporaryDirectory(prefix="wahub-enqueue-batch-") as tmp:
        for depth in (int(d) for d in args.depth.split(",")):
            print(json.dumps(measure(depth, args.size, args.batches, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
