"""Every spelling of one number is one chat: the same message to it is one outbox item, one delivery."""

from __future__ import annotations

import pytest

from tests.conftest import HubClient
from tests.integration.outbox_helpers import link
from tests.support.polling import until

SPELLINGS = ["201000000001", "+20 100 000 0001", "+20 0100 000 0001", "00201000000001", "201000000001@c.us"]


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_spellings_of_one_number_deduplicate_to_one_delivery(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    await link(hub_client, "shop")
    answers = [await c.post("/instances/shop/client/action/send-message", json={"chatId": s, "message": "Order 7"})
               for s in SPELLINGS]
    assert [r.status_code for r in answers][:1] == [202], answers[0].text
    assert len({r.json()["queueId"] for r in answers}) == 1

    async def delivered() -> list[dict[str, object]] | None:
        got = (await c.get("/sandbox/instances/shop/sent")).json()["messages"]
        return got or None

    sent = await until(delivered)
    assert [m["chatId"] for m in sent] == ["201000000001@c.us"]


async def test_a_national_number_and_status_broadcast_are_refused_with_the_reason(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    national = await c.post("/instances/shop/client/action/send-message",
                            json={"chatId": "01000000001", "message": "hi"})
    assert national.status_code == 400
    assert "national number" in national.json()["error"] and national.json()["status"] == 400
    status = await c.post("/instances/shop/client/action/send-message",
                          json={"chatId": "status@broadcast", "message": "hi"})
    assert status.status_code == 400
    assert "ALLOW_STATUS_BROADCAST" in status.json()["error"]
    assert (await c.get("/instances/shop/queue")).json()["depth"] == 0


@pytest.mark.hub_settings(send_interval_ms=0)
async def test_an_instance_country_code_completes_national_numbers_through_the_api(hub_client: HubClient) -> None:
    c = hub_client.client
    r = await c.post("/instances", json={"name": "eg-shop", "defaultCountryCode": "+20"})
    assert r.status_code == 200 and r.json()["instance"]["defaultCountryCode"] == "20", r.text
    await link(hub_client, "eg-shop")
    answers = [await c.post("/instances/eg-shop/client/action/send-message", json={"chatId": s, "message": "Order 8"})
               for s in ("01000000001", "0100 000 0001", "+20 100 000 0001")]
    assert answers[0].status_code == 202, answers[0].text
    assert len({a.json()["queueId"] for a in answers}) == 1  # every spelling, one item

    async def delivered() -> list[dict[str, object]] | None:
        got = (await c.get("/sandbox/instances/eg-shop/sent")).json()["messages"]
        return got or None

    assert [m["chatId"] for m in await until(delivered)] == ["201000000001@c.us"]
    bad = await c.put("/instances/eg-shop", json={"defaultCountryCode": "EG"})
    assert bad.status_code == 400 and "defaultCountryCode" in bad.json()["error"], bad.text
    off = await c.put("/instances/eg-shop", json={"defaultCountryCode": None})
    assert off.status_code == 200 and off.json()["instance"]["defaultCountryCode"] is None
    refused = await c.post("/instances/eg-shop/client/action/send-message",
                           json={"chatId": "01000000002", "message": "hi"})
    assert refused.status_code == 400, refused.text


async def test_typing_settings_use_the_old_field_names_and_bad_values_name_the_field(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "typing-shop"})
    r = await c.put("/instances/typing-shop", json={"typingIndicatorEnabled": True,
                                                    "applyTypingTo": ["customer", "merchant"]})
    assert r.status_code == 200, r.text
    listed = {i["id"]: i for i in (await c.get("/instances")).json()}["typing-shop"]
    assert (listed["typingIndicatorEnabled"], listed["applyTypingTo"]) == (True, ["customer", "merchant"])
    for body, field in (({"typingIndicatorEnabled": "yes"}, "typingIndicatorEnabled"),
                        ({"applyTypingTo": "customer"}, "applyTypingTo")):
        bad = await c.put("/instances/typing-shop", json=body)
        assert bad.status_code == 400 and field in bad.json()["error"], bad.text
    listed = {i["id"]: i for i in (await c.get("/instances")).json()}["typing-shop"]
    assert listed["typingIndicatorEnabled"] is True  # nothing half-written
