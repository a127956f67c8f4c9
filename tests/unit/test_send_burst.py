"""A burst on three instances with the default limits, for 13 simulated minutes, checked on the engine's
own stamps: windows, interval, duplicates, sends while not ready, and that no key vanished.

One instance's connection flaps, one is logged out halfway; 150 sends, 20 of them repeat a key.
"""

from __future__ import annotations

import random
from collections import Counter

from tests.support.fakehub import HOOK_URL, build
from wahub.domain import ratelimit
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus

SEC = 1000
MIN = 60 * SEC


async def test_150_send_burst_on_three_instances_keeps_every_promise_on_the_engine_stamps() -> None:
    fh = build(None, restart_backoff_ms=2000, max_restarts_per_window=50)
    await fh.hub.start(restore=False)
    ids = []
    for name in ("steady", "flappy", "leaving"):
        rt = await fh.hub.create_instance(name, HOOK_URL, [])
        await fh.link(rt.id)
        assert fh.state(rt.id) == State.READY
        ids.append(rt.id)
    steady, flappy, leaving = ids
    await fh.world.fault(flappy, "drop_after_ready", {"after_ms": 40 * SEC, "count": 6})

    rng = random.Random(11)
    keys: dict[str, str] = {}  # key -> instance
    for i in range(150):
        iid = ids[i % 3]
        key = f"order:{iid}:{i:03d}"
        keys[key] = iid
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": f"2010000{i:05d}", "message": f"m {key}"},
                                    header_key=key)
    # 20 duplicates: the same keys (and bodies) again, interleaved with the drain
    repeats = rng.sample(sorted(keys), 20)
    for n, key in enumerate(repeats):
        i = int(key.rsplit(":", 1)[1])
        res = await fh.hub.outbox.enqueue(keys[key], ItemKind.TEXT,
                                          {"chatId": f"2010000{i:05d}", "message": f"m {key}"}, header_key=key)
        assert res.replay
        await fh.advance(7 * SEC if n % 2 else 1 * SEC)

    for second in range(13 * 60):
        if second == 6 * 60:
            await fh.world.fault(leaving, "auth_failure", {})
        await fh.advance(SEC)
    assert fh.state(leaving) == State.LOGGED_OUT

    # windows and interval on the sandbox's stamps, per instance
    for iid in ids:
        times = [d.at_ms for d in fh.world.phones[iid].deliveries]
        assert ratelimit.max_in_any_window(times, MIN) <= 6, (iid, times)
        assert ratelimit.max_in_any_window(times, 60 * MIN) <= 60, iid
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert not gaps or min(gaps) >= 500, (iid, gaps)
    # no duplicates: each text reached WhatsApp at most once
    texts = Counter(d.text for iid in ids for d in fh.world.phones[iid].deliveries)
    assert texts and max(texts.values()) == 1
    # the engine was only ever called while ready
    assert fh.spy.calls and all(state == "ready" for _, state, _ in fh.spy.calls)
    # every key is sent, still queued, or reported (failed / uncertain webhooks): none vanished
    reported = {b["data"]["idempotencyKey"] for b in fh.hooks.bodies
                if b["event"] in ("message_failed", "message_uncertain")}
    counts: Counter[str] = Counter()
    for key, iid in keys.items():
        item = await fh.hub.outbox.get_item_by_key(iid, key)
        counts[item.status.value] += 1
        if item.status == ItemStatus.SENT:
            assert texts[f"m {key}"] == 1
        elif item.status != ItemStatus.QUEUED:
            assert key in reported, (key, item.status)
    assert counts[ItemStatus.SENT] >= 60
    assert sum(counts.values()) == 150
    per_instance = {iid: len(fh.world.phones[iid].deliveries) for iid in ids}
    print(f"burst: {dict(counts)} deliveries={per_instance}")
