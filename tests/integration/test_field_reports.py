"""Field reports from the Node wa-hub, reproduced on the in-process hub (real SQLite file).

Each test is one report: what the merchant's app did, and what wa-hub must do about it.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.conftest import HubClient
from tests.integration.outbox_helpers import (
    create,
    deliveries,
    fault,
    item,
    item_status,
    link,
    send,
    until,
    wait_state,
)
from wahub.domain import ratelimit


@pytest.mark.hub_settings(restart_backoff_ms=600_000, send_interval_ms=0)
async def test_same_order_key_twice_while_disconnected_then_after_it_was_sent(hub_client: HubClient) -> None:
    """Report: the app posted an order's poll twice within a second while the phone was offline,
    and once more after it went out; the customer got two polls. Now: one item, one send."""
    hc = hub_client
    iid = await create(hc, "shop")
    await link(hc, iid)
    await fault(hc, iid, "disconnect")
    await wait_state(hc, iid, "disconnected")
    key = "order:shop.myshopify.com:1001:confirmPoll:v1"

    first, second = await asyncio.gather(send(hc, iid, key), send(hc, iid, key))
    third = await send(hc, iid, key)
    responses = [first, second, third]
    assert [r.status_code for r in responses] == [202, 202, 202], [r.text for r in responses]
    queue_ids = {r.json()["queueId"] for r in responses}
    assert len(queue_ids) == 1
    assert sorted(r.json()["replay"] for r in responses) == [False, True, True]
    assert all(r.json()["instanceState"] == "disconnected" for r in responses)
    assert await deliveries(hc, iid) == []

    r = await hc.client.post(f"/instances/{iid}/restart", json={"type": "soft"})
    assert r.status_code == 200, r.text
    queue_id = queue_ids.pop()
    await until(lambda: _status_is(hc, iid, queue_id, "sent"))

    again = await send(hc, iid, key)
    assert again.status_code == 200, again.text
    sent = await item(hc, iid, queue_id)
    assert again.json()["messageId"] == sent["messageId"]
    assert again.json()["queueId"] == queue_id
    delivered = await deliveries(hc, iid)
    assert [d["messageId"] for d in delivered] == [sent["messageId"]]


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_client_that_times_out_and_retries_during_a_slow_send_sends_once(hub_client: HubClient) -> None:
    """Report: a send took seconds, the app's request timed out, the app retried and the customer
    got the message twice. Now: a retry (even concurrent with the first request) is a replay."""
    hc = hub_client
    iid = await create(hc, "slow")
    await link(hc, iid)
    await fault(hc, iid, "slow_send", latency_ms=1500)

    first = await send(hc, iid, "order:1", text="order 1")
    assert first.status_code == 202, first.text
    queue_id = first.json()["queueId"]
    await until(lambda: _status_is(hc, iid, queue_id, "sending"))
    # The slow send is running; the client gave up on its request and retries, twice at once.
    retries = await asyncio.gather(send(hc, iid, "order:1", text="order 1"),
                                   send(hc, iid, "order:1", text="order 1"))
    for r in retries:
        assert r.status_code == 202, r.text
        assert r.json()["queueId"] == queue_id
        assert r.json()["replay"] is True
        assert r.json()["itemStatus"] == "sending"
    # A second order whose first request is still in flight when the retry arrives.
    pair = await asyncio.gather(send(hc, iid, "order:2", text="order 2"),
                                send(hc, iid, "order:2", text="order 2"))
    assert [r.status_code for r in pair] == [202, 202]
    assert pair[0].json()["queueId"] == pair[1].json()["queueId"]
    assert sorted(r.json()["replay"] for r in pair) == [False, True]

    second_id = pair[0].json()["queueId"]
    await until(lambda: _status_is(hc, iid, second_id, "sent"), within_s=15)
    assert await item_status(hc, iid, queue_id) == "sent"
    late = await send(hc, iid, "order:1", text="order 1")
    assert late.status_code == 200
    assert late.json()["messageId"] == (await item(hc, iid, queue_id))["messageId"]
    counts = Counter(d["text"] for d in await deliveries(hc, iid))
    assert counts == {"order 1": 1, "order 2": 1}


@pytest.mark.hub_settings(max_sends_per_minute=10, max_sends_per_hour=60, send_interval_ms=30,
                          max_queue_size=200)
async def test_a_big_batch_on_one_instance_neither_breaks_limits_nor_starves_another(
        hub_client: HubClient) -> None:
    """Report: a merchant imported 100 orders at once; another merchant's 10 confirmations waited
    behind them. Now: the big queue is held to its limits, the small one drains at once."""
    hc = hub_client
    big = await create(hc, "big")
    small = await create(hc, "small")
    await link(hc, big)
    await link(hc, small)

    responses = await asyncio.gather(
        *[send(hc, big, f"big:{i:03d}", text=f"big {i:03d}") for i in range(100)],
        *[send(hc, small, f"small:{i:02d}", text=f"small {i:02d}") for i in range(10)])
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202]

    async def drained(iid: str, n: int) -> bool:
        return len(await deliveries(hc, iid)) >= n

    await until(lambda: drained(small, 10), within_s=15)
    await until(lambda: drained(big, 10), within_s=15)
    small_sent = await deliveries(hc, small)
    big_sent = await deliveries(hc, big)
    # FIFO by enqueue order (the requests ran concurrently, so their order is the stored one).
    assert [d["text"] for d in small_sent] == (await _enqueue_order(hc, small))[:10]
    # The big instance: exactly its per-minute limit, FIFO, and the rest deferred, not failed.
    assert [d["text"] for d in big_sent] == (await _enqueue_order(hc, big))[:10]
    assert ratelimit.max_in_any_window([d["at"] for d in big_sent], ratelimit.MINUTE_MS) == 10
    r = await hc.client.get(f"/instances/{big}/status")
    status = r.json()
    assert status["queue"]["depth"] == 90
    assert status["queue"]["byStatus"].get("failed", 0) == 0
    limits = status["rateLimits"]
    assert limits["sendsPerMinute"] == {"current": 10, "max": 10, "limited": True}
    assert limits["nextAllowedReason"] == "minute_limit"
    assert limits["nextAllowedAt"] >= big_sent[0]["at"] + ratelimit.MINUTE_MS - 50
    # Not starved: the small instance finished while the big one still held 90 items.
    assert small_sent[-1]["at"] < limits["nextAllowedAt"] - 30_000


@pytest.mark.hub_settings(send_interval_ms=2000)
async def test_unresolvable_recipient_fails_at_once_and_the_next_message_goes_without_delay(
        hub_client: HubClient) -> None:
    """Report: a number that is not on WhatsApp was retried for minutes and blocked the orders
    behind it. Now: it fails at once with a reason; the next item is sent straight away."""
    hc = hub_client
    iid = await create(hc, "shop")
    await link(hc, iid)
    await fault(hc, iid, "unregistered", chatId="201000000099")

    bad = await send(hc, iid, "order:bad", chat="201000000099", text="to nobody")
    good = await send(hc, iid, "order:good", chat="201000000002", text="to somebody")
    assert bad.status_code == good.status_code == 202
    bad_id, good_id = bad.json()["queueId"], good.json()["queueId"]
    await until(lambda: _status_is(hc, iid, good_id, "sent"))

    failed = await item(hc, iid, bad_id)
    assert failed["status"] == "failed"
    assert failed["errorReason"] == "not_on_whatsapp"
    assert "not on WhatsApp" in failed["lastError"]
    assert failed["attempts"] == 1
    sent = await item(hc, iid, good_id)
    # Without delay: well inside the 2 s pacing interval a counted send would have imposed.
    assert sent["sentAt"] - failed["updatedAt"] < 1000
    assert [d["text"] for d in await deliveries(hc, iid)] == ["to somebody"]

    again = await send(hc, iid, "order:bad", chat="201000000099", text="to nobody")
    assert again.status_code == 409
    assert again.json()["itemStatus"] == "failed"
    assert "not on WhatsApp" in again.json()["error"]


async def _enqueue_order(hc: HubClient, instance_id: str) -> list[str]:
    r = await hc.client.get(f"/instances/{instance_id}/outbox", params={"limit": 500})
    return [i["payload"]["message"] for i in r.json()["items"]]


async def _status_is(hc: HubClient, instance_id: str, queue_id: str, wanted: str) -> bool:
    return await item_status(hc, instance_id, queue_id) == wanted
