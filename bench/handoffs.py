"""Hand-offs to aiosqlite's thread per store call on the inbound → webhook path (SQLite).

Each hand-off is a wake-up of aiosqlite's thread and one of the event loop's thread; on a loaded
machine each waits for a CPU (docs/PERFORMANCE.md, "Inbound latency under load"), so their number
per inbound message is what the tail of the latency is made of. Counted by wrapping aiosqlite's
queue of work (``Connection._execute``), 10 calls each, after one warm-up call.

Usage: ``.venv/bin/python bench/handoffs.py`` (``PYTHONPATH=<older src>`` for older code)
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite.core

from wahub.store.records import EventDraft
from wahub.store.sql import SqlStore

CALLS = 10
_count = [0]
_original = aiosqlite.core.Connection._execute


async def _counted(self: aiosqlite.core.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    _count[0] += 1
    return await _original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]


async def main() -> None:
    """Print hand-offs per call of the three store calls of the path."""
    aiosqlite.core.Connection._execute = _counted  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite+aiosqlite:///{tmp}/hub.sqlite3")
        await store.migrate()
        calls: list[tuple[str, Callable[[int], Awaitable[Any]]]] = [
            ("record_inbound (one message)", lambda i: store.record_inbound(
                "a", f"m{i}", now=1, event=EventDraft(f"evt_{i}", "a", "message", "{}"))),
            ("pending_events (a lane's read)", lambda i: store.pending_events("a", 64)),
            ("events_delivered (a batch of marks)", lambda i: store.events_delivered([(1, 2, 200)])),
        ]
        for name, call in calls:
            await call(-1)
            _count[0] = 0
            for i in range(CALLS):
                await call(i)
            print(f"{name}: {_count[0] / CALLS:g} hand-offs per call")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
