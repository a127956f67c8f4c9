"""Signed webhook bodies as a receiver sees them (in-process hub, loopback receiver).

A receiver written in Node often verifies ``x-wa-hub-signature`` over
``JSON.stringify(req.body)`` rather than the raw bytes; both must verify. The re-serialisation is
done by the machine's ``node`` when there is one; without it the test falls back to Python's
``json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))``, which is exactly
``JSON.stringify(JSON.parse(body))`` for bodies of strings, integers, booleans, nulls, lists and
objects without array-index keys, which is what these bodies hold.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import shutil
import subprocess

import pytest
from standardwebhooks import Webhook

from tests.conftest import HubClient
from tests.integration.webhook_helpers import create_linked, inbound, of_event, received, sent_message_id
from tests.support.receiver import Receiver
from wahub.runtime import signing

TEXT = "تأكيد الطلب ✅ 👍🏽"
SECRET = "global-secret-ü"
NODE = shutil.which("node")
RESTRINGIFY = ("let d='';process.stdin.setEncoding('utf8');process.stdin.on('data',c=>d+=c)"
               ".on('end',()=>process.stdout.write(JSON.stringify(JSON.parse(d))))")


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def restringify(body: bytes) -> bytes:
    """``JSON.stringify(JSON.parse(body))`` as UTF-8 bytes (node, or the documented fallback)."""
    if NODE is None:
        return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    done = subprocess.run([NODE, "-e", RESTRINGIFY], input=body, capture_output=True, timeout=30, check=True)
    return done.stdout


@pytest.mark.hub_settings(webhook_secret=SECRET, webhook_auth_token="receiver-token-123")
async def test_arabic_and_emoji_body_is_byte_identical_and_every_signature_verifies(
        hub_client: HubClient) -> None:
    """Report: Arabic and emoji in a customer's reply broke signature checks in the main app (the
    body was sent with ``\\u`` escapes, the app re-serialised it without). Now: the text travels as
    UTF-8 bytes, and the signature verifies over the raw body, over ``JSON.stringify`` of the
    parsed body, and as a Standard Webhooks signature; the bearer token comes along."""
    hc = hub_client
    with Receiver() as rx:
        iid = await create_linked(hc, "arabic", rx.url, events=["message"])
        await inbound(hc, iid, TEXT)
        [req] = await received(rx, lambda got: len(got) == 1)

    body = req.body
    assert TEXT.encode("utf-8") in body and b"\\u" not in body
    assert req.json["data"]["message"]["body"] == TEXT
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"] == "Bearer receiver-token-123"
    assert hmac.compare_digest(req.headers["x-wa-hub-signature"], _hex_hmac(SECRET, body))

    again = restringify(body)
    assert again == body, (again, body)
    assert hmac.compare_digest(req.headers["x-wa-hub-signature"], _hex_hmac(SECRET, again))

    wh = Webhook(base64.b64encode(SECRET.encode("utf-8")).decode("ascii"))
    headers = {k: req.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    parsed = wh.verify(body, headers)
    assert parsed["data"]["message"]["body"] == TEXT
    assert req.headers["webhook-id"].startswith("evt_")


@pytest.mark.skipif(NODE is None, reason="node is not installed; the fallback is exercised by the other test")
async def test_node_reserialisation_of_a_vote_with_arabic_options_verifies(hub_client: HubClient) -> None:
    """A ``vote_update`` carries the poll's caption and options as stored; with Arabic and emoji
    options the body still survives ``JSON.stringify`` byte for byte."""
    hc = hub_client
    options = ["تأكيد ✅", "إلغاء ❌"]
    with Receiver() as rx:
        iid = await create_linked(hc, "arabic-poll", rx.url, events=["vote_update"], secret="per-instance")
        r = await hc.client.post(f"/instances/{iid}/client/action/create-poll",
                                 json={"chatId": "201000000001", "caption": TEXT, "options": options})
        assert r.status_code == 202, r.text
        mid = await sent_message_id(hc, iid, r.json()["queueId"])
        r = await hc.client.post(f"/sandbox/instances/{iid}/votes", json={
            "pollMessageId": mid, "voter": "201000000001", "selectedOptions": [options[0]], "asHashes": True})
        assert r.status_code == 200, r.text
        [req] = await received(rx, lambda got: len(of_event(got, "vote_update")) == 1)
    assert req.json["data"]["vote"]["selectedOptions"] == [options[0]]
    assert req.json["data"]["caption"] == TEXT
    assert restringify(req.body) == req.body
    assert req.headers["x-wa-hub-signature"] == _hex_hmac("per-instance", req.body)


WHSEC = "whsec_" + base64.b64encode(b"\x00\x01standard-webhooks-key\xff").decode("ascii")


@pytest.mark.hub_settings(webhook_secret=SECRET)
async def test_per_instance_secret_overrides_the_global_one(hub_client: HubClient) -> None:
    """``webhook.secret`` of an instance replaces ``WEBHOOK_SECRET`` for both signatures; an
    instance without one signs with ``WEBHOOK_SECRET``. A ``whsec_`` secret is used as Standard
    Webhooks defines it, so the library takes it unchanged. No ``WEBHOOK_AUTH_TOKEN``: no
    ``Authorization`` header."""
    hc = hub_client
    with Receiver() as rx_global, Receiver() as rx_own, Receiver() as rx_whsec:
        plain = await create_linked(hc, "global-secret", rx_global.url, events=["message"])
        own = await create_linked(hc, "own-secret", rx_own.url, events=["message"], secret="instance-secret")
        std = await create_linked(hc, "whsec-secret", rx_whsec.url, events=["message"], secret=WHSEC)
        for iid in (plain, own, std):
            await inbound(hc, iid, TEXT)
        [g] = await received(rx_global, lambda got: len(got) == 1)
        [o] = await received(rx_own, lambda got: len(got) == 1)
        [w] = await received(rx_whsec, lambda got: len(got) == 1)

    assert g.headers["x-wa-hub-signature"] == _hex_hmac(SECRET, g.body)
    assert o.headers["x-wa-hub-signature"] == _hex_hmac("instance-secret", o.body)
    assert o.headers["x-wa-hub-signature"] != _hex_hmac(SECRET, o.body)
    assert "authorization" not in g.headers
    headers = ("webhook-id", "webhook-timestamp", "webhook-signature")
    Webhook(base64.b64encode(b"instance-secret").decode()).verify(o.body, {k: o.headers[k] for k in headers})
    Webhook(WHSEC).verify(w.body, {k: w.headers[k] for k in headers})
    assert w.headers["x-wa-hub-signature"] == _hex_hmac(WHSEC, w.body)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_serialisation_matches_node_json_stringify_on_awkward_values() -> None:
    """``signing.serialize`` against node on 3,000 random floats (all magnitudes), control
    characters, line separators, lone and paired surrogates, and array-index-like keys."""
    rng = random.Random(1)
    floats = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(3000)]
    floats += [1.0, 1e21, 1.5e-7, 1e-5, -0.0, 5e-324, 1.7976931348623157e308, 2.0**53]
    strings = [TEXT, "a\u2028b\u2029", "\x00\x01\x1f\x7f\b\f\n\r\t\"\\/", "\ud83d\ude00 \ud800 x",
               "\udc00\ud83d"]
    payload = {"b": 1, "10": 2, "2": 3, "02": 4, "-1": 5, "4294967295": 6, "4294967294": 7,
               "floats": floats, "strings": strings, "nested": {"k": [None, True, False, {"é": 1}]},
               "ms": 1_767_225_600_000}
    ours = signing.serialize(payload).encode("utf-8")
    assert restringify(ours) == ours
