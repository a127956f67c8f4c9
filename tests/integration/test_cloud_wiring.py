"""A Cloud API instance through the public HTTP API, beside a sandbox instance in the same hub.

Graph is an in-memory httpx transport here (the contract against Meta's spec is
``test_cloud_contract.py``; the end-to-end run against Prism is ``tests/acceptance/test_cloud_main_job.py``).
Everything is observed where a user sees it: HTTP answers, the requests Graph received, the
webhook events stored for delivery, the database row.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from tests.support import cloud_payloads as fx
from tests.support.polling import until
from tests.support.server import API_KEY
from wahub.engines.cloud.crypto import generate_key
from wahub.engines.cloud.engine import CloudEngine
from wahub.engines.sandbox import SandboxEngine
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub
from wahub.store.sql import SqlStore
from wahub.web.app import create_app

pytestmark = pytest.mark.timeout(60)

HOOK = "http://127.0.0.1:9/hook"
CLOUD = {"phoneNumberId": fx.PHONE_NUMBER_ID, "wabaId": fx.WABA_ID, "accessToken": fx.ACCESS_TOKEN,
         "appSecret": fx.APP_SECRET, "verifyToken": fx.VERIFY_TOKEN}
CHAT = f"{fx.CUSTOMER}@c.us"
TEMPLATE = {"name": "order_confirmation", "language": "ar", "bodyParameters": ["Sara", "#1001"]}


class Graph(httpx.AsyncBaseTransport):
    """Answers the credentials check and sends like Graph; keeps every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"id": fx.PHONE_NUMBER_ID, "display_phone_number": "+1 555-078-3881",
                                             "verified_name": "Shop"})
        n = sum(1 for r in self.requests if r.method == "POST")
        return httpx.Response(200, json={"messaging_product": "whatsapp", "contacts": [{"wa_id": fx.CUSTOMER}],
                                         "messages": [{"id": f"wamid.SENT{n}"}]})

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


class Setup:
    def __init__(self, hub: Hub, client: httpx.AsyncClient, graph: Graph) -> None:
        self.hub, self.client, self.graph = hub, client, graph

    async def events(self, iid: str, name: str) -> list[dict[str, Any]]:
        stored = await self.hub.store.list_events(iid, status=None, limit=200)
        return [json.loads(e.body)["data"] for e in reversed(stored) if e.event == name]

    async def webhook(self, iid: str, payload: dict[str, Any]) -> httpx.Response:
        body, signature = fx.signed(payload)
        return await self.client.post(f"/cloud/{iid}/webhook", content=body,  # no API key: Meta signs instead
                                      headers={"x-hub-signature-256": signature, "authorization": ""})


async def _setup(tmp_path: Path, **overrides: Any) -> AsyncIterator[Setup]:
    graph = Graph()
    settings = make_settings(tmp_path, send_interval_ms=0, **overrides)
    hub = build_hub(settings, rng=random.Random(7), cloud_transport=graph)
    await hub.start()
    transport = httpx.ASGITransport(app=create_app(hub, manage_hub=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        try:
            yield Setup(hub, client, graph)
        finally:
            await hub.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Setup]:
    async for s in _setup(tmp_path, cloud_credentials_key=generate_key()):
        yield s


@pytest.fixture
async def keyless(tmp_path: Path) -> AsyncIterator[Setup]:
    async for s in _setup(tmp_path):
        yield s


async def _ready(env: Setup, iid: str) -> None:
    async def ready() -> bool:
        r = await env.client.get(f"/instances/{iid}/client/status")
        return bool(r.json()["clientStatus"]["instanceStatus"] == "ready")

    await until(ready, within_s=15)


async def _create_cloud(env: Setup, name: str = "shop-cloud", **extra: Any) -> str:
    r = await env.client.post("/instances", json={"name": name, "webhook": {"url": HOOK}, "engine": "cloud",
                                                  "cloud": {**CLOUD, **extra}})
    assert r.status_code == 200, r.text
    iid = str(r.json()["instance"]["id"])
    await _ready(env, iid)
    return iid


async def test_without_a_credentials_key_a_cloud_instance_is_refused_naming_the_setting(keyless: Setup) -> None:
    r = await keyless.client.post("/instances", json={"name": "shop", "engine": "cloud", "cloud": CLOUD})
    assert r.status_code == 400 and "WAHUB_CLOUD_CREDENTIALS_KEY" in r.json()["error"]
    assert (await keyless.client.get("/instances")).json() == []


@pytest.mark.parametrize(("body", "field"), [
    ({"engine": "cloud", "cloud": {**CLOUD, "accessToken": ""}}, "cloud.accessToken"),
    ({"engine": "cloud", "cloud": {k: v for k, v in CLOUD.items() if k != "verifyToken"}}, "cloud.verifyToken"),
    ({"engine": "cloud", "cloud": {**CLOUD, "phoneNumberId": "not-digits"}}, "cloud.phoneNumberId"),
    ({"engine": "cloud"}, "cloud"),
    ({"engine": "telegram"}, "engine"),
    ({"cloud": CLOUD}, "cloud"),  # credentials for a sandbox instance
])
async def test_bad_cloud_input_is_a_400_naming_the_field_and_creates_nothing(env: Setup, body: dict[str, Any],
                                                                             field: str) -> None:
    r = await env.client.post("/instances", json={"name": "shop", **body})
    assert r.status_code == 400 and field in r.json()["error"], r.text
    assert fx.ACCESS_TOKEN not in r.text
    assert (await env.client.get("/instances")).json() == []


async def test_a_cloud_and_a_sandbox_instance_run_side_by_side_and_secrets_never_come_back(
        env: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    iid = await _create_cloud(env)
    sandbox = await env.client.post("/instances", json={"name": "shop-sandbox", "webhook": {"url": HOOK}})
    assert sandbox.status_code == 200
    assert isinstance(env.hub.instances[iid].engine, CloudEngine)
    assert isinstance(env.hub.instances["shop-sandbox"].engine, SandboxEngine)
    listed = await env.client.get("/instances")
    assert {i["id"]: i["engine"] for i in listed.json()} == {iid: "cloud", "shop-sandbox": "sandbox"}
    assert env.hub.instances[iid].phone == "15550783881"
    # the credentials check went to Graph with the token in the header only
    check = env.graph.requests[0]
    assert (check.method, check.url.path) == ("GET", f"/v23.0/{fx.PHONE_NUMBER_ID}")
    assert check.headers["authorization"] == f"Bearer {fx.ACCESS_TOKEN}"
    # nothing the API answers, nothing logged, nothing stored in clear text holds a secret
    answers = [(await env.client.get(p)).text for p in (f"/instances/{iid}", "/instances",
                                                         f"/instances/{iid}/client/status")]
    store = env.hub.store
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        sealed = (await conn.execute(sa.text("SELECT sealed FROM cloud_credentials"))).scalar_one()
    logs = capsys.readouterr()
    assert "cloud_credentials_stored" in logs.out + logs.err  # the log is really looked at
    for secret in (fx.ACCESS_TOKEN, fx.APP_SECRET, fx.VERIFY_TOKEN):
        assert all(secret not in a for a in answers)
        assert secret not in sealed
        assert secret not in logs.out + logs.err
    # the same phone number cannot become a second instance; nothing is left of the attempt
    again = await env.client.post("/instances", json={"name": "shop-two", "engine": "cloud", "cloud": CLOUD})
    assert again.status_code == 409
    assert (await env.client.get("/instances/shop-two")).status_code == 404


async def test_renewed_credentials_are_used_from_the_next_start(env: Setup) -> None:
    iid = await _create_cloud(env)
    renewed = await env.client.post("/instances", json={"name": "shop-cloud", "engine": "cloud",
                                                        "cloud": {**CLOUD, "accessToken": "EAArenewed456"}})
    assert renewed.status_code == 200 and "EAArenewed456" not in renewed.text
    bad = await env.client.post("/instances", json={"name": "shop-cloud", "cloud": {**CLOUD, "wabaId": ""}})
    assert bad.status_code == 400 and "cloud.wabaId" in bad.json()["error"]
    assert (await env.client.post(f"/instances/{iid}/restart", json={"type": "hard"})).status_code in (200, 202)
    await until(lambda: _async(env.graph.requests[-1].headers["authorization"] == "Bearer EAArenewed456"))
    await _ready(env, iid)


async def test_outside_the_window_only_a_template_poll_is_accepted_and_a_reply_opens_it(env: Setup) -> None:
    iid = await _create_cloud(env)
    send = f"/instances/{iid}/client/action/send-message"
    poll = f"/instances/{iid}/client/action/create-poll"
    text = await env.client.post(send, json={"chatId": CHAT, "message": "Your order shipped"})
    assert text.status_code == 422 and text.json()["reason"] == "outside_service_window"
    buttons = await env.client.post(poll, json={"chatId": CHAT, "caption": "Confirm #1001?",
                                                "options": ["Confirm", "Cancel"]})
    assert buttons.status_code == 422 and "template" in buttons.json()["error"]
    bad = await env.client.post(poll, json={"chatId": CHAT, "caption": "Confirm?", "options": ["Confirm", "Cancel"],
                                            "template": {"name": "order_confirmation"}})
    assert bad.status_code == 400 and "language" in bad.json()["error"]
    templated = await env.client.post(poll, json={"chatId": CHAT, "caption": "Confirm #1001?",
                                                  "options": ["Confirm", "Cancel"], "template": TEMPLATE},
                                      headers={"Idempotency-Key": "order:1001:confirm"})
    assert templated.status_code == 202, templated.text
    sent = await until(lambda: _sent_of(env, iid, "order:1001:confirm"))
    assert env.graph.sent()[0]["type"] == "template"
    assert env.graph.sent()[0]["template"]["name"] == "order_confirmation"
    assert [p["text"] for p in env.graph.sent()[0]["template"]["components"][0]["parameters"]] == ["Sara", "#1001"]
    assert len(env.graph.sent()) == 1  # nothing refused was sent

    # the customer taps the template's quick-reply button: the poll's vote, and the window opens
    tap = fx.template_quick_reply("Confirm", reply_to=sent)
    tap["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    assert (await env.webhook(iid, tap)).status_code == 200
    votes = await until(lambda: env.events(iid, "vote_update"))
    assert votes[0]["vote"]["selectedOptions"] == ["Confirm"]
    assert votes[0]["idempotencyKey"] == "order:1001:confirm" and votes[0]["chatId"] == CHAT
    again = await env.client.post(send, json={"chatId": CHAT, "message": "Thank you!"})
    assert again.status_code == 202, again.text
    await until(lambda: _async(len(env.graph.sent()) == 2))
    assert env.graph.sent()[1] == {"messaging_product": "whatsapp", "recipient_type": "individual",
                                   "to": fx.CUSTOMER, "type": "text",
                                   "text": {"body": "Thank you!", "preview_url": False}}
    # a replay of the sent poll's key is answered as before, whatever the window
    replay = await env.client.post(poll, json={"chatId": CHAT, "caption": "Confirm #1001?",
                                               "options": ["Confirm", "Cancel"], "template": TEMPLATE},
                                   headers={"Idempotency-Key": "order:1001:confirm"})
    assert replay.status_code == 200 and replay.json()["messageId"] == sent


async def test_a_failed_status_fails_the_sent_item_with_message_failed(env: Setup) -> None:
    iid = await _create_cloud(env)
    opened = fx.text("hello")
    opened["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    assert (await env.webhook(iid, opened)).status_code == 200
    assert [m["message"]["body"] for m in await env.events(iid, "message")] == ["hello"]
    r = await env.client.post(f"/instances/{iid}/client/action/send-message",
                              json={"chatId": CHAT, "message": "Your order shipped", "idempotencyKey": "ship:1"})
    assert r.status_code == 202, r.text
    mid = await until(lambda: _sent_of(env, iid, "ship:1"))
    delivered = await env.webhook(iid, fx.status("delivered", message_id=mid))
    assert delivered.status_code == 200
    failed = fx.failed_outside_window()
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = mid
    assert (await env.webhook(iid, failed)).status_code == 200
    events = await until(lambda: env.events(iid, "message_failed"))
    assert events[0]["idempotencyKey"] == "ship:1" and events[0]["messageId"] == mid
    assert (events[0]["code"], events[0]["reason"]) == (131047, "outside_service_window")
    item = (await env.client.get(f"/instances/{iid}/outbox", params={"idempotencyKey": "ship:1"})).json()["item"]
    assert item["status"] == "failed"
    # a forged call changes nothing
    body, _ = fx.signed(fx.status("read", message_id=mid))
    forged = await env.client.post(f"/cloud/{iid}/webhook", content=body, headers={"x-hub-signature-256": "sha256=0"})
    assert forged.status_code == 403


async def _sent_of(env: Setup, iid: str, key: str) -> str | None:
    item = await env.hub.outbox.get_item_by_key(iid, key)
    return item.message_id if item.status.value == "sent" else None


async def _async(value: bool) -> bool:
    return value
