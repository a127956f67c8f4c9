"""The burst of ``tests/unit/test_send_burst.py`` against the real ``wa-hub serve`` in real time: three
instances, 150 sends with 20 repeated keys, one flapping connection and one logout, checked on the
sandbox's durable delivery log (the engine's stamps). The per-minute limit is 30 so it ends in ~2 min."""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import Server
from wahub.domain import ratelimit

PER_MINUTE = 30
INTERVAL_MS = 500


def _deliveries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_burst_on_three_instances_keeps_every_promise_in_real_time(tmp_path: Path) -> None:
    log = tmp_path / "deliveries.jsonl"
    env = {"MAX_SENDS_PER_MINUTE_PER_INSTANCE": str(PER_MINUTE), "SEND_INTERVAL_MS": str(INTERVAL_MS),
           "SANDBOX_SEND_LATENCY_MS": "30", "SANDBOX_DELIVERY_LOG": str(log), "SANDBOX_AUTO_ACK": "false",
           "RESTART_BACKOFF_MS": "1000", "MAX_RESTARTS_PER_WINDOW": "50", "LOG_LEVEL": "warning"}
    started = time.monotonic()
    with Server(tmp_path / "data", env=env) as server:
        c = server.client
        ids = [c.post("/instances", json={"name": n}).json()["instance"]["id"] for n in ("steady", "flappy", "leaving")]
        for iid in ids:
            server.wait_until(lambda iid=iid: c.post(f"/sandbox/instances/{iid}/scan").status_code == 200)
        server.wait_until(lambda: all(c.get(f"/instances/{i}").json()["instance"]["state"] == "ready" for i in ids))
        steady, flappy, leaving = ids
        assert c.post(f"/sandbox/instances/{flappy}/faults",
                      json={"kind": "drop_after_ready", "after_ms": 15_000, "count": 4}).status_code == 200
        assert c.post(f"/sandbox/instances/{flappy}/faults", json={"kind": "disconnect"}).status_code == 200

        keys: dict[str, str] = {}
        for i in range(150):
            iid = ids[i % 3]
            key = f"order:{iid}:{i:03d}"
            keys[key] = iid
            r = c.post(f"/instances/{iid}/client/action/send-message",
                       json={"chatId": f"2010000{i:05d}", "message": f"m {key}"}, headers={"Idempotency-Key": key})
            assert r.status_code == 202, r.text
        for key in random.Random(5).sample(sorted(keys), 20):
            i = int(key.rsplit(":", 1)[1])
            r = c.post(f"/instances/{keys[key]}/client/action/send-message",
                       json={"chatId": f"2010000{i:05d}", "message": f"m {key}"}, headers={"Idempotency-Key": key})
            assert r.status_code in (200, 202) and r.json()["replay"] is True, r.text

        server.wait_until(lambda: len([d for d in _deliveries(log) if d["instanceId"] == leaving]) >= 30,
                          timeout=120, interval=0.5)
        assert c.post(f"/sandbox/instances/{leaving}/faults", json={"kind": "auth_failure"}).status_code == 200

        def drained() -> bool:
            return all(c.get(f"/instances/{i}/queue", params={"limit": 1}).json()["depth"] == 0
                       for i in (steady, flappy))

        server.wait_until(drained, timeout=240, interval=1.0)
        deliveries = _deliveries(log)
        statuses: Counter[str] = Counter()
        for key, iid in keys.items():
            statuses[c.get(f"/instances/{iid}/queue", params={"idempotencyKey": key}).json()["item"]["status"]] += 1

    times: dict[str, list[int]] = defaultdict(list)
    for d in deliveries:
        times[d["instanceId"]].append(d["at"])
    worst = max(ratelimit.max_in_any_window(ts, 60_000) for ts in times.values())
    gaps = [b - a for ts in times.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)]
    texts = Counter(d["text"] for d in deliveries)
    print(f"\nrealtime burst: {len(deliveries)} deliveries in {time.monotonic() - started:.0f} s, "
          f"worst rolling minute {worst}/{PER_MINUTE}, min gap {min(gaps)} ms, statuses {dict(statuses)}")
    assert worst <= PER_MINUTE
    assert min(gaps) >= INTERVAL_MS
    assert max(texts.values()) == 1
    assert sum(statuses.values()) == 150
    assert set(statuses) <= {"sent", "queued"}  # the logged-out instance keeps its rest queued
    assert statuses["sent"] == len(deliveries)
