"""Crash safety of the outbox (DESIGN §3.3): SIGKILL the real server while it drains.

The server drains 2,000 messages over 20 sandbox instances while it is killed with SIGKILL at
random moments (seeded; the seed is printed) and restarted, at least 20 times. The sandbox
appends every delivery to a file that survives the kills, so the test knows exactly what reached
"WhatsApp". After the last restart the server finishes the queue and the test asserts:

* every item ends ``sent`` or ``uncertain``; a ``sent`` item was delivered exactly once (with the
  message id the hub recorded); an ``uncertain`` item was delivered at most once and never again;
* no instance ever exceeded its per-minute or per-hour limit, counted from the delivery times
  across all restarts (so a crash loop that reset the windows would show up);
* evidence settles what a crash left open: a read receipt for every ``uncertain`` item that did reach
  the sandbox (under the id the hub chose before the call) turns it ``sent`` with that id, and no
  receipt makes anything go out again. Items that never reached it get no evidence and stay open.

The per-minute limit is set below what the pacing interval alone allows, so the limit binds and
the drain spans more than a minute: the second half of every instance's queue is only allowed
once the first half leaves the rolling window, after many restarts.

Window counting tolerance: deliveries are timed by the engine a few ms after the hand-over that
the limiter counts, and that delay varies under load; windows are therefore checked with
``WINDOW_SLACK_MS`` less than their length. A reset window would show up as twice the limit.

Set ``WAHUB_CRASH_SEED`` to replay a run.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import Server
from wahub.domain import ratelimit

INSTANCES = 20
PER_INSTANCE = 100
RESTARTS = 22
PER_MINUTE = 55
PER_HOUR = 1_000
INTERVAL_MS = 700
LATENCY_MS = 25
WINDOW_SLACK_MS = 300


def _env(delivery_log: Path) -> dict[str, str]:
    return {
        "MAX_SENDS_PER_MINUTE_PER_INSTANCE": str(PER_MINUTE),
        "MAX_SENDS_PER_HOUR_PER_INSTANCE": str(PER_HOUR),
        "SEND_INTERVAL_MS": str(INTERVAL_MS),
        "SEND_JITTER_MS": "0",
        "SANDBOX_SEND_LATENCY_MS": str(LATENCY_MS),
        "SANDBOX_DELIVERY_LOG": str(delivery_log),
        "SANDBOX_AUTO_ACK": "false",
        "MAX_QUEUE_SIZE": str(PER_INSTANCE * 2),
        "MAX_RESTARTS_PER_WINDOW": "1000",
        "RESTORE_STAGGER_MS": "0",
        "LOG_LEVEL": "warning",
        # the receipts come after the whole crash loop and drain, which can outlast the default window
        "UNCERTAIN_EVIDENCE_WINDOW_SECONDS": "3600",
    }


def _deliveries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _items(server: Server, instance_id: str, status: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        params: dict[str, Any] = {"limit": 500, "offset": offset}
        if status:
            params["status"] = status
        resp = server.client.get(f"/instances/{instance_id}/outbox", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items.extend(page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return items


def _open_count(server: Server, ids: list[str]) -> int:
    total = 0
    for iid in ids:
        resp = server.client.get(f"/instances/{iid}/outbox", params={"limit": 1})
        total += resp.json()["depth"]
    return total


def _all_ready(server: Server, ids: list[str]) -> bool:
    states = {rt["id"]: rt["state"] for rt in server.client.get("/instances").json()}
    return all(states.get(i) == "ready" for i in ids)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_while_draining_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("WAHUB_CRASH_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"\ncrash test seed: {seed} (replay with WAHUB_CRASH_SEED={seed})")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    delivery_log = tmp_path / "deliveries.jsonl"
    server = Server(data_dir, env=_env(delivery_log))
    ids: list[str] = []
    try:
        server.start()
        # 1. Instances, all linked once (the linked sessions persist in the data dir).
        for n in range(INSTANCES):
            resp = server.client.post("/instances", json={"name": f"crash-{n:02d}"})
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["instance"]["id"])
        # 2. The whole queue, before any instance is ready (nothing drains yet).
        keys: dict[str, str] = {}  # key -> instance id
        for i in range(PER_INSTANCE):
            for iid in ids:
                key = f"order:{iid}:{i:04d}"
                resp = server.client.post(f"/instances/{iid}/client/action/send-message",
                                          json={"chatId": f"2010000{i:05d}@c.us", "message": f"m {key}"},
                                          headers={"Idempotency-Key": key})
                assert resp.status_code == 202, resp.text
                keys[key] = iid
        for iid in ids:
            server.wait_until(lambda iid=iid: server.client.post(f"/sandbox/instances/{iid}/scan").status_code
                              == 200, timeout=30)
        server.wait_until(lambda: _all_ready(server, ids), timeout=30)

        # 3. Crash loop: SIGKILL at a random moment of the drain, restart, repeat.
        kills = 0
        while kills < RESTARTS:
            time.sleep(rng.uniform(0.2, 3.5))  # the random moment of the crash (not a wait for a condition)
            server.kill()
            kills += 1
            server.start(timeout=60)
        print(f"crash test: {kills} SIGKILLs and restarts; draining the rest")

        # 4. Let it finish: the per-minute limit makes the tail take up to about a minute.
        server.wait_until(lambda: _all_ready(server, ids), timeout=60)
        server.wait_until(lambda: _open_count(server, ids) == 0, timeout=300, interval=1.0)

        # 5. Check every item against the delivery log.
        deliveries = _deliveries(delivery_log)
        by_text = Counter(d["text"] for d in deliveries)
        delivery_of = {d["text"]: d for d in deliveries}
        assert set(by_text) <= {f"m {k}" for k in keys}, "a delivery that no item asked for"
        statuses: Counter[str] = Counter()
        uncertain_delivered = 0
        for iid in ids:
            items = _items(server, iid)
            assert len(items) == PER_INSTANCE
            uncertain = {i["queueId"] for i in _items(server, iid, "uncertain")}
            for item in items:
                statuses[item["status"]] += 1
                text = f"m {item['idempotencyKey']}"
                sent_times = by_text[text]
                if item["status"] == "sent":
                    assert sent_times == 1, f"{item['idempotencyKey']} sent {sent_times} times"
                    assert delivery_of[text]["messageId"] == item["messageId"]
                elif item["status"] == "uncertain":
                    assert item["queueId"] in uncertain
                    assert sent_times <= 1, f"uncertain {item['idempotencyKey']} sent {sent_times} times"
                    uncertain_delivered += sent_times
                else:
                    pytest.fail(f"{item['idempotencyKey']} ended {item['status']}: {item['lastError']}")

        # 5b. Evidence: a read receipt for every delivered message. An uncertain item sent under an id
        # the engine chose (stored before the call) becomes sent; the others stay uncertain.
        delivered_uncertain = [(iid, i) for iid in ids for i in _items(server, iid, "uncertain")
                               if by_text[f"m {i['idempotencyKey']}"]]
        for iid, i in delivered_uncertain:
            mid = delivery_of[f"m {i['idempotencyKey']}"]["messageId"]
            r = server.client.post(f"/sandbox/instances/{iid}/acks", json={"messageIds": [mid], "ack": "read"})
            assert r.status_code == 200, r.text

        def reconciled_items() -> list[dict[str, Any]]:
            afters = [server.client.get(f"/instances/{iid}/messages/{i['queueId']}").json()["item"]
                      for iid, i in delivered_uncertain]
            return [a for a in afters if a["status"] == "sent"]

        try:
            server.wait_until(lambda: len(reconciled_items()) == len(delivered_uncertain), timeout=60,
                              interval=0.5)
        except TimeoutError:
            pass  # reported and asserted below
        reconciled = reconciled_items()
        print(f"crash test evidence: {len(reconciled)} of {len(delivered_uncertain)} delivered uncertain items "
              f"reconciled to sent by a receipt; {statuses['uncertain'] - len(reconciled)} stay uncertain "
              f"(never delivered, so no evidence can come)")
        assert len(reconciled) == len(delivered_uncertain), "a delivered uncertain item ignored its receipt"
        for after in reconciled:
            assert after["messageId"] == delivery_of[f"m {after['idempotencyKey']}"]["messageId"]
        assert _deliveries(delivery_log) == deliveries, "evidence made something go out again"

        # 6. Rolling windows, counted from what reached WhatsApp, across every restart.
        times: dict[str, list[int]] = defaultdict(list)
        for d in deliveries:
            times[d["instanceId"]].append(d["at"])
        worst_minute = max(ratelimit.max_in_any_window(ts, ratelimit.MINUTE_MS - WINDOW_SLACK_MS)
                           for ts in times.values())
        worst_hour = max(ratelimit.max_in_any_window(ts, ratelimit.HOUR_MS - WINDOW_SLACK_MS)
                         for ts in times.values())
        print(f"crash test counts: items={len(keys)} deliveries={len(deliveries)} sent={statuses['sent']} "
              f"uncertain={statuses['uncertain']} (delivered {uncertain_delivered}, not delivered "
              f"{statuses['uncertain'] - uncertain_delivered}) restarts={kills} "
              f"worst_minute={worst_minute}/{PER_MINUTE} worst_hour={worst_hour}/{PER_HOUR}")
        assert statuses["sent"] + statuses["uncertain"] == INSTANCES * PER_INSTANCE
        assert len(deliveries) == statuses["sent"] + uncertain_delivered
        assert worst_minute <= PER_MINUTE
        assert worst_hour <= PER_HOUR
    finally:
        server.stop()
        server.client.close()
