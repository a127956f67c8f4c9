"""Reads, chat settings and groups through the WaAPI routes on the sandbox (in-process hub, SQLite).

The sandbox's address book is seeded by traffic: a message injected from a customer makes a chat, a
contact and a readable message; groups are created through the API and joined by invite code.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import HubClient
from tests.integration.outbox_helpers import link
from tests.support.polling import until

CUSTOMER = "201000000001@c.us"
A = "/instances/{iid}/client/action/"


async def _ready(hc: HubClient, name: str) -> str:
    r = await hc.client.post("/instances", json={"name": name})
    assert r.status_code == 200, r.text
    iid = str(r.json()["instance"]["id"])
    await link(hc, iid)
    return iid


async def _act(hc: HubClient, iid: str, name: str, body: dict[str, Any] | None = None,
               status: int = 200) -> Any:
    r = await hc.client.post(A.format(iid=iid) + name, json=body or {})
    assert r.status_code == status, (name, r.text)
    return r.json()


def _data(answer: Any) -> dict[str, Any]:
    assert answer["status"] == "success" and answer["data"]["status"] == "success", answer
    data: dict[str, Any] = answer["data"]
    return data


async def test_chats_messages_and_contacts_come_from_traffic(hub_client: HubClient) -> None:
    hc = hub_client
    iid = await _ready(hc, "reads")
    r = await hc.client.post(f"/sandbox/instances/{iid}/messages",
                             json={"from": CUSTOMER, "text": "where is my parcel?", "messageId": "3EB0AAAA"})
    assert r.status_code == 200, r.text
    sent = await hc.client.post(A.format(iid=iid) + "send-message", json={"chatId": CUSTOMER, "message": "on its way"})
    assert sent.status_code == 202

    async def two() -> list[Any] | None:
        msgs = _data(await _act(hc, iid, "fetch-messages", {"chatId": CUSTOMER}))["messages"]
        return msgs if len(msgs) == 2 else None

    msgs = await until(two)
    assert [m["body"] for m in msgs] == ["where is my parcel?", "on its way"]
    assert [m["fromMe"] for m in msgs] == [False, True]
    chats = _data(await _act(hc, iid, "get-chats"))["chats"]
    assert [c["id"]["_serialized"] for c in chats] == [CUSTOMER]
    one = _data(await _act(hc, iid, "get-message-by-id", {"messageId": "3EB0AAAA"}))["message"]
    assert one["id"]["_serialized"] == f"false_{CUSTOMER}_3EB0AAAA" and one["type"] == "chat"
    contacts = _data(await _act(hc, iid, "get-contacts"))["contacts"]
    assert [c["number"] for c in contacts] == ["201000000001"]

    await _act(hc, iid, "archive-chat", {"chatId": CUSTOMER})
    await _act(hc, iid, "pin-chat", {"chatId": CUSTOMER})
    await _act(hc, iid, "mute-chat", {"chatId": CUSTOMER, "unmuteDate": "2030-01-01T00:00:00Z"})
    chat = _data(await _act(hc, iid, "get-chat-by-id", {"chatId": CUSTOMER}))["chat"]
    assert chat["archived"] and chat["pinned"] and chat["isMuted"] and chat["muteExpiration"] == 1_893_456_000
    await _act(hc, iid, "block-contact", {"contactId": CUSTOMER})
    blocked = _data(await _act(hc, iid, "get-blocked-contacts"))["contacts"]
    assert [b["_serialized"] for b in blocked] == [CUSTOMER]

    await hc.client.post(f"/sandbox/instances/{iid}/messages",
                         json={"from": "99887766@lid", "fromAlt": CUSTOMER, "text": "me again"})
    pair = _data(await _act(hc, iid, "get-lid", {"contactIds": [CUSTOMER, "99887766@lid"]}))["lids"]
    assert [(p["lid"], p["pn"]) for p in pair] == [("99887766@lid", CUSTOMER)] * 2
    missing = await _act(hc, iid, "get-message-by-id", {"messageId": "NOPE"}, status=404)
    assert "NOPE" in missing["error"]
    bad = await _act(hc, iid, "get-chat-by-id", {}, status=400)
    assert "chatId" in bad["error"]


async def test_groups_are_created_managed_and_joined_by_invite(hub_client: HubClient) -> None:
    hc = hub_client
    shop = await _ready(hc, "shop")
    other = await _ready(hc, "other")
    group = _data(await _act(hc, shop, "create-group", {"groupName": "Orders",
                                                        "groupParticipants": [CUSTOMER]}))["groupInfo"]
    gid = group["id"]["_serialized"]
    assert gid.endswith("@g.us") and group["subject"] == "Orders"
    await _act(hc, shop, "add-group-participant", {"chatId": gid, "participant": "201000000002"})
    info = _data(await _act(hc, shop, "promote-group-participant", {"chatId": gid, "participant": CUSTOMER}))
    roles = {p["id"]["_serialized"]: p["isAdmin"] for p in info["groupInfo"]["participants"]}
    assert roles[CUSTOMER] is True and roles["201000000002@c.us"] is False
    await _act(hc, shop, "update-group-info", {"chatId": gid, "subject": "Orders 2", "description": "daily"})
    await _act(hc, shop, "update-group-settings", {"chatId": gid, "messageAdminOnly": True})
    info = _data(await _act(hc, shop, "get-group-info", {"chatId": gid}))["groupInfo"]
    assert (info["subject"], info["description"], info["announce"]) == ("Orders 2", "daily", True)

    code = _data(await _act(hc, shop, "get-invite-code", {"chatId": gid}))["invite"]["inviteCode"]
    joined = _data(await _act(hc, other, "accept-invite", {"inviteCode": code}))["groupId"]
    assert joined == gid
    revoked = _data(await _act(hc, shop, "revoke-invite", {"chatId": gid}))["invite"]["inviteCode"]
    assert revoked != code
    await _act(hc, other, "get-invite-info", {"inviteCode": code}, status=404)
    refused = await _act(hc, other, "remove-group-participant", {"chatId": gid, "participant": CUSTOMER},
                         status=409)
    assert "admin" in refused["error"]


async def test_not_ready_is_409_naming_the_state_and_local_actions_need_no_engine(hub_client: HubClient) -> None:
    hc = hub_client
    r = await hc.client.post("/instances", json={"name": "unlinked"})
    iid = r.json()["instance"]["id"]
    refused = await _act(hc, iid, "get-chats", status=409)
    assert refused["instanceState"] in ("initializing", "connecting", "needs_qr")
    assert refused["instanceState"] in refused["error"]
    assert _data(await _act(hc, iid, "get-country-code", {"number": "+55 11 98765-4321"}))["countryCode"] == "55"
    assert _data(await _act(hc, iid, "get-formatted-number", {"number": "5511987654321"}))[
        "formattedNumber"] == "+55 11987654321"
    unknown = await hc.client.post(A.format(iid="nobody") + "get-chats", json={})
    assert unknown.status_code == 404


async def test_first_send_goes_to_the_id_whatsapp_knows(hub_client: HubClient) -> None:
    """A Brazilian mobile typed with its ninth digit, registered without it: the engine stamps the
    delivery to the resolved id; a number not on WhatsApp fails after one attempt with a clear error."""
    hc = hub_client
    iid = await _ready(hc, "resolve")
    await hc.client.post(f"/sandbox/instances/{iid}/faults",
                         json={"kind": "resolves_to", "chatId": "5511987654321", "to": "551187654321@c.us"})
    await hc.client.post(f"/sandbox/instances/{iid}/faults", json={"kind": "unregistered", "chatId": "201099999999"})
    r = await hc.client.post(A.format(iid=iid) + "send-message", json={"chatId": "+55 11 98765-4321", "message": "Oi"})
    assert r.status_code == 202, r.text
    gone = await hc.client.post(A.format(iid=iid) + "send-message", json={"chatId": "201099999999", "message": "Hi"})

    async def delivered() -> list[Any] | None:
        got = (await hc.client.get(f"/sandbox/instances/{iid}/sent")).json()["messages"]
        return got or None

    sent = await until(delivered)
    assert [(m["chatId"], m["text"]) for m in sent] == [("551187654321@c.us", "Oi")]

    async def failed() -> dict[str, Any] | None:
        r = await hc.client.get(f"/instances/{iid}/messages/{gone.json()['queueId']}")
        item: dict[str, Any] = r.json()["item"]
        return item if item["status"] == "failed" else None

    item = await until(failed)
    assert item["attempts"] <= 1 and "not on WhatsApp" in item["lastError"]
    numbers = await hc.hub.store.find_number(iid, "5511987654321@c.us")
    assert numbers is not None and numbers[0] == "551187654321@c.us"


async def test_openapi_documents_every_action_with_its_body_and_the_501(hub_client: HubClient) -> None:
    from wahub.domain.directory import ACTIONS

    spec = (await hub_client.client.get("/openapi.json")).json()
    for name, action in ACTIONS.items():
        op = spec["paths"][f"/instances/{{instance_id}}/client/action/{name}"]["post"]
        assert {"200", "400", "404", "409", "501"} <= set(op["responses"]), name
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["required"]) == {f.api for f in action.fields if f.required}, name


async def test_an_engine_without_a_directory_answers_501_with_the_reason_not_404(hub_client: HubClient) -> None:
    from wahub.engines.directory import NO_DIRECTORY

    hc = hub_client
    iid = await _ready(hc, "nodir")
    engine = hc.hub.instances[iid].engine
    assert engine is not None
    engine.directory = lambda: NO_DIRECTORY  # type: ignore[method-assign]  # e.g. the Cloud API engine
    for name, body in (("get-chats", {}), ("create-group", {"groupName": "x", "groupParticipants": [CUSTOMER]})):
        refused = await _act(hc, iid, name, body, status=501)
        assert "offers no reads, chat settings or group management" in refused["error"] and name in refused["error"]
    assert _data(await _act(hc, iid, "get-country-code", {"number": "201000000001"}))["countryCode"] == "20"
