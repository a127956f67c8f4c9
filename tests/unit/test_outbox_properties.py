"""Property-based test of the outbox scheduler on a fake clock (DESIGN §3.2).

Random arrivals (with repeated idempotency keys), send outcomes (ok, transient, permanent,
disconnect), process restarts and limit settings drive the real hub (send loop, supervisor, store
fake, sandbox engine). After every step: never more than the per-minute limit in any 60 s nor the
per-hour limit in any 3,600 s, no two sends closer than the interval, FIFO among due items, each key
sent at most once, every item queued or in a final status.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakehub import HOOK_URL, build
from wahub.domain import ratelimit
from wahub.domain.errors import Conflict
from wahub.domain.outbox import ItemKind
from wahub.store.memory import MemoryStore

step = st.one_of(
    st.tuples(st.just("enqueue"), st.integers(0, 14), st.integers(1, 4)),
    st.tuples(st.just("advance"), st.integers(1, 120_000)),
    st.tuples(st.just("outcome"), st.sampled_from(["transient", "permanent", "disconnect"])),
    st.tuples(st.just("restart")),
)


@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=30), per_minute=st.integers(1, 6),
       per_hour=st.integers(6, 20), interval=st.sampled_from([0, 500, 2000]))
def test_scheduler_invariants_hold_after_every_step(steps: list[tuple[Any, ...]], per_minute: int, per_hour: int,
                                                    interval: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp), steps, per_minute, per_hour, interval))


async def _run(tmp: Path, steps: list[tuple[Any, ...]], per_minute: int, per_hour: int, interval: int) -> None:
    limits = {"max_sends_per_minute": per_minute, "max_sends_per_hour": per_hour, "send_interval_ms": interval,
              "retry_base_backoff_ms": 1000, "retry_max_backoff_ms": 8000, "max_send_attempts": 3}
    store = MemoryStore()
    fh = build(tmp, store=store, **limits)
    await fh.hub.start(restore=False)
    iid = (await fh.hub.create_instance("shop", HOOK_URL, [])).id
    await fh.link(iid)
    delivered: list[tuple[int, str]] = []  # (time, key) across restarts
    violations: list[str] = []
    now_ms = fh.clock.now_ms()

    async def check_fifo(instance_id: str, _chat: str, text: str) -> None:
        now = hub_ref[0].clock.now_ms()
        items, _ = await store.list_items(instance_id, statuses=["queued"], limit=1000, offset=0)
        sending, _ = await store.list_items(instance_id, statuses=["sending"], limit=10, offset=0)
        current = sending[0]
        earlier_due = [i for i in items if i.seq < current.seq and i.next_attempt_at <= now]
        if earlier_due:
            violations.append(f"FIFO: {text} sent while {earlier_due[0].payload['message']} was due")

    hub_ref = [fh]
    fh.spy.on_send = check_fifo
    keys_enqueued: set[str] = set()

    for op in steps:
        if op[0] == "enqueue":
            for j in range(op[2]):
                key = f"k{(op[1] + j) % 15}"
                try:
                    await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": key},
                                         header_key=key)
                    keys_enqueued.add(key)
                except Conflict:
                    pass  # the key failed earlier: a replay is refused unless retry is asked
        elif op[0] == "advance":
            await fh.advance(op[1])
        elif op[0] == "outcome":
            await fh.world.fault(iid, "send_error", {"mode": op[1], "count": 1})
        elif op[0] == "restart":
            now_ms = fh.clock.now_ms()
            delivered += [(d.at_ms, d.text or "") for d in fh.world.phone(iid).deliveries]
            await fh.hub.stop()
            fh = build(tmp, store=store, start_ms=now_ms + 1, **limits)
            fh.spy.on_send = check_fifo
            hub_ref[0] = fh
            await fh.hub.start()
            await fh.advance(10)

        sends = delivered + [(d.at_ms, d.text or "") for d in fh.world.phone(iid).deliveries]
        times = sorted(t for t, _ in sends)
        assert ratelimit.max_in_any_window(times, ratelimit.MINUTE_MS) <= per_minute
        assert ratelimit.max_in_any_window(times, ratelimit.HOUR_MS) <= per_hour
        assert all(b - a >= interval for a, b in zip(times, times[1:], strict=False))
        sent_keys = [k for _, k in sends]
        assert len(sent_keys) == len(set(sent_keys)), "a key was sent twice"
        assert not violations, violations
        stats = await store.queue_stats(iid)
        assert set(stats.by_status) <= {"queued", "sent", "failed", "canceled", "uncertain"}, stats.by_status
        assert sum(stats.by_status.values()) == len(keys_enqueued)
    await fh.hub.stop()
