"""Every inbound kind end to end over HTTP: the sandbox control of a real `wa-hub serve` process injects it,
the loopback receiver gets its webhook with the documented fields (docs/webhooks.md).

Report: media arrived as ``type: "chat"`` with an empty body, and reactions, edits, deletes and
contact cards gave no webhook at all; a quoted reply lost the quoted message's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Receiver
from tests.support.server import Server

CUSTOMER = "201000000001"
LID = "99887766554433@lid"
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Mona Adel\nTEL;type=CELL;waid=201000000002:+20 100 000 0002\nEND:VCARD"
ORDER_KEY = "order:shop.myshopify.com:1001:confirmPoll:v1"


def _inject(hub: Server, iid: str, what: str, body: dict[str, Any]) -> dict[str, Any]:
    r = hub.client.post(f"/sandbox/instances/{iid}/{what}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_inbound_kind_reaches_the_receiver_with_its_fields(tmp_path: Path) -> None:
    with Receiver() as rx, Server(tmp_path / "hub", env={"SEND_INTERVAL_MS": "0"}) as hub:
        c = hub.client
        r = c.post("/instances", json={"name": "kinds", "webhook": {"url": rx.url, "events": [
            "message", "message_reaction", "message_edit", "message_revoke", "vote_update"]}})
        assert r.status_code == 200, r.text
        iid = r.json()["instance"]["id"]
        hub.wait_until(lambda: c.post(f"/sandbox/instances/{iid}/scan", json={}).status_code == 200)
        hub.wait_until(lambda: c.get(f"/instances/{iid}/client/status").json()["clientStatus"]["instanceStatus"]
                       == "ready")

        msg = lambda body: _inject(hub, iid, "messages", {"from": CUSTOMER, **body})["messageId"]  # noqa: E731
        ids = {
            "chat": msg({"text": "hello", "messageId": "3EB0CHAT"}),
            "image": msg({"type": "image", "caption": "parcel arrived broken", "mimetype": "image/jpeg"}),
            "video": msg({"type": "video", "mimetype": "video/mp4"}),
            "audio": msg({"type": "audio", "mimetype": "audio/mpeg"}),
            "ptt": msg({"type": "ptt", "mimetype": "audio/ogg; codecs=opus"}),
            "document": msg({"type": "document", "mimetype": "application/pdf", "filename": "invoice-1001.pdf",
                             "caption": "my invoice"}),
            "sticker": msg({"type": "sticker", "mimetype": "image/webp"}),
            "vcard": msg({"type": "vcard", "vCards": [VCARD]}),
            "multi_vcard": msg({"type": "multi_vcard", "vCards": [VCARD, VCARD.replace("Mona", "Omar")]}),
            "location": msg({"type": "location", "location": {"latitude": 30.0444, "longitude": 31.2357,
                                                              "name": "Tahrir Square", "address": "Cairo"}}),
        }
        reply = msg({"text": "yes please", "quotedMsgId": "3EB0CHAT", "quotedMsgBody": "hello"})
        # a person known by a hidden-number id: the first message tells the phone, later ones do not
        first_lid = _inject(hub, iid, "messages", {"from": LID, "fromAlt": CUSTOMER, "text": "from my lid"})
        later_lid = _inject(hub, iid, "messages", {"from": LID, "text": "again"})
        reaction = _inject(hub, iid, "reactions", {"from": LID, "messageId": ids["chat"], "reaction": "👍"})
        _inject(hub, iid, "reactions", {"from": CUSTOMER, "messageId": ids["chat"], "reaction": ""})
        _inject(hub, iid, "edits", {"from": CUSTOMER, "messageId": ids["chat"], "text": "actually CANCEL my order"})
        _inject(hub, iid, "revokes", {"from": CUSTOMER, "messageId": ids["image"]})

        poll = c.post(f"/instances/{iid}/client/action/create-poll", headers={"Idempotency-Key": ORDER_KEY},
                      json={"chatId": CUSTOMER, "caption": "Confirm order #1001?", "options": ["Confirm", "Cancel"]})
        assert poll.status_code == 202, poll.text
        queue_id = poll.json()["queueId"]
        poll_id = hub.wait_until(lambda: (item := c.get(f"/instances/{iid}/messages/{queue_id}").json()["item"])
                                 ["status"] == "sent" and item["messageId"])
        _inject(hub, iid, "votes", {"pollMessageId": poll_id, "voter": LID, "decryptFailed": True,
                                    "timestamp": 1_767_225_600_000})

        # authenticated and ready pass every filter (as in the existing wa-hub): the rest are the ones asked for
        asked = lambda reqs: [r for r in reqs if r.json["event"] not in ("authenticated", "ready")]  # noqa: E731
        got = asked(rx.wait_for(lambda reqs: len(asked(reqs)) >= 18, timeout=60))
        assert len(got) == 18, [r.body[:100] for r in got]
        messages = {m["id"]: m for m in (r.json["data"]["message"] for r in got if r.json["event"] == "message")}

        for kind, mid in ids.items():
            assert messages[mid]["type"] == kind, mid
            assert messages[mid]["hasMedia"] is (kind in ("image", "video", "audio", "ptt", "document", "sticker"))
        image = messages[ids["image"]]
        assert (image["caption"], image["body"], image["mimetype"]) == (
            "parcel arrived broken", "parcel arrived broken", "image/jpeg")
        assert image["from"] == CUSTOMER and image["chatId"] == f"{CUSTOMER}@c.us" and image["fromMe"] is False
        assert messages[ids["ptt"]]["mimetype"] == "audio/ogg; codecs=opus" and messages[ids["ptt"]]["body"] == ""
        assert messages[ids["document"]]["filename"] == "invoice-1001.pdf"
        assert messages[ids["vcard"]]["vCards"] == [VCARD] and messages[ids["vcard"]]["body"] == VCARD
        assert len(messages[ids["multi_vcard"]]["vCards"]) == 2
        assert messages[ids["location"]]["location"] == {"latitude": 30.0444, "longitude": 31.2357,
                                                         "name": "Tahrir Square", "address": "Cairo"}
        assert messages[ids["chat"]]["location"] is None and messages[ids["chat"]]["vCards"] == []
        assert messages[ids["chat"]]["hasQuotedMsg"] is False
        quoted = messages[reply]
        assert (quoted["hasQuotedMsg"], quoted["quotedMsgId"], quoted["quotedMsgBody"]) == (True, "3EB0CHAT", "hello")
        assert messages[first_lid["messageId"]]["fromAlt"] == f"{CUSTOMER}@c.us"
        later = messages[later_lid["messageId"]]
        assert later["from"] == LID and later["fromAlt"] == f"{CUSTOMER}@c.us"  # remembered, not told

        added, removed = (r.json["data"]["reaction"] for r in got if r.json["event"] == "message_reaction")
        assert (added["id"], added["msgId"], added["reaction"], added["removed"]) == (
            reaction["messageId"], ids["chat"], "👍", False)
        assert added["senderId"] == LID and added["fromAlt"] == f"{CUSTOMER}@c.us"
        assert removed["reaction"] == "" and removed["removed"] is True and removed["fromAlt"] == LID

        [edit] = [r.json["data"] for r in got if r.json["event"] == "message_edit"]
        assert edit["originalMessageId"] == ids["chat"] and edit["newBody"] == "actually CANCEL my order"
        assert edit["message"]["chatId"] == f"{CUSTOMER}@c.us" and edit["message"]["from"] == CUSTOMER
        [revoke] = [r.json["data"] for r in got if r.json["event"] == "message_revoke"]
        assert revoke["originalMessageId"] == ids["image"] and revoke["message"]["fromId"] == f"{CUSTOMER}@c.us"

        [vote] = [r.json["data"] for r in got if r.json["event"] == "vote_update"]
        assert vote["decryptFailed"] is True and vote["vote"]["selectedOptions"] is None
        assert vote["vote"]["pollMessageId"] == poll_id and vote["idempotencyKey"] == ORDER_KEY
        assert vote["chatId"] == f"{CUSTOMER}@c.us" and vote["voterPhone"] == CUSTOMER
        assert c.get(f"/instances/{iid}/polls/{poll_id}/votes").json()["votes"] == []  # no choice was recorded

        for bad, field in (({"type": "gif", "from": CUSTOMER}, "type"),
                           ({"type": "location", "from": CUSTOMER, "location": {"latitude": 91, "longitude": 0}},
                            "location.latitude"),
                           ({"type": "vcard", "from": CUSTOMER}, "vCards")):
            r = c.post(f"/sandbox/instances/{iid}/messages", json=bad)
            assert r.status_code == 400 and field in r.text, r.text
        r = c.post(f"/sandbox/instances/{iid}/reactions", json={"from": CUSTOMER, "reaction": "👍"})
        assert r.status_code == 400 and "messageId" in r.text, r.text
