"""Meta's calls to the public webhook route: handshake, signed notifications in, forged ones refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support import cloud_payloads as fx
from wahub.api import cloud as cloud_api
from wahub.api import errors as api_errors
from wahub.engines import base
from wahub.engines.cloud import webhook
from wahub.engines.cloud.account import CloudAccount
from wahub.engines.cloud.receiver import CloudWebhookReceiver

ACCOUNT = CloudAccount(phone_number_id=fx.PHONE_NUMBER_ID, waba_id=fx.WABA_ID, access_token=fx.ACCESS_TOKEN,
                       app_secret=fx.APP_SECRET, verify_token=fx.VERIFY_TOKEN)
URL = "/cloud/shop/webhook"
SIG = webhook.SIGNATURE_HEADER


class Hub:
    """Stands in for the runtime: the credentials store and the per-instance event sink."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, webhook.CloudEvent]] = []

    async def credentials(self, instance_id: str) -> CloudAccount | None:
        return ACCOUNT if instance_id == "shop" else None

    async def deliver(self, instance_id: str, event: webhook.CloudEvent) -> None:
        self.delivered.append((instance_id, event))


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    api_errors.install(app)
    app.include_router(cloud_api.router(CloudWebhookReceiver(hub.credentials, hub.deliver), max_body_bytes=64 * 1024))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        yield c


async def test_handshake_echoes_the_challenge_as_plain_text(client: httpx.AsyncClient) -> None:
    ok = await client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": fx.VERIFY_TOKEN,
                                       "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = await client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert bad.status_code == 403 and "verify_token" in bad.json()["error"]
    unknown = await client.get("/cloud/nope/webhook", params={"hub.mode": "subscribe"})
    assert unknown.status_code == 404


@pytest.mark.parametrize("payload", [fx.text(), fx.button_reply("Confirm"), fx.list_reply("Confirm"),
                                     fx.template_quick_reply("Confirm"), fx.statuses("sent", "delivered", "read"),
                                     fx.failed_outside_window()])
async def test_signed_notifications_reach_the_instance_s_sink(client: httpx.AsyncClient, hub: Hub,
                                                              payload: dict[str, object]) -> None:
    body, signature = fx.signed(payload)
    resp = await client.post(URL, content=body, headers={SIG: signature, "content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["events"] == len(hub.delivered) > 0
    assert {i for i, _ in hub.delivered} == {"shop"}


async def test_a_poll_reply_arrives_as_a_vote_with_the_option_text(client: httpx.AsyncClient, hub: Hub) -> None:
    body, signature = fx.signed(fx.button_reply("Confirm"))
    await client.post(URL, content=body, headers={SIG: signature})
    assert hub.delivered == [("shop", base.PollVote(poll_message_id=fx.POLL_WAMID, chat_id=f"{fx.CUSTOMER}@c.us",
                                                    voter=f"{fx.CUSTOMER}@c.us", timestamp=fx.TS * 1000,
                                                    selected_options=("Confirm",)))]


@pytest.mark.parametrize("forge", ["other-secret", "tampered", "missing"])
async def test_forged_or_missing_signatures_are_refused_and_deliver_nothing(client: httpx.AsyncClient, hub: Hub,
                                                                           forge: str) -> None:
    body, signature = fx.signed(fx.button_reply("Confirm"), secret="other-secret" if forge == "other-secret"
                                else fx.APP_SECRET)
    if forge == "tampered":
        body = body.replace(b"wamid.BTN1", b"wamid.BTN2")
    headers = {} if forge == "missing" else {SIG: signature}
    resp = await client.post(URL, content=body, headers=headers)
    assert resp.status_code == 403 and SIG in resp.json()["error"]
    assert hub.delivered == []


async def test_an_oversized_body_is_refused_before_it_is_read_whole(client: httpx.AsyncClient, hub: Hub) -> None:
    payload = fx.text("x" * 70_000)
    body, signature = fx.signed(payload)
    resp = await client.post(URL, content=body, headers={SIG: signature})
    assert resp.status_code == 413 and hub.delivered == []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream itself is counted
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    resp = await client.post(URL, content=chunks(), headers={SIG: signature})
    assert resp.status_code == 413 and hub.delivered == []


async def test_a_signed_body_that_is_not_json_is_acknowledged_without_events(client: httpx.AsyncClient,
                                                                             hub: Hub) -> None:
    body = b"not json"
    resp = await client.post(URL, content=body, headers={SIG: webhook.signature(fx.APP_SECRET, body)})
    assert resp.status_code == 200 and resp.json()["events"] == 0 and hub.delivered == []


async def test_an_unknown_instance_is_404(client: httpx.AsyncClient) -> None:
    body, signature = fx.signed(fx.text())
    assert (await client.post("/cloud/nope/webhook", content=body, headers={SIG: signature})).status_code == 404
