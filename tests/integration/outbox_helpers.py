"""Helpers for outbox tests on the in-process hub: link instances, poll conditions, read items."""

from __future__ import annotations

from typing import Any, TypeVar

from tests.conftest import HubClient
from tests.support.polling import until

T = TypeVar("T")




async def state(hc: HubClient, instance_id: str) -> str:
    """The instance's lifecycle state (API value)."""
    r = await hc.client.get(f"/instances/{instance_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["instance"]["state"])


async def create(hc: HubClient, name: str) -> str:
    """Create an instance (not linked: it shows a QR and sends nothing); returns its id."""
    r = await hc.client.post("/instances", json={"name": name})
    assert r.status_code == 200, r.text
    return str(r.json()["instance"]["id"])


async def link(hc: HubClient, instance_id: str) -> None:
    """Scan the instance's QR in the sandbox and wait until it is ready."""
    async def scanned() -> bool:
        r = await hc.client.post(f"/sandbox/instances/{instance_id}/scan")
        return r.status_code == 200

    await until(scanned)
    await until(lambda: _is(hc, instance_id, "ready"))


async def _is(hc: HubClient, instance_id: str, wanted: str) -> bool:
    return await state(hc, instance_id) == wanted


async def wait_state(hc: HubClient, instance_id: str, wanted: str, within_s: float = 10.0) -> None:
    """Wait until the instance is in ``wanted``."""
    await until(lambda: _is(hc, instance_id, wanted), within_s)


async def send(hc: HubClient, instance_id: str, key: str | None, chat: str = "201000000001",
               text: str = "hello", **extra: Any) -> Any:
    """POST send-message (with ``key`` as Idempotency-Key header when given); returns the response."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await hc.client.post(f"/instances/{instance_id}/client/action/send-message",
                                json={"chatId": chat, "message": text, **extra}, headers=headers)


async def item(hc: HubClient, instance_id: str, queue_id: str) -> dict[str, Any]:
    """One outbox item by queueId (API shape)."""
    r = await hc.client.get(f"/instances/{instance_id}/messages/{queue_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["item"])


async def item_status(hc: HubClient, instance_id: str, queue_id: str) -> str:
    """The status of one outbox item."""
    return str((await item(hc, instance_id, queue_id))["status"])


async def deliveries(hc: HubClient, instance_id: str) -> list[dict[str, Any]]:
    """What reached the simulated WhatsApp for this instance, oldest first."""
    r = await hc.client.get(f"/sandbox/instances/{instance_id}/sent")
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def fault(hc: HubClient, instance_id: str, kind: str, **params: Any) -> None:
    """Script a sandbox fault."""
    r = await hc.client.post(f"/sandbox/instances/{instance_id}/faults", json={"kind": kind, **params})
    assert r.status_code == 200, r.text
