"""Poll votes as ``vote_update`` webhooks (in-process hub, real SQLite file, loopback receiver).

Votes are injected through the sandbox API with explicit timestamps (epoch ms), as WhatsApp
reports them; copies and late arrivals are what reconnects produce in the field.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubClient
from tests.integration.webhook_helpers import (
    create_linked,
    deliveries,
    received,
    settled,
    until,
    vote,
)
from tests.support.receiver import Receiver

ORDER_KEY = "order:shop.myshopify.com:1001:confirmPoll:v1"
CUSTOMER = "201000000001"


async def _poll(hc: HubClient, iid: str) -> tuple[str, str]:
    """Send the order-confirmation poll; returns (queueId, WhatsApp message id) once it is sent."""
    r = await hc.client.post(f"/instances/{iid}/client/action/create-poll",
                             headers={"Idempotency-Key": ORDER_KEY},
                             json={"chatId": CUSTOMER, "caption": "Confirm order #1001?",
                                   "options": ["Confirm", "Cancel"], "multipleAnswers": False})
    assert r.status_code == 202, r.text
    queue_id = r.json()["queueId"]

    async def message_id() -> str | None:
        r = await hc.client.get(f"/instances/{iid}/messages/{queue_id}")
        item = r.json()["item"]
        return item["messageId"] if item["status"] == "sent" else None

    return queue_id, await until(message_id)


def _votes(rx: Receiver) -> list[dict[str, Any]]:
    return [r.json["data"] for r in rx.snapshot() if r.json["event"] == "vote_update"]


@pytest.mark.hub_settings(webhook_retry_base_ms=50)
async def test_vote_copy_change_retraction_and_late_copy_give_exactly_three_webhooks(
        hub_client: HubClient) -> None:
    """Report: one customer's vote arrived as Confirm, Confirm again, Cancel, a retraction and a
    late copy of the first Confirm; the app saw five webhooks and confirmed an order the customer
    had cancelled. Now: exactly three, Confirm, Cancel and the empty selection, in that order."""
    hc = hub_client
    with Receiver() as rx:
        iid = await create_linked(hc, "votes", rx.url, events=["vote_update"])
        queue_id, poll_id = await _poll(hc, iid)
        t0 = 1_767_225_600_000
        for selected, ts in ((["Confirm"], t0), (["Confirm"], t0), (["Cancel"], t0 + 1000),
                             ([], t0 + 2000), (["Confirm"], t0)):
            await vote(hc, iid, poll_id, CUSTOMER, selected, ts)

        assert len(await deliveries(hc, iid)) == 3  # duplicates and stale copies are never stored
        await until(lambda: settled(hc, iid))
        votes = _votes(rx)
        assert [v["vote"]["selectedOptions"] for v in votes] == [["Confirm"], ["Cancel"], []]
        assert [v["vote"]["timestamp"] for v in votes] == [t0, t0 + 1000, t0 + 2000]
        first = votes[0]
        assert first["vote"] == {"voter": CUSTOMER, "selectedOptions": ["Confirm"], "timestamp": t0,
                                 "pollMessageId": poll_id}
        assert first["chatId"] == f"{CUSTOMER}@c.us" and first["idempotencyKey"] == ORDER_KEY
        assert first["queueId"] == queue_id and first["caption"] == "Confirm order #1001?"
        assert first["options"] == ["Confirm", "Cancel"] and first["pollKnown"] is True

        r = await hc.client.get(f"/instances/{iid}/polls/{poll_id}/votes")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["poll"]["idempotencyKey"] == ORDER_KEY
        assert [(v["voter"], v["selectedOptions"], v["timestamp"]) for v in body["votes"]] == [
            (f"{CUSTOMER}@c.us", [], t0 + 2000)]


@pytest.mark.hub_settings(webhook_retry_base_ms=50)
async def test_hashed_lid_and_unknown_poll_votes_are_delivered_with_what_is_known(
        hub_client: HubClient) -> None:
    """whatsmeow reports options as SHA-256 hashes and voters as ``@lid`` ids: the hashes resolve
    to option text from wa-hub's record of the poll, the raw ``@lid`` id and the phone travel
    along. A vote for a poll wa-hub does not know is delivered too, marked ``pollKnown: false``.
    ``GET .../polls/{messageId}/votes`` returns every voter's latest vote."""
    hc = hub_client
    lid = "123456789012345@lid"
    with Receiver() as rx:
        iid = await create_linked(hc, "hashed", rx.url, events=["vote_update"])
        _, poll_id = await _poll(hc, iid)
        t0 = 1_767_225_600_000
        await vote(hc, iid, poll_id, lid, ["Cancel"], t0, asHashes=True,
                   voterAlt="201000000002@s.whatsapp.net")
        await vote(hc, iid, poll_id, CUSTOMER, ["Confirm"], t0 + 5, asHashes=True)
        await vote(hc, iid, "3EB0FFFFFFFFFFFFFFFF", "201000000003", ["Confirm"], t0 + 9)
        await vote(hc, iid, "3EB0EEEEEEEEEEEEEEEE", "201000000004", ["Yes"], t0 + 9, asHashes=True)

        await received(rx, lambda got: len(got) == 4)
        by_lid, by_phone, unknown, unknown_hashed = _votes(rx)
        assert by_lid["vote"]["selectedOptions"] == ["Cancel"] and by_lid["vote"]["voter"] == lid
        assert by_lid["voterLid"] == lid and by_lid["voterPhone"] == "201000000002"
        assert by_lid["idempotencyKey"] == ORDER_KEY and by_lid["chatId"] == f"{CUSTOMER}@c.us"
        assert by_phone["vote"]["selectedOptions"] == ["Confirm"] and "voterLid" not in by_phone
        assert unknown["pollKnown"] is False and unknown["vote"]["selectedOptions"] == ["Confirm"]
        assert unknown["idempotencyKey"] is None and unknown["chatId"] == "201000000003@c.us"
        assert unknown["vote"]["pollMessageId"] == "3EB0FFFFFFFFFFFFFFFF"
        assert unknown_hashed["pollKnown"] is False and unknown_hashed["vote"]["selectedOptions"] == []
        assert len(unknown_hashed["unresolvedOptionHashes"]) == 1

        r = await hc.client.get(f"/instances/{iid}/polls/{poll_id}/votes")
        assert r.status_code == 200, r.text
        latest = {v["voter"]: v["selectedOptions"] for v in r.json()["votes"]}
        assert latest == {lid: ["Cancel"], f"{CUSTOMER}@c.us": ["Confirm"]}
        r = await hc.client.get(f"/instances/{iid}/polls/3EB0000000000000DEAD/votes")
        assert r.status_code == 404, r.text


@pytest.mark.hub_settings(webhook_retry_base_ms=50)
async def test_an_undecryptable_vote_is_announced_and_never_retracts_the_known_choice(
        hub_client: HubClient) -> None:
    """Report: a vote that failed to decrypt was dropped with a traceback, the app never learnt the
    customer had voted again. Read as an empty selection it would have retracted the customer's
    Confirm. Now: one ``vote_update`` with ``decryptFailed: true``, the poll's id, order key and
    chat, ``selectedOptions: null``; the latest vote stays Confirm; a copy or an older one is dropped."""
    hc = hub_client
    with Receiver() as rx:
        iid = await create_linked(hc, "undecryptable", rx.url, events=["vote_update"])
        queue_id, poll_id = await _poll(hc, iid)
        t0 = 1_767_225_600_000
        await vote(hc, iid, poll_id, CUSTOMER, ["Confirm"], t0, asHashes=True)
        await vote(hc, iid, poll_id, CUSTOMER, [], t0 + 1000, decryptFailed=True)
        await vote(hc, iid, poll_id, CUSTOMER, [], t0 + 1000, decryptFailed=True)  # redelivered
        await vote(hc, iid, poll_id, CUSTOMER, [], t0 - 1000, decryptFailed=True)  # older than the Confirm

        await until(lambda: settled(hc, iid))
        assert len(await deliveries(hc, iid)) == 2
        confirm, failed = _votes(rx)
        assert confirm["vote"]["selectedOptions"] == ["Confirm"] and confirm["decryptFailed"] is False
        assert failed["decryptFailed"] is True and failed["vote"]["selectedOptions"] is None
        assert failed["vote"]["pollMessageId"] == poll_id and failed["vote"]["timestamp"] == t0 + 1000
        assert failed["idempotencyKey"] == ORDER_KEY and failed["queueId"] == queue_id
        assert failed["chatId"] == f"{CUSTOMER}@c.us" and failed["pollKnown"] is True

        r = await hc.client.get(f"/instances/{iid}/polls/{poll_id}/votes")
        assert [(v["selectedOptions"], v["timestamp"]) for v in r.json()["votes"]] == [(["Confirm"], t0)]

        await vote(hc, iid, poll_id, CUSTOMER, ["Cancel"], t0 + 2000)  # asked again, the answer reads
        await received(rx, lambda got: len(got) == 3)
        assert _votes(rx)[-1]["vote"]["selectedOptions"] == ["Cancel"]


@pytest.mark.hub_settings(webhook_retry_base_ms=50)
async def test_a_persons_phone_and_lid_are_one_voter(hub_client: HubClient) -> None:
    """Report: a Confirm as the phone, a Cancel as the hidden-number id (telling the phone), then a
    late Confirm as the phone gave three webhooks and two "latest" votes. Now: two webhooks, the
    late Confirm is stale, and the one latest vote is the Cancel."""
    hc = hub_client
    lid = "99887766554433@lid"
    with Receiver() as rx:
        iid = await create_linked(hc, "one-voter", rx.url, events=["vote_update"])
        _, poll_id = await _poll(hc, iid)
        t0 = 1_767_225_600_000
        await vote(hc, iid, poll_id, CUSTOMER, ["Confirm"], t0)
        await vote(hc, iid, poll_id, lid, ["Cancel"], t0 + 1000, asHashes=True, voterAlt=CUSTOMER)
        await vote(hc, iid, poll_id, CUSTOMER, ["Confirm"], t0 + 500)  # late: cast before the Cancel

        await until(lambda: settled(hc, iid))
        assert len(await deliveries(hc, iid)) == 2
        confirm, cancel = _votes(rx)
        assert cancel["vote"]["selectedOptions"] == ["Cancel"]
        assert cancel["voterLid"] == lid and cancel["voterPhone"] == CUSTOMER
        r = await hc.client.get(f"/instances/{iid}/polls/{poll_id}/votes")
        assert [(v["voter"], v["selectedOptions"], v["voterAlt"]) for v in r.json()["votes"]] == [
            (lid, ["Cancel"], f"{CUSTOMER}@c.us")]

        await vote(hc, iid, poll_id, CUSTOMER, [], t0 + 2000)  # later, as the phone alone: still that person
        await received(rx, lambda got: len(got) == 3)
        assert _votes(rx)[-1]["voterLid"] == lid
        r = await hc.client.get(f"/instances/{iid}/polls/{poll_id}/votes")
        assert [(v["voter"], v["selectedOptions"]) for v in r.json()["votes"]] == [(f"{CUSTOMER}@c.us", [])]
