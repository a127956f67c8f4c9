"""The queue API (DESIGN §3, §5): list by status, look up, cancel, retry, resend, clear, purge."""

from __future__ import annotations

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
)


async def _queue(hc: HubClient, iid: str, **params: object) -> dict[str, object]:
    r = await hc.client.get(f"/instances/{iid}/outbox", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _action(hc: HubClient, iid: str, queue_id: str, action: str) -> tuple[int, dict[str, object]]:
    r = await hc.client.post(f"/instances/{iid}/messages/{queue_id}/{action}")
    return r.status_code, dict(r.json())


async def _status_is(hc: HubClient, iid: str, queue_id: str, wanted: str) -> bool:
    return await item_status(hc, iid, queue_id) == wanted


async def test_list_by_status_is_paged_oldest_first(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")  # not linked: everything stays queued
    ids = []
    for i in range(7):
        r = await send(hc, iid, f"k{i}", text=f"m{i}")
        ids.append(r.json()["queueId"])
    code, _ = await _action(hc, iid, ids[3], "cancel")
    assert code == 200

    first = await _queue(hc, iid, status="queued", limit=4, offset=0)
    rest = await _queue(hc, iid, status="queued", limit=4, offset=4)
    assert first["total"] == rest["total"] == 6
    assert [i["queueId"] for i in first["items"]] == [ids[0], ids[1], ids[2], ids[4]]  # type: ignore[attr-defined]
    assert [i["queueId"] for i in rest["items"]] == [ids[5], ids[6]]  # type: ignore[attr-defined]
    assert first["depth"] == 6
    assert first["byStatus"] == {"queued": 6, "canceled": 1}
    both = await _queue(hc, iid, status="queued,canceled", limit=50)
    assert both["total"] == 7
    canceled = await _queue(hc, iid, status="canceled")
    assert [i["queueId"] for i in canceled["items"]] == [ids[3]]  # type: ignore[attr-defined]

    r = await hc.client.get(f"/instances/{iid}/outbox", params={"status": "lost"})
    assert r.status_code == 400
    assert "status" in r.json()["error"]
    r = await hc.client.get(f"/instances/{iid}/outbox", params={"limit": 0})
    assert r.status_code in (400, 422)


async def test_lookup_by_queue_id_and_by_idempotency_key(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")
    other = await create(hc, "other")
    r = await send(hc, iid, "order:42", text="your order")
    queue_id = r.json()["queueId"]

    by_id = await item(hc, iid, queue_id)
    r = await hc.client.get(f"/instances/{iid}/outbox", params={"idempotencyKey": "order:42"})
    by_key = r.json()["item"]
    assert by_id == by_key
    assert by_id["idempotencyKey"] == "order:42"
    assert by_id["status"] == "queued"
    assert by_id["payload"]["message"] == "your order"

    r = await hc.client.get(f"/instances/{iid}/outbox", params={"idempotencyKey": "nope"})
    assert r.status_code == 404
    assert (await hc.client.get(f"/instances/{iid}/messages/0123456789abcdef")).status_code == 404
    # A queueId of one instance is not visible through another.
    assert (await hc.client.get(f"/instances/{other}/messages/{queue_id}")).status_code == 404
    assert (await hc.client.get(f"/instances/{other}/outbox",
                                params={"idempotencyKey": "order:42"})).status_code == 404


async def test_cancel_a_queued_item(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")
    queue_id = (await send(hc, iid, "order:1")).json()["queueId"]

    code, body = await _action(hc, iid, queue_id, "cancel")
    assert code == 200
    assert body["item"]["status"] == "canceled"  # type: ignore[index]
    code, body = await _action(hc, iid, queue_id, "cancel")
    assert code == 409
    assert body["itemStatus"] == "canceled"
    # The key names a canceled message now: posting it again is refused unless a retry is asked.
    again = await send(hc, iid, "order:1")
    assert again.status_code == 409
    retried = await send(hc, iid, "order:1", retry=True)
    assert retried.status_code == 202
    assert retried.json()["queueId"] == queue_id
    assert await item_status(hc, iid, queue_id) == "queued"
    code, _ = await _action(hc, iid, queue_id, "explode")
    assert code == 404


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_retry_a_failed_item(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")
    await link(hc, iid)
    await fault(hc, iid, "send_error", mode="permanent", count=1)
    queue_id = (await send(hc, iid, "order:7", text="order 7")).json()["queueId"]
    await until(lambda: _status_is(hc, iid, queue_id, "failed"))
    failed = await item(hc, iid, queue_id)
    assert failed["errorReason"] == "invalid_recipient"

    code, body = await _action(hc, iid, queue_id, "retry")
    assert code == 200
    assert body["item"]["attempts"] == 0  # type: ignore[index]
    await until(lambda: _status_is(hc, iid, queue_id, "sent"))
    assert [d["text"] for d in await deliveries(hc, iid)] == ["order 7"]
    code, body = await _action(hc, iid, queue_id, "retry")
    assert code == 409
    assert body["itemStatus"] == "sent"


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_resend_or_close_an_uncertain_item(hub_client: HubClient) -> None:
    hc = hub_client
    hub = hc.hub
    iid = await create(hc, "shop")  # not linked yet, so the send loop does not run
    resend_id = (await send(hc, iid, "order:1", text="order 1")).json()["queueId"]
    close_id = (await send(hc, iid, "order:2", text="order 2")).json()["queueId"]
    # What a crash after the hand-over leaves behind, and the start-up recovery of it.
    now = hub.clock.now_ms()
    for _ in range(2):
        claimed = await hub.store.claim_next(iid, now)
        assert claimed is not None
        await hub.store.mark_handed_over(claimed, now)
        requeued, uncertain = await hub.store.recover_in_flight(now)
        assert (requeued, uncertain[-1].queue_id) == (0, claimed.queue_id)  # with any not reported yet

    listed = await _queue(hc, iid, status="uncertain")
    assert sorted(i["queueId"] for i in listed["items"]) == sorted([resend_id, close_id])  # type: ignore[attr-defined]
    replay = await send(hc, iid, "order:1", text="order 1")
    assert replay.status_code == 409
    assert replay.json()["itemStatus"] == "uncertain"

    code, body = await _action(hc, iid, resend_id, "resend")
    assert code == 200
    assert body["item"]["status"] == "queued"  # type: ignore[index]
    code, body = await _action(hc, iid, close_id, "close")
    assert code == 200
    assert body["item"]["status"] == "canceled"  # type: ignore[index]
    code, _ = await _action(hc, iid, close_id, "resend")
    assert code == 409

    await link(hc, iid)
    await until(lambda: _status_is(hc, iid, resend_id, "sent"))
    assert [d["text"] for d in await deliveries(hc, iid)] == ["order 1"]
    assert await item_status(hc, iid, close_id) == "canceled"


async def test_clear_the_queue(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")
    other = await create(hc, "other")
    for i in range(3):
        await send(hc, iid, f"k{i}")
    kept = (await send(hc, other, "k0")).json()["queueId"]

    r = await hc.client.delete(f"/instances/{iid}/queue")
    assert r.status_code == 200
    assert r.json()["cleared"] == 3
    after = await _queue(hc, iid)
    assert after["depth"] == 0
    assert after["byStatus"] == {"canceled": 3}
    assert await item_status(hc, other, kept) == "queued"
    r = await hc.client.delete(f"/instances/{iid}/queue")
    assert r.json()["cleared"] == 0


# Retention of half a second and a purge every 60 ms, so the periodic job is seen working.
@pytest.mark.hub_settings(idempotency_retention_days=0.5 / 86_400, purge_interval_minutes=0.001)
async def test_periodic_purge_removes_old_final_items_and_keeps_open_ones(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await create(hc, "shop")
    done = (await send(hc, iid, "order:old", text="old")).json()["queueId"]
    open_id = (await send(hc, iid, "order:open", text="open")).json()["queueId"]
    await _action(hc, iid, done, "cancel")

    async def purged() -> bool:
        r = await hc.client.get(f"/instances/{iid}/messages/{done}")
        return r.status_code == 404

    await until(purged, within_s=10)  # no call from the test: the hub's own periodic job did it
    assert await item_status(hc, iid, open_id) == "queued"
    # The key of a purged item names a new message again.
    fresh = await send(hc, iid, "order:old", text="old")
    assert fresh.status_code == 202
    assert fresh.json()["queueId"] != done
    assert fresh.json()["replay"] is False
    # Hub.purge is also callable directly and reports what it removed.
    removed = await hc.hub.purge()
    assert set(removed) >= {"outbox", "send_log", "events"}
    assert await item_status(hc, iid, open_id) == "queued"
