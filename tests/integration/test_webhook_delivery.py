"""Webhook delivery field reports on the in-process hub (real SQLite file, real loopback receiver).

Timing settings are scaled down from production so each report runs in seconds; every test says
how. Waits poll a condition with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import pytest

from tests.conftest import HubClient
from tests.integration.webhook_helpers import (
    create,
    create_linked,
    deliveries,
    inbound,
    link,
    of_event,
    received,
    sandbox_sent,
    send_text,
    sent_message_id,
    settled,
    until,
    webhook_status,
)
from tests.support.receiver import Receiver, Reply
from tests.support.server import free_port


@pytest.mark.hub_settings(webhook_timeout_ms=1000, webhook_retry_base_ms=100, webhook_retry_max_ms=1000)
async def test_receiver_that_answers_only_after_the_timeout_gets_at_most_one_copy_more(
        hub_client: HubClient) -> None:
    """Report: the receiver answers 200 only after 40 s, longer than the 10 s timeout; the event was
    posted again and again. Scaled down 10x in time and kept in proportion (the answer comes 2.5x
    the timeout after the request): WEBHOOK_TIMEOUT_MS=1000 and a 2.5 s delay on every answer.
    Now: one retry at most, with the same ``webhook-id`` and the identical body, then a dead letter
    that can be replayed."""
    hc = hub_client
    with Receiver() as rx:
        rx.script = [Reply(200, delay_s=2.5) for _ in range(5)]
        iid = await create_linked(hc, "slow", rx.url, events=["message"])
        await inbound(hc, iid, "hello")

        dead = await until(lambda: deliveries(hc, iid, "dead"))
        got = rx.snapshot()
        assert len(got) == 2, [r.body for r in got]
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == dead[0]["eventId"]
        assert got[0].body == got[1].body
        assert dead[0]["attempts"] == 2
        assert dead[0]["lastError"].startswith("response timeout")
        assert (await webhook_status(hc, iid))["dead"] == 1


@pytest.mark.hub_settings(webhook_timeout_ms=1000, webhook_retry_base_ms=100, webhook_retry_max_ms=1000)
async def test_receiver_slow_once_gets_the_same_event_once_more_and_it_is_delivered(
        hub_client: HubClient) -> None:
    """The same report when only the first answer is late (2.5 s against a 1 s timeout): the retry
    carries the same event id and body and is delivered; nothing more is sent."""
    hc = hub_client
    with Receiver() as rx:
        rx.script = [Reply(200, delay_s=2.5)]
        iid = await create_linked(hc, "slow-once", rx.url, events=["message"])
        await inbound(hc, iid, "hello")

        await until(lambda: settled(hc, iid))
        [event] = await deliveries(hc, iid)
        got = rx.snapshot()
        assert event["status"] == "delivered" and event["attempts"] == 2
        assert [r.headers["webhook-id"] for r in got] == [event["eventId"]] * 2
        assert got[0].body == got[1].body


@pytest.mark.hub_settings(webhook_retry_base_ms=400, webhook_retry_max_ms=10_000)
async def test_receiver_failing_three_times_gets_the_event_on_the_fourth_try_with_growing_jittered_gaps(
        hub_client: HubClient) -> None:
    """Report: the receiver answered 500 three times, then 200. Now: delivered on the fourth try.
    Backoff with WEBHOOK_RETRY_BASE_MS=400 (production 1000): before retry n the wait lies in
    [d/2, d) with d = 400 * 2**(n-1) ms ("equal jitter"), so the gaps between the receiver's
    requests grow through [200, 400), [400, 800), [800, 1600) ms, plus one loopback request and a
    store write each; where in its window each gap falls is the jitter."""
    hc = hub_client
    with Receiver() as rx:
        rx.script = [Reply(500), Reply(500), Reply(500)]
        iid = await create_linked(hc, "flaky", rx.url, events=["message"])
        await inbound(hc, iid, "hello")

        await until(lambda: settled(hc, iid))
        got = rx.snapshot()
        [event] = await deliveries(hc, iid)
        assert event["status"] == "delivered" and event["attempts"] == 4
        assert len(got) == 4 and len({r.headers["webhook-id"] for r in got}) == 1
        assert len({r.body for r in got}) == 1
        gaps_ms = [(b.at - a.at) * 1000 for a, b in zip(got, got[1:], strict=False)]
        windows = [(400 * 2 ** n / 2, 400 * 2 ** n) for n in range(3)]
        slack_ms = 250  # one loopback request and a store write per attempt, on a shared machine
        for gap, (low, high) in zip(gaps_ms, windows, strict=True):
            assert low - 5 <= gap < high + slack_ms, (gaps_ms, windows)
        assert gaps_ms[0] < gaps_ms[2] and gaps_ms[1] < gaps_ms[2] + slack_ms, gaps_ms
        position = [round((gap - low) / (high - low), 2) for gap, (low, high) in zip(gaps_ms, windows, strict=True)]
        print(f"backoff gaps {[round(g) for g in gaps_ms]} ms; position in the jitter window {position}")
        assert len(set(position)) > 1, f"every gap at the same point of its window: {position}"


@pytest.mark.hub_settings(webhook_retry_base_ms=100)
async def test_receiver_answering_404_gets_no_retry_and_a_replay_reaches_the_fixed_url_once(
        hub_client: HubClient) -> None:
    """Report: the receiver's route was renamed and answered 404; wa-hub kept retrying. Now: no
    retry, a dead letter listed by the API and the status; after the URL is fixed with
    ``PUT /instances/{id}``, replaying it delivers it exactly once."""
    hc = hub_client
    with Receiver(default_status=404) as old, Receiver() as new:
        iid = await create_linked(hc, "moved", old.url, events=["message"])
        await inbound(hc, iid, "order 1001: please confirm")

        [dead] = await until(lambda: deliveries(hc, iid, "dead"))
        assert dead["attempts"] == 1 and dead["lastStatusCode"] == 404
        assert "not retried" in dead["lastError"]
        r = await hc.client.get(f"/instances/{iid}/webhooks/dead-letters")
        assert r.status_code == 200, r.text
        assert [e["eventId"] for e in r.json()["events"]] == [dead["eventId"]]
        status = await webhook_status(hc, iid)
        assert status["dead"] == 1 and status["backlog"] == 0 and status["lastStatusCode"] == 404
        assert status["lastError"] == dead["lastError"] and status["failing"] is True
        assert len(old.snapshot()) == 1

        r = await hc.client.put(f"/instances/{iid}", json={"webhook": {"url": new.url}})
        assert r.status_code == 200, r.text
        r = await hc.client.post(f"/instances/{iid}/webhooks/replay", json={"eventId": dead["eventId"]})
        assert r.status_code == 200 and r.json()["replayed"] == 1, r.text

        await until(lambda: settled(hc, iid))
        got = new.snapshot()
        assert [r.headers["webhook-id"] for r in got] == [dead["eventId"]]
        assert got[0].body == old.snapshot()[0].body
        assert len(old.snapshot()) == 1
        assert await deliveries(hc, iid, "dead") == []
        r = await hc.client.post(f"/instances/{iid}/webhooks/replay", json={"eventId": dead["eventId"]})
        assert r.status_code == 404, r.text
        status = await webhook_status(hc, iid)
        assert status["dead"] == 0 and status["failing"] is False and status["lastSuccessAt"] is not None


async def _pile_up_while_down(hc: HubClient, port: int) -> tuple[str, list[str]]:
    """Point an instance at a closed port, pile up 50 inbound messages while sending 10 texts."""
    iid = await create(hc, "down", f"http://127.0.0.1:{port}/hook")
    await link(hc, iid)
    texts = [f"m{i:02d}" for i in range(50)]
    for i, text in enumerate(texts):
        await inbound(hc, iid, text)
        if i % 5 == 4:
            await send_text(hc, iid, f"out {i // 5}")

    async def all_sent() -> bool:
        return len(await sandbox_sent(hc, iid)) == 10

    await until(all_sent)  # sending never paused while the receiver was down
    return iid, texts


async def _assert_in_stored_order_once(hc: HubClient, iid: str, rx: Receiver, texts: list[str]) -> None:
    got = rx.snapshot()
    stored = await deliveries(hc, iid)
    assert [r.headers["webhook-id"] for r in got] == [e["eventId"] for e in stored]
    assert [r.json["data"]["message"]["body"] for r in of_event(got, "message")] == texts
    assert len(of_event(got, "message_sent")) == 10


@pytest.mark.hub_settings(webhook_retry_base_ms=50, webhook_retry_max_ms=200, webhook_max_attempts=10_000,
                          send_interval_ms=0, max_sends_per_minute=1000, max_sends_per_hour=10_000)
async def test_receiver_down_while_50_events_pile_up_gets_all_in_order_when_back(
        hub_client: HubClient) -> None:
    """Report: the receiver was down for a while; events were lost or arrived out of order, and
    sending stalled. Scaled: retries every 50-200 ms (production 1 s-5 min) with attempts enough
    to outlast the outage. Now: sending goes on (10 texts reach the sandbox while it is down),
    the status shows the backlog, and once it is back all 50 messages arrive in order, each once,
    with every other event in stored order."""
    hc = hub_client
    port = free_port()
    iid, texts = await _pile_up_while_down(hc, port)

    status = await webhook_status(hc, iid)
    assert status["backlog"] >= 50 + 10 and status["delivered"] == 0, status
    assert status["failing"] is True and "Connect" in status["lastError"], status
    assert status["oldestPendingAt"] is not None and status["nextAttemptAt"] is not None

    with Receiver(port=port) as rx:
        await until(lambda: settled(hc, iid))
        await _assert_in_stored_order_once(hc, iid, rx, texts)
    status = await webhook_status(hc, iid)
    assert status["backlog"] == 0 and status["dead"] == 0 and status["failing"] is False
    assert status["lastSuccessAt"] is not None


@pytest.mark.hub_settings(webhook_retry_base_ms=20, webhook_retry_max_ms=40, webhook_max_attempts=2,
                          send_interval_ms=0, max_sends_per_minute=1000, max_sends_per_hour=10_000)
async def test_receiver_down_longer_than_the_retries_leaves_dead_letters_that_replay_in_order(
        hub_client: HubClient) -> None:
    """The same outage outlasting the retry schedule (WEBHOOK_MAX_ATTEMPTS=2): every event becomes a
    dead letter, sending still goes on, and one replay of all delivers them in order, each once."""
    hc = hub_client
    port = free_port()
    iid, texts = await _pile_up_while_down(hc, port)
    await until(lambda: settled(hc, iid))
    dead = await deliveries(hc, iid, "dead")
    assert len(dead) >= 60 and all(e["attempts"] == 2 for e in dead)

    with Receiver(port=port) as rx:
        r = await hc.client.post(f"/instances/{iid}/webhooks/replay")
        assert r.status_code == 200 and r.json()["replayed"] == len(dead), r.text
        await until(lambda: settled(hc, iid))
        assert await deliveries(hc, iid, "dead") == []
        await _assert_in_stored_order_once(hc, iid, rx, texts)


@pytest.mark.hub_settings(webhook_retry_base_ms=50)
async def test_message_ack_only_moves_forward_and_is_never_repeated(hub_client: HubClient) -> None:
    """Receipts arrive late, twice, or out of order after reconnects. The sandbox acks
    ``delivered`` by itself; then ``read``, a late ``delivered`` and ``read`` again are injected:
    exactly two ``message_ack`` webhooks, delivered then read."""
    hc = hub_client
    with Receiver() as rx:
        iid = await create_linked(hc, "acks", rx.url, events=["message_ack"])
        mid = await sent_message_id(hc, iid, await send_text(hc, iid, "your order shipped"))
        await received(rx, lambda got: len(got) == 1)
        for ack in ("read", "delivered", "read"):
            r = await hc.client.post(f"/sandbox/instances/{iid}/acks", json={"messageIds": [mid], "ack": ack})
            assert r.status_code == 200, r.text

        await until(lambda: settled(hc, iid))
        got = rx.snapshot()
        assert [(r.json["data"]["messageId"], r.json["data"]["ack"]) for r in got] == [
            (mid, "delivered"), (mid, "read")]
        assert len(await deliveries(hc, iid)) == 2


async def test_event_filter_is_per_instance_and_changes_with_put(hub_client: HubClient) -> None:
    """An instance that asks only for ``message`` stores and receives nothing else; another with no
    filter receives everything; after ``PUT`` with ``["message_sent"]`` only that event comes."""
    hc = hub_client
    with Receiver() as rx_only, Receiver() as rx_all:
        only = await create_linked(hc, "only-messages", rx_only.url, events=["message"])
        every = await create(hc, "everything", rx_all.url)
        await link(hc, every)
        for iid in (only, every):
            await inbound(hc, iid, "hi")
        await until(lambda: settled(hc, only))
        assert {r.json["event"] for r in rx_only.snapshot()} == {"message"}
        assert {e["event"] for e in await deliveries(hc, only)} == {"message"}
        await received(rx_all, lambda got: len(of_event(got, "message")) == 1)
        assert {"qr", "change_state", "ready", "message"} <= {r.json["event"] for r in rx_all.snapshot()}

        r = await hc.client.put(f"/instances/{only}", json={"webhook": {"events": ["message_sent"]}})
        assert r.status_code == 200, r.text
        await inbound(hc, only, "ignored now")
        queue_id = await send_text(hc, only, "sent now")
        await received(rx_only, lambda got: len(of_event(got, "message_sent")) == 1)
        await until(lambda: settled(hc, only))
        assert [r.json["event"] for r in rx_only.snapshot()] == ["message", "message_sent"]
        assert rx_only.snapshot()[-1].json["data"]["queueId"] == queue_id
