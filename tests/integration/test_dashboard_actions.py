"""The dashboard's operator actions, through the real app (SQLite, sandbox engine).

Each action is checked where a user observes it: the webhook settings through the public API and
on the receiver, test sends on the sandbox's own deliveries, a scan on the instance's state, a
delivery's payload against the bytes the receiver got, dead letters page by page.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import HubClient
from tests.support.polling import until
from tests.support.receiver import Receiver
from tests.support.server import API_KEY
from wahub.runtime import signing

pytestmark = pytest.mark.timeout(90)


async def sign_in(c: httpx.AsyncClient) -> None:
    r = await c.post("/dashboard/login", data={"api_key": API_KEY})
    assert r.status_code == 303, r.text


async def csrf(c: httpx.AsyncClient, iid: str) -> str:
    page = (await c.get(f"/dashboard/instances/{iid}")).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


async def post(c: httpx.AsyncClient, iid: str, action: str, data: dict[str, Any]) -> httpx.Response:
    token = await csrf(c, iid)
    return await c.post(f"/dashboard/instances/{iid}/{action}", data={"csrf_token": token, **data})


async def create(c: httpx.AsyncClient, name: str, **body: Any) -> str:
    r = await c.post("/instances", json={"name": name, **body})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["instance"]["id"])


async def test_root_leads_to_the_dashboard(hub_client: HubClient) -> None:
    r = await hub_client.client.get("/", headers={"authorization": ""})
    assert r.status_code in (302, 303, 307) and r.headers["location"] == "/dashboard"


async def test_edit_webhook_url_events_and_secret(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    iid = await create(c, "edit-shop")
    with Receiver() as rx:
        r = await post(c, iid, "webhook", {"webhook_url": rx.url, "events": ["message", "vote_update"],
                                           "webhook_secret": "s3cret-for-edit-shop"})
        assert r.status_code == 303 and "done=webhook_saved" in r.headers["location"]
        hook = (await c.get(f"/instances/{iid}/status")).json()["webhook"]
        assert (hook["url"], hook["events"], hook["secretConfigured"]) == (rx.url, ["message", "vote_update"], True)
        page = (await c.get(f"/dashboard/instances/{iid}")).text
        assert "s3cret-for-edit-shop" not in page  # the secret is never rendered back

        # The new URL and secret are used: an inbound message is delivered there, signed with the secret.
        assert (await c.post(f"/sandbox/instances/{iid}/scan", json={})).status_code == 200
        await until(lambda: _state(c, iid, "ready"))
        r = await c.post(f"/sandbox/instances/{iid}/messages", json={"from": "201000000011", "text": "hi"})
        assert r.status_code == 200, r.text
        async def message_received() -> list[Any]:
            return [q for q in list(rx.requests) if q.json["event"] == "message"]

        got = (await until(message_received))[0]
        assert got.headers["x-wa-hub-signature"] == signing.hub_signature("s3cret-for-edit-shop", got.body)

        # Saving again with an empty secret keeps it; "remove" drops it; no events checked = all.
        r = await post(c, iid, "webhook", {"webhook_url": rx.url})
        hook = (await c.get(f"/instances/{iid}/status")).json()["webhook"]
        assert (hook["events"], hook["secretConfigured"]) == ([], True)
        await post(c, iid, "webhook", {"webhook_url": rx.url, "clear_secret": "1"})
        assert (await c.get(f"/instances/{iid}/status")).json()["webhook"]["secretConfigured"] is False

    # A bad URL is refused with the API's message and changes nothing.
    r = await post(c, iid, "webhook", {"webhook_url": "ftp://example.invalid/x"})
    assert r.status_code == 400 and "webhook.url" in r.text
    assert (await c.get(f"/instances/{iid}/status")).json()["webhook"]["url"] == rx.url


async def test_credentials_in_a_webhook_url_are_masked_and_kept(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    url = "http://user:pa55word@127.0.0.1:9/hook"
    iid = await create(c, "cred-shop", webhook={"url": url})
    page = (await c.get(f"/dashboard/instances/{iid}")).text
    assert "pa55word" not in page and "http://***@127.0.0.1:9/hook" in page
    r = await post(c, iid, "webhook", {"webhook_url": "http://***@127.0.0.1:9/hook", "events": ["message"]})
    assert r.status_code == 303
    hook = (await c.get(f"/instances/{iid}/status")).json()["webhook"]
    assert hook["events"] == ["message"]
    assert hub_client.hub.get(iid).record.webhook_url == url  # the unchanged masked URL kept its credentials


async def _state(c: httpx.AsyncClient, iid: str, state: str) -> bool:
    return bool((await c.get(f"/instances/{iid}")).json()["instance"]["state"] == state)


async def test_scan_then_test_message_and_poll_reach_the_sandbox_phone(hub_client: HubClient) -> None:
    c = hub_client.client
    await sign_in(c)
    iid = await create(c, "test-send-shop")
    page = (await c.get(f"/dashboard/instances/{iid}")).text
    assert 'data-testid="scan"' in page
    r = await post(c, iid, "scan", {"phone": "+20 100 000 0042"})
    assert r.status_code == 303 and "done=scanned" in r.headers["location"]
    await until(lambda: _state(c, iid, "ready"))
    client = (await c.get(f"/instances/{iid}/client/status")).json()["clientStatus"]
    assert client["data"]["phoneNumber"] == "201000000042"
    assert 'data-testid="scan"' not in (await c.get(f"/dashboard/instances/{iid}")).text  # linked: no scan button

    r = await post(c, iid, "test/message", {"chat_id": "+20 100 000 0001", "message": "test from the dashboard"})
    assert r.status_code == 303 and "done=test_message" in r.headers["location"]
    r = await post(c, iid, "test/poll", {"chat_id": "201000000001", "caption": "Confirm order?",
                                          "options": "Yes\r\nNo\r\n\r\n", "multiple": "1"})
    assert r.status_code == 303 and "done=test_poll" in r.headers["location"]

    async def delivered() -> list[dict[str, Any]] | None:
        msgs = (await c.get(f"/sandbox/instances/{iid}/sent")).json()["messages"]
        return msgs if len(msgs) == 2 else None

    msgs = await until(delivered)
    text, poll = msgs
    assert (text["kind"], text["chatId"], text["text"]) == ("text", "201000000001@c.us", "test from the dashboard")
    assert (poll["kind"], poll["caption"], poll["options"], poll["multipleAnswers"]) == (
        "poll", "Confirm order?", ["Yes", "No"], True)

    # Bad input is refused with the field named, and queues nothing.
    r = await post(c, iid, "test/poll", {"chat_id": "201000000001", "caption": "Only one?", "options": "Yes"})
    assert r.status_code == 400 and "options" in r.text
    r = await post(c, iid, "test/message", {"chat_id": "not a number", "message": "x"})
    assert r.status_code == 400 and "chatId" in r.text
    assert len((await c.get(f"/sandbox/instances/{iid}/sent")).json()["messages"]) == 2


@pytest.mark.hub_settings(webhook_max_attempts=1)
async def test_delivery_payload_and_response_and_dead_letters_in_pages(hub_client: HubClient) -> None:
    c = hub_client.client
    hub = hub_client.hub
    await sign_in(c)
    with Receiver(default_status=404) as rx:
        iid = await create(c, "dead-shop", webhook={"url": rx.url, "events": ["message"]})
        rt = hub.get(iid)
        for n in range(26):
            await hub.events.emit(rt.record, "message", {"message": {"body": f"order {n}"}})

        async def all_dead() -> bool:
            return bool((await c.get(f"/instances/{iid}/status")).json()["webhook"]["dead"] == 26)

        await until(all_dead)
        first = rx.requests[0]

    def dead_ids(html: str) -> list[str]:
        return re.findall(r'<tr data-event-id="([^"]+)" class="dead-letter">', html)

    pages = [(await c.get(f"/dashboard/instances/{iid}", params={"dead_page": str(p)})).text for p in (1, 2, 3)]
    ids = [dead_ids(p) for p in pages]
    assert [len(i) for i in ids] == [10, 10, 6]
    assert len({e for i in ids for e in i}) == 26  # every dead letter once, none twice
    assert "page 1 / 3" in pages[0] and "Replay all 26" in pages[0]
    partial = (await c.get(f"/dashboard/instances/{iid}/partials/webhooks", params={"dead_page": "3"})).text
    assert dead_ids(partial) == ids[2]  # the polled part stays on its page

    event_id = first.headers["webhook-id"]
    detail = await c.get(f"/dashboard/instances/{iid}/deliveries/{event_id}")
    assert detail.status_code == 200
    assert "HTTP 404" in detail.text and 'data-testid="delivery-status">dead<' in detail.text
    sent = first.json
    assert sent["data"]["message"]["body"] in detail.text and sent["event"] == "message"
    assert (await c.get(f"/dashboard/instances/{iid}/deliveries/evt_nope")).status_code == 404
