"""The main job end to end over HTTP only: a real `wa-hub serve` process and a loopback receiver.

Create an instance, fetch its QR, link it through the sandbox, send a poll and ten messages (two of
them share an idempotency key), inject a vote, and check what the receiver got and what reached the
simulated WhatsApp. The per-minute limit (6) is the real one: the 7th send must wait for the rolling
minute, so the test runs a little over a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from tests.support.receiver import Receiver
from tests.support.server import Server
from wahub.domain import ratelimit

SECRET = "whsec-test-secret-42"
INTERVAL_MS = 300
PER_MINUTE = 6
CAPTION = "تأكيد الطلب رقم ١٠٠١ ✅ 👍🏽"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_poll_messages_vote_and_webhooks(tmp_path: Path) -> None:
    with Receiver() as receiver, Server(tmp_path / "hub", env={
        "WEBHOOK_SECRET": SECRET, "SEND_INTERVAL_MS": str(INTERVAL_MS),
        "MAX_SENDS_PER_MINUTE_PER_INSTANCE": str(PER_MINUTE), "MAX_SENDS_PER_HOUR_PER_INSTANCE": "60",
        "SANDBOX_SEND_LATENCY_MS": "20"}) as hub:
        c = hub.client
        r = c.post("/instances", json={"name": "WASP-shop.myshopify.com", "webhook": {"url": receiver.url}})
        assert r.status_code == 200, r.text
        iid = r.json()["instance"]["id"]
        assert iid == "WASP-shop_myshopify_com"

        qr = hub.wait_until(lambda: (x := c.get(f"/instances/{iid}/client/qr")).status_code == 200 and x.json())
        png = base64.b64decode(qr["qrCode"]["data"]["qr_code"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["instanceStatus"] == "qr"

        assert c.post(f"/sandbox/instances/{iid}/scan", json={"phone": "201000000099"}).status_code == 200
        hub.wait_until(lambda: c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["instanceStatus"]
                       == "ready")
        me = c.get(f"/instances/{iid}/client/me").json()["me"]["data"]
        assert me["contactId"] == "201000000099"

        chat = "+20 100 000 0001"
        poll = c.post(f"/instances/{iid}/client/action/create-poll",
                      json={"chatId": chat, "caption": CAPTION, "options": ["Confirm", "Cancel"],
                            "multipleAnswers": False},
                      headers={"Idempotency-Key": "order:shop:1001:confirmPoll:v1"})
        assert poll.status_code == 202, poll.text
        assert poll.json()["status"] == "success" and poll.json()["queued"] is True
        poll_queue_id = poll.json()["queueId"]

        answers = []
        for i in range(10):
            key = "order:shop:1001:ack:v1" if i in (3, 4) else f"order:shop:{2000 + i}:ack:v1"
            body = {"chatId": "201000000001", "message": "Order 1001 confirmed" if i in (3, 4) else f"msg {i}",
                    "idempotencyKey": key}
            r = c.post(f"/instances/{iid}/client/action/send-message", json=body)
            assert r.status_code in (200, 202), r.text
            answers.append(r.json())
        assert answers[4]["replay"] is True
        assert answers[4]["queueId"] == answers[3]["queueId"]

        def sent() -> list[dict[str, object]]:
            return c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]

        deliveries = hub.wait_until(lambda: len(s := sent()) >= 10 and s, timeout=120, interval=0.25)
        poll_msg = next(d for d in deliveries if d["kind"] == "poll")
        assert poll_msg["caption"] == CAPTION
        assert poll_msg["chatId"] == "201000000001@c.us"

        # the poll key again, now that it was sent: 200 with the message id, no new send
        again = c.post(f"/instances/{iid}/client/action/create-poll",
                       json={"chatId": chat, "caption": CAPTION, "options": ["Confirm", "Cancel"]},
                       headers={"Idempotency-Key": "order:shop:1001:confirmPoll:v1"})
        assert again.status_code == 200, again.text
        assert again.json()["messageId"] == poll_msg["messageId"]
        assert again.json()["queueId"] == poll_queue_id

        assert c.post(f"/sandbox/instances/{iid}/votes",
                      json={"pollMessageId": poll_msg["messageId"], "voter": "201000000001",
                            "selectedOptions": ["Confirm"]}).status_code == 200
        receiver.wait_for(lambda reqs: any(r.json["event"] == "vote_update" for r in reqs), timeout=30)

        # exactly ten sends reached WhatsApp: the poll and nine distinct messages
        final = sent()
        assert len(final) == 10
        assert sum(1 for d in final if d["text"] == "Order 1001 confirmed") == 1
        times = sorted(int(str(d["at"])) for d in final)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= INTERVAL_MS, gaps
        assert ratelimit.max_in_any_window(times, 60_000) <= PER_MINUTE
        assert times[-1] - times[0] >= 60_000  # the limit really deferred the 7th send

        events = receiver.events()
        names = [e["event"] for e in events]
        assert "qr" in names and "ready" in names
        vote = receiver.events("vote_update")[0]["data"]
        assert vote["vote"]["selectedOptions"] == ["Confirm"]
        assert vote["vote"]["pollMessageId"] == poll_msg["messageId"]
        assert vote["idempotencyKey"] == "order:shop:1001:confirmPoll:v1"
        assert vote["chatId"] == "201000000001@c.us"
        assert vote["caption"] == CAPTION

        for req in receiver.requests:
            expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
            assert req.headers["x-wa-hub-signature"] == expected
            assert req.json["instanceId"] == iid
        assert CAPTION.encode() in next(r.body for r in receiver.requests if r.json["event"] == "vote_update")
