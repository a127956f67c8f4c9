"""An unmodified client of the existing wa-hub runs its whole flow against the real server, default settings.

create → qr → scan → send (no idempotency key) → poll → vote webhook verified the way a Node receiver
does (``JSON.stringify(JSON.parse(body))`` then HMAC) → logout → create again → a new QR.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from tests.compat import golden
from tests.support.receiver import Receiver, Reply
from tests.support.server import Server

SECRET = "old-hub-secret"
NAME = "WASP-flow.myshopify.com"
CHAT = "201000000001"


def js_stringify(value: Any) -> str:
    """``JSON.stringify`` of parsed JSON: no spaces, non-ASCII raw, control characters as lower-case ``\\u00xx``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def node_verifies(body: bytes, signature: str) -> bool:
    """What a Node receiver checks: HMAC-SHA256 over ``JSON.stringify(req.body)``."""
    expected = hmac.new(SECRET.encode(), js_stringify(json.loads(body)).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@pytest.mark.timeout(120)
def test_the_old_client_flow_runs_unchanged(tmp_path: Path) -> None:
    with Receiver() as rx, Server(tmp_path / "hub", env={"WEBHOOK_SECRET": SECRET, "SEND_INTERVAL_MS": "0"}) as hub:
        c = hub.client
        create = {"name": NAME, "webhook": {"url": rx.url, "events": ["message", "vote_update", "qr", "ready"]}}
        r = c.post("/instances", json=create)
        assert (r.status_code, r.json()["status"]) == (200, "success"), r.text
        iid = r.json()["instance"]["id"]

        qr = hub.wait_until(lambda: (x := c.get(f"/instances/{iid}/client/qr")).status_code == 200 and x.json())
        assert base64.b64decode(qr["qrCode"]["data"]["qr_code"]).startswith(b"\x89PNG")
        c.post(f"/sandbox/instances/{iid}/scan")
        hub.wait_until(lambda: c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["instanceStatus"]
                       == "ready")

        sent = c.post(f"/instances/{iid}/client/action/send-message",
                      json={"chatId": CHAT, "message": "Your order #1001 is confirmed"})
        assert sent.status_code == 202 and sent.json()["status"] == "success", sent.text
        assert {"instanceState", "queueDepth", "queueId", "message"} <= set(sent.json())
        poll = c.post(f"/instances/{iid}/client/action/create-poll",
                      json={"chatId": CHAT, "caption": "Confirm order #1001?", "options": ["Confirm", "Cancel"],
                            "multipleAnswers": False})
        assert poll.status_code == 202 and poll.json()["status"] == "success", poll.text

        hub.wait_until(lambda: c.get(f"/instances/{iid}/queue").json()["depth"] == 0)
        delivered = c.get(f"/sandbox/instances/{iid}/sent").json()["messages"]
        poll_id = next(m["messageId"] for m in delivered if m["kind"] == "poll")
        c.post(f"/sandbox/instances/{iid}/votes", json={"pollMessageId": poll_id, "voter": CHAT,
                                                        "selectedOptions": ["Confirm"]})
        reqs = rx.wait_for(lambda got: any(q.json["event"] == "vote_update" for q in got), timeout=30)
        vote = next(q for q in reqs if q.json["event"] == "vote_update")
        assert vote.json["data"]["vote"]["selectedOptions"] == ["Confirm"]
        assert node_verifies(vote.body, vote.headers["x-wa-hub-signature"])

        out = c.post(f"/instances/{iid}/client/action/logout")
        assert out.status_code == 200, out.text
        assert (out.json()["deleted"], out.json()["droppedFromOutbound"]) == (True, 0)
        assert iid not in [i["id"] for i in c.get("/instances").json()]

        again = c.post("/instances", json=create)
        assert again.status_code == 200, again.text
        qr2 = hub.wait_until(lambda: (x := c.get(f"/instances/{iid}/client/qr")).status_code == 200 and x.json())
        assert qr2["qrCode"]["data"]["qr_code"] and qr2["qrCode"]["data"]["qr_code"] != qr["qrCode"]["data"]["qr_code"]


@pytest.mark.timeout(120)
def test_the_old_client_flow_with_a_protected_receiver_and_an_event_filter(tmp_path: Path) -> None:
    env = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_PROTECTION_BYPASS": "vercel-bypass-1", "WEBHOOK_RETRY_BASE_MS": "50",
           "WEBHOOK_RETRY_MAX_MS": "200"}
    with Receiver() as rx, Server(tmp_path / "hub", env=env) as hub:
        rx.script.append(Reply(status=401))  # the protection layer refuses once (e.g. while it rotates)
        c = hub.client
        r = c.post("/instances", json={"name": NAME, "webhook": {"url": rx.url, "events": ["vote_update"]}})
        iid = r.json()["instance"]["id"]
        hub.wait_until(lambda: c.get(f"/instances/{iid}/client/qr").status_code == 200)
        c.post(f"/sandbox/instances/{iid}/scan")
        reqs = rx.wait_for(lambda got: {"authenticated", "ready"} <= {q.json["event"] for q in got}, timeout=10)
        assert all(q.headers.get("x-vercel-protection-bypass") == "vercel-bypass-1" for q in reqs)
        assert reqs[0].json["event"] == reqs[1].json["event"] == "authenticated"  # refused once, then delivered
        assert reqs[0].headers["webhook-id"] == reqs[1].headers["webhook-id"]
        assert {q.json["event"] for q in reqs} == {"authenticated", "ready"}  # the filter holds for the rest
        # The client widens its filter (PUT, old field names) and the ban arrives in the old shape.
        r = c.put(f"/instances/{iid}", json={"webhook": {"url": rx.url, "events": ["vote_update", "restricted",
                                                                                   "change_state"]}})
        assert r.status_code == 200, r.text
        c.post(f"/sandbox/instances/{iid}/faults", json={"kind": "temporary_ban"})
        reqs = rx.wait_for(lambda got: any(q.json["event"] == "restricted" for q in got), timeout=30)
        restricted = next(q.json["data"] for q in reqs if q.json["event"] == "restricted")
        assert isinstance(restricted["restrictedUntil"], str) and restricted["message"]
        reqs = rx.wait_for(lambda got: any(q.json["event"] == "change_state" for q in got), timeout=30)
        states = {q.json["data"]["status"] for q in reqs if q.json["event"] == "change_state"}
        assert states == {"TOS_BLOCK"} and states <= set(golden.OLD_WA_STATES)
