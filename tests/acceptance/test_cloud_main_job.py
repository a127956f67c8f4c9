"""The main job once more, with a Cloud API instance: a real `wa-hub serve` process, Graph served by
Stoplight Prism from Meta's own OpenAPI file (every request is validated against it), Meta's webhook
calls signed with the app secret, and a loopback receiver for wa-hub's webhooks.

Create a cloud instance → ready (the credentials check against Prism) → outside the 24-hour window a
poll without a template is refused (422) → the customer writes → the poll goes out as reply buttons,
messages with a repeated key go out once → the customer taps a button → ``vote_update`` with the
poll's order key and chat id at the receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import cloud_payloads as fx
from tests.support import cloud_spec
from tests.support.receiver import Receiver
from tests.support.server import Server
from wahub.engines.cloud.crypto import generate_key

SECRET = "whsec-cloud-test-secret"
CAPTION = "تأكيد الطلب رقم ١٠٠١ ✅"
KEY = "order:shop:1001:confirmPoll:v1"
CLOUD = {"phoneNumberId": fx.PHONE_NUMBER_ID, "wabaId": fx.WABA_ID, "accessToken": fx.ACCESS_TOKEN,
         "appSecret": fx.APP_SECRET, "verifyToken": fx.VERIFY_TOKEN}


def _now(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its message stamped now (Meta stamps the customer's message time)."""
    for message in payload["entry"][0]["changes"][0]["value"].get("messages", []):
        message["timestamp"] = str(int(time.time()))
    return payload


def _meta(hub: Server, iid: str, payload: dict[str, Any]) -> httpx.Response:
    """Post a notification as Meta does: signed with the app secret, no wa-hub API key."""
    body, signature = fx.signed(_now(payload))
    return httpx.post(f"{hub.url}/cloud/{iid}/webhook", content=body, timeout=30,
                      headers={"content-type": "application/json", "x-hub-signature-256": signature})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cloud_instance_poll_button_reply_and_webhooks(tmp_path: Path) -> None:
    with cloud_spec.prism(tmp_path / "prism.log") as graph_url, Receiver() as receiver, Server(tmp_path / "hub", env={
            "WEBHOOK_SECRET": SECRET, "SEND_INTERVAL_MS": "300", "WAHUB_CLOUD_CREDENTIALS_KEY": generate_key(),
            "WAHUB_CLOUD_GRAPH_URL": graph_url}) as hub:
        c = hub.client
        r = c.post("/instances", json={"name": "WASP-shop.myshopify.com", "webhook": {"url": receiver.url},
                                       "engine": "cloud", "cloud": CLOUD})
        assert r.status_code == 200, r.text
        assert fx.ACCESS_TOKEN not in r.text and fx.APP_SECRET not in r.text
        iid = r.json()["instance"]["id"]
        hub.wait_until(lambda: c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["instanceStatus"]
                       == "ready", timeout=60)
        # Meta's subscription handshake with the verify token
        shake = httpx.get(f"{hub.url}/cloud/{iid}/webhook", params={
            "hub.mode": "subscribe", "hub.verify_token": fx.VERIFY_TOKEN, "hub.challenge": "8675309"})
        assert (shake.status_code, shake.text) == (200, "8675309")

        poll_body = {"chatId": "+20 100 000 0001", "caption": CAPTION, "options": ["Confirm", "Cancel"]}
        outside = c.post(f"/instances/{iid}/client/action/create-poll", json=poll_body,
                         headers={"Idempotency-Key": KEY})
        assert outside.status_code == 422 and outside.json()["reason"] == "outside_service_window"

        assert _meta(hub, iid, fx.text("Hi, I just ordered")).status_code == 200
        receiver.wait_for(lambda reqs: any(q.json["event"] == "message" for q in reqs), timeout=30)

        poll = c.post(f"/instances/{iid}/client/action/create-poll", json=poll_body, headers={"Idempotency-Key": KEY})
        assert poll.status_code == 202, poll.text
        for key, text in (("order:shop:1001:ack:v1", "Order 1001 confirmed"), ("order:shop:1001:ack:v1",
                                                                               "Order 1001 confirmed"),
                          ("order:shop:1002:ack:v1", "Order 1002 confirmed")):
            m = c.post(f"/instances/{iid}/client/action/send-message",
                       json={"chatId": "201000000001", "message": text, "idempotencyKey": key})
            assert m.status_code in (200, 202), m.text

        def sent() -> list[dict[str, Any]]:
            return receiver.events("message_sent")

        hub.wait_until(lambda: len(sent()) >= 3, timeout=60, interval=0.1)
        poll_sent = next(e["data"] for e in sent() if e["data"]["idempotencyKey"] == KEY)
        assert poll_sent["chatId"] == "201000000001@c.us"
        assert sorted(e["data"]["idempotencyKey"] for e in sent()) == sorted(
            [KEY, "order:shop:1001:ack:v1", "order:shop:1002:ack:v1"])  # the repeated key went out once

        tap = fx.button_reply("Confirm", reply_to=poll_sent["messageId"])
        assert _meta(hub, iid, tap).status_code == 200
        receiver.wait_for(lambda reqs: any(q.json["event"] == "vote_update" for q in reqs), timeout=30)
        vote = receiver.events("vote_update")[0]["data"]
        assert vote["vote"]["selectedOptions"] == ["Confirm"]
        assert vote["vote"]["pollMessageId"] == poll_sent["messageId"]
        assert vote["idempotencyKey"] == KEY
        assert vote["chatId"] == "201000000001@c.us"
        assert vote["caption"] == CAPTION

        forged = httpx.post(f"{hub.url}/cloud/{iid}/webhook", content=fx.encode(tap), timeout=30,
                            headers={"x-hub-signature-256": "sha256=" + "0" * 64})
        assert forged.status_code == 403
        assert len(receiver.events("vote_update")) == 1

        for req in receiver.snapshot():
            assert req.headers["x-wa-hub-signature"] == hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
            assert req.json["instanceId"] == iid
        assert fx.ACCESS_TOKEN not in hub.log_text() and fx.APP_SECRET not in hub.log_text()
