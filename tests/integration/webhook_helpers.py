"""Helpers for webhook tests on the in-process hub: instances pointed at a loopback receiver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tests.conftest import HubClient
from tests.integration.outbox_helpers import link, state
from tests.support.polling import until
from tests.support.receiver import Received, Receiver

__all__ = ["link", "state"]  # re-exported for the webhook tests

T = TypeVar("T")




async def received(receiver: Receiver, predicate: Callable[[list[Received]], bool],
                   within_s: float = 15.0) -> list[Received]:
    """Wait (without blocking the event loop) until ``predicate(requests)``; returns the requests."""
    async def check() -> list[Received] | None:
        got = receiver.snapshot()
        return got if predicate(got) else None

    try:
        return await until(check, within_s)
    except TimeoutError:
        got = [r.body[:160] for r in receiver.snapshot()]
        raise TimeoutError(f"receiver: condition not met; got {got}") from None


def of_event(requests: list[Received], name: str) -> list[Received]:
    """The requests whose body is a ``name`` event."""
    return [r for r in requests if r.json.get("event") == name]


async def create(hc: HubClient, name: str, url: str | None, events: list[str] | None = None,
                 secret: str | None = None) -> str:
    """Create an instance with a webhook; returns its id."""
    webhook: dict[str, Any] = {"url": url}
    if events is not None:
        webhook["events"] = events
    if secret is not None:
        webhook["secret"] = secret
    r = await hc.client.post("/instances", json={"name": name, "webhook": webhook})
    assert r.status_code == 200, r.text
    return str(r.json()["instance"]["id"])


async def create_linked(hc: HubClient, name: str, url: str, events: list[str] | None = None,
                        secret: str | None = None) -> str:
    """Create and link an instance, then point its webhook at ``url``; returns its id.

    ``authenticated`` and ``ready`` pass every event filter (as in the existing wa-hub), so a
    receiver attached before linking gets them too; attaching it afterwards keeps a test's
    receiver to the events the test is about.
    """
    r = await hc.client.post("/instances", json={"name": name})
    assert r.status_code == 200, r.text
    iid = str(r.json()["instance"]["id"])
    await link(hc, iid)
    webhook: dict[str, Any] = {"url": url}
    if events is not None:
        webhook["events"] = events
    if secret is not None:
        webhook["secret"] = secret
    r = await hc.client.put(f"/instances/{iid}", json={"webhook": webhook})
    assert r.status_code == 200, r.text
    return iid





async def inbound(hc: HubClient, instance_id: str, text: str, *, message_id: str | None = None,
                  sender: str = "201000000009") -> str:
    """Inject an inbound text message into the sandbox; returns its message id."""
    body: dict[str, Any] = {"from": sender, "text": text}
    if message_id is not None:
        body["messageId"] = message_id
    r = await hc.client.post(f"/sandbox/instances/{instance_id}/messages", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["messageId"])


async def vote(hc: HubClient, instance_id: str, poll_message_id: str, voter: str, selected: list[str],
               timestamp: int, **extra: Any) -> None:
    """Inject a poll vote with an explicit timestamp (epoch ms)."""
    r = await hc.client.post(f"/sandbox/instances/{instance_id}/votes", json={
        "pollMessageId": poll_message_id, "voter": voter, "selectedOptions": selected, "timestamp": timestamp,
        **extra})
    assert r.status_code == 200, r.text


async def send_text(hc: HubClient, instance_id: str, text: str, chat: str = "201000000001") -> str:
    """Enqueue a text message; returns its queue id."""
    r = await hc.client.post(f"/instances/{instance_id}/client/action/send-message",
                             json={"chatId": chat, "message": text})
    assert r.status_code in (200, 202), r.text
    return str(r.json()["queueId"])


async def sent_message_id(hc: HubClient, instance_id: str, queue_id: str) -> str:
    """Wait until the outbox item is sent; returns its WhatsApp message id."""
    async def check() -> str | None:
        r = await hc.client.get(f"/instances/{instance_id}/messages/{queue_id}")
        assert r.status_code == 200, r.text
        item = r.json()["item"]
        return item["messageId"] if item["status"] == "sent" else None

    return await until(check)


async def sandbox_sent(hc: HubClient, instance_id: str) -> list[dict[str, Any]]:
    """What reached the simulated WhatsApp."""
    r = await hc.client.get(f"/sandbox/instances/{instance_id}/sent")
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def deliveries(hc: HubClient, instance_id: str, status: str | None = None) -> list[dict[str, Any]]:
    """Stored webhook events of an instance, oldest first."""
    params: dict[str, Any] = {"limit": 500}
    if status is not None:
        params["status"] = status
    r = await hc.client.get(f"/instances/{instance_id}/webhooks/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["events"]))


async def webhook_status(hc: HubClient, instance_id: str) -> dict[str, Any]:
    """The ``webhook`` section of the native status."""
    r = await hc.client.get(f"/instances/{instance_id}/status")
    assert r.status_code == 200, r.text
    return dict(r.json()["webhook"])


async def settled(hc: HubClient, instance_id: str) -> bool:
    """True when no stored event of the instance is waiting for delivery."""
    return await deliveries(hc, instance_id, "pending") == []
