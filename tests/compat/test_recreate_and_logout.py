"""Re-creating an instance reconnects or relinks it (200, as the existing wa-hub); logout never drops silently."""

from __future__ import annotations

import pytest

from tests.conftest import HubClient
from tests.integration.outbox_helpers import deliveries, link, send, wait_state
from tests.integration.webhook_helpers import of_event, received
from tests.support.polling import until
from tests.support.receiver import Receiver


async def _qr(hub_client: HubClient, iid: str) -> bool:
    return (await hub_client.client.get(f"/instances/{iid}/client/qr")).status_code == 200


async def test_posting_a_logged_out_instance_again_relinks_it_with_a_new_qr(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    await link(hub_client, "shop")
    await c.post("/sandbox/instances/shop/faults", json={"kind": "auth_failure"})  # unlinked from the phone
    await wait_state(hub_client, "shop", "logged_out")
    with Receiver() as rx:
        r = await c.post("/instances", json={"name": "shop", "webhook": {"url": rx.url}})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "success" and "scan" in r.json()["message"]
        await until(lambda: _qr(hub_client, "shop"))
        assert (await c.get("/instances/shop")).json()["instance"]["webhookUrl"] == rx.url
        await received(rx, lambda got: bool(of_event(got, "qr")))  # the new QR went to the new webhook
        ready = await c.post("/instances", json={"name": "shop"})
        assert ready.status_code == 200 and "Instance exists with status" in ready.json()["message"]


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_logout_deletes_like_the_old_hub_and_counts_what_it_dropped(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})  # never linked: sends stay queued
    for i in range(3):
        r = await c.post("/instances/shop/client/action/send-message", json={"chatId": "201000000001",
                                                                            "message": f"m{i}"})
        assert r.status_code == 202
    out = await c.post("/instances/shop/client/action/logout")
    assert out.status_code == 200, out.text
    body = out.json()
    assert (body["deleted"], body["purged"], body["droppedFromOutbound"]) == (True, True, 3)
    assert isinstance(body["purgedPaths"], list)
    assert (await c.get("/instances/shop")).status_code == 404
    again = await c.delete("/instances/shop")
    assert (again.status_code, again.json()["deleted"], again.json()["droppedFromOutbound"]) == (200, False, 0)


@pytest.mark.hub_settings(waapi_envelope=True)
async def test_with_the_waapi_envelope_logout_keeps_the_instance_and_its_queue(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    await c.post("/instances/shop/client/action/send-message", json={"chatId": "201000000001", "message": "m"})
    out = await c.post("/instances/shop/client/action/logout")
    assert out.json()["data"]["instanceStatus"] == "logged_out"
    assert (await c.get("/instances/shop/queue")).json()["depth"] == 1


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_a_key_sent_before_logout_and_create_is_a_replay_not_a_second_message(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    await link(hub_client, "shop")
    first = await send(hub_client, "shop", "order:1001:confirm", text="Confirm order #1001?")
    assert first.status_code == 202, first.text
    await until(lambda: _sent_count(hub_client, 1))
    assert (await c.post("/instances/shop/client/action/logout")).status_code == 200  # deletes, as the old hub
    await c.post("/instances", json={"name": "shop"})
    await link(hub_client, "shop")
    again = await send(hub_client, "shop", "order:1001:confirm", text="Confirm order #1001?")  # the app retries
    assert again.status_code == 200, again.text  # a replay of the item that was sent
    assert (again.json()["queueId"], again.json()["replay"]) == (first.json()["queueId"], True)
    assert again.json()["message"] == "Message already sent (same idempotency key)"
    other = await send(hub_client, "shop", "order:1002:confirm", text="Confirm order #1002?")
    assert other.status_code == 202
    await until(lambda: _sent_count(hub_client, 1))
    assert [m["text"] for m in await deliveries(hub_client, "shop")] == ["Confirm order #1002?"]


async def _sent_count(hub_client: HubClient, n: int) -> bool:
    return len(await deliveries(hub_client, "shop")) == n
