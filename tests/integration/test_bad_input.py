"""Bad input gets the right 4xx with a message naming the problem, and nothing is queued."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubClient
from tests.integration.outbox_helpers import deliveries, link
from tests.support.polling import until

SEND = "/instances/shop/client/action/send-message"
POLL = "/instances/shop/client/action/create-poll"


@pytest.fixture
async def hc(hub_client: HubClient) -> HubClient:
    r = await hub_client.client.post("/instances", json={"name": "shop"})
    assert r.status_code == 200, r.text
    return hub_client


async def _queued(hc: HubClient) -> int:
    r = await hc.client.get("/instances/shop/outbox")
    assert r.status_code == 200
    return int(r.json()["total"])


@pytest.mark.parametrize(("path", "body", "status", "needle"), [
    (SEND, {"message": "hi"}, 400, "chatId"),
    (SEND, {"chatId": "201000000001"}, 400, "message is required"),
    (SEND, {"chatId": "201000000001", "message": ""}, 400, "message must not be empty"),
    (SEND, {"chatId": "201000000001", "message": "   "}, 400, "message must not be empty"),
    (SEND, {"chatId": "201000000001", "message": 5}, 400, "message must be a string"),
    (SEND, {"chatId": "not a number", "message": "hi"}, 400, "chatId"),
    (SEND, {"chatId": "abc@example.com", "message": "hi"}, 400, "chatId"),
    (SEND, {"chatId": "201000000001", "message": "hi", "idempotencyKey": ""}, 400, "idempotencyKey"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": ["only"]}, 400, "options must have 2 to 12"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": [str(i) for i in range(13)]}, 400,
     "options must have 2 to 12"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": ["A", "A"]}, 400, "options must be distinct"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": "A,B"}, 400, "options must be a list"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": ["A", ""]}, 400, "options[1]"),
    (POLL, {"chatId": "201000000001", "options": ["A", "B"]}, 400, "caption is required"),
    (POLL, {"chatId": "201000000001", "caption": "q", "options": ["A", "B"], "multipleAnswers": "yes"}, 400,
     "multipleAnswers"),
])
async def test_invalid_sends_are_refused_and_nothing_is_queued(hc: HubClient, path: str, body: dict[str, Any],
                                                               status: int, needle: str) -> None:
    r = await hc.client.post(path, json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status"] == status
    assert needle in payload["error"]
    assert await _queued(hc) == 0


async def test_malformed_json_is_a_400(hc: HubClient) -> None:
    r = await hc.client.post(SEND, content=b'{"chatId": "2010', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "malformed JSON" in r.json()["error"]
    r = await hc.client.post(SEND, content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "JSON object" in r.json()["error"]
    r = await hc.client.post(SEND)
    assert r.status_code == 400
    assert "body" in r.json()["error"]
    assert await _queued(hc) == 0


async def test_unknown_instance_is_a_404(hc: HubClient) -> None:
    r = await hc.client.post("/instances/nope/client/action/send-message",
                             json={"chatId": "201000000001", "message": "hi"})
    assert r.status_code == 404
    assert "nope" in r.json()["error"]
    for path in ("/instances/nope", "/instances/nope/client/status", "/instances/nope/status",
                 "/instances/nope/client/qr"):
        assert (await hc.client.get(path)).status_code == 404


async def test_missing_key_is_a_401_wrong_key_a_403_and_neither_queues(hc: HubClient) -> None:
    body = {"chatId": "201000000001", "message": "hi"}
    r = await hc.client.post(SEND, json=body, headers={"authorization": "Bearer wrong-key-123"})
    assert r.status_code == 403
    assert r.json() == {"error": "Invalid API key", "status": 403}
    r = await hc.client.post(SEND, json=body, headers={"authorization": ""})
    assert r.status_code == 401
    assert "API key required" in r.json()["error"]
    r = await hc.client.get("/instances", headers={"authorization": "Bearer nope-nope-nope"})
    assert r.status_code == 403
    assert await _queued(hc) == 0
    # X-API-Key works like the existing wa-hub
    r = await hc.client.get("/instances", headers={"authorization": "", "x-api-key": hc.hub.settings.api_key or ""})
    assert r.status_code == 200


async def test_health_needs_no_key(hc: HubClient) -> None:
    r = await hc.client.get("/health", headers={"authorization": ""})
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_another_name_for_a_taken_id_is_a_409(hc: HubClient) -> None:
    r = await hc.client.post("/instances", json={"name": "WASP-shop.myshopify.com"})
    assert r.status_code == 200
    assert r.json()["instance"]["id"] == "WASP-shop_myshopify_com"
    r = await hc.client.post("/instances", json={"name": "WASP-shop_myshopify.com"})
    assert r.status_code == 409  # sanitises to the same id
    assert "is taken by the instance named 'WASP-shop.myshopify.com'" in r.json()["error"]


@pytest.mark.parametrize(("body", "needle"), [
    ({}, "name is required"),
    ({"name": ""}, "name is required"),
    ({"name": "x", "webhook": {"url": "ftp://x"}}, "webhook.url"),
    ({"name": "x", "webhook": {"url": "http://127.0.0.1:9/h", "events": ["nope"]}}, "unknown events"),
])
async def test_bad_instance_bodies(hc: HubClient, body: dict[str, Any], needle: str) -> None:
    r = await hc.client.post("/instances", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert [i["id"] for i in (await hc.client.get("/instances")).json()] == ["shop"]


async def test_oversized_body_is_a_413(hc: HubClient) -> None:
    big = "x" * (hc.hub.settings.max_body_bytes + 10)
    r = await hc.client.post(SEND, json={"chatId": "201000000001", "message": big})
    assert r.status_code == 413
    assert await _queued(hc) == 0


async def test_key_reused_for_another_payload_is_a_409(hc: HubClient) -> None:
    body = {"chatId": "201000000001", "message": "one", "idempotencyKey": "order:1"}
    assert (await hc.client.post(SEND, json=body)).status_code == 202
    r = await hc.client.post(SEND, json={**body, "message": "two"})
    assert r.status_code == 409
    assert "different message" in r.json()["error"]
    assert await _queued(hc) == 1


async def test_header_and_body_keys_must_agree(hc: HubClient) -> None:
    r = await hc.client.post(SEND, json={"chatId": "201000000001", "message": "x", "idempotencyKey": "a"},
                             headers={"Idempotency-Key": "b"})
    assert r.status_code == 400
    assert "differ" in r.json()["error"]


async def test_full_queue_is_a_429_with_retry_after(tmp_path: Any, settings_factory: Any) -> None:
    import httpx

    from tests.support.server import API_KEY
    from wahub.runtime.compose import build_hub
    from wahub.web.app import create_app

    hub = build_hub(settings_factory(max_queue_size=3))
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub, manage_hub=False)),
                                     base_url="http://hub", headers={"authorization": f"Bearer {API_KEY}"}) as c:
            await c.post("/instances", json={"name": "shop"})
            for i in range(3):
                r = await c.post(SEND, json={"chatId": "201000000001", "message": f"m{i}"})
                assert r.status_code == 202
            r = await c.post(SEND, json={"chatId": "201000000001", "message": "m3"})
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert "queue full" in r.json()["error"]
            # a replay of a queued key is still answered, not refused
            r = await c.post(SEND, json={"chatId": "201000000001", "message": "m0"})
            assert r.status_code == 202
            assert r.json()["replay"] is True
    finally:
        await hub.stop()


async def test_no_key_is_refused_before_the_body_is_read(hc: HubClient) -> None:
    r = await hc.client.post(SEND, content=b"garbage", headers={"authorization": "",
                                                                "content-type": "application/json"})
    assert r.status_code == 401


async def test_chunked_bodies_obey_the_size_limit(hc: HubClient) -> None:
    big = b'{"chatId": "201000000001", "message": "' + b"x" * (hc.hub.settings.max_body_bytes + 10) + b'"}'

    async def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = await hc.client.post(SEND, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert await _queued(hc) == 0
    small = b'{"chatId": "201000000001", "message": "chunked but small"}'

    async def one() -> Any:
        yield small

    r = await hc.client.post(SEND, content=one(), headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("raw", [
    b'{"chatId": "201000000001", "message": "\\ud800"}',
    b'{"chatId": "201000000001", "message": "nul \\u0000 inside"}',
])
async def test_invalid_unicode_is_a_400_naming_the_field(hc: HubClient, raw: bytes) -> None:
    r = await hc.client.post(SEND, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "message" in r.json()["error"]
    assert await _queued(hc) == 0


@pytest.mark.parametrize(("limits", "needle"), [
    ({"perMinute": 0}, "limits.perMinute"),
    ({"perHour": -1}, "limits.perHour"),
    ({"intervalMs": 10**30}, "limits.intervalMs"),
    ({"perMinute": "6"}, "limits.perMinute"),
    ({"burst": 3}, "unknown keys"),
    ("fast", "limits must be an object"),
])
async def test_bad_limits_are_refused(hc: HubClient, limits: Any, needle: str) -> None:
    r = await hc.client.put("/instances/shop", json={"limits": limits})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


async def test_odd_ids_never_address_another_instance(hc: HubClient) -> None:
    assert (await hc.client.post("/instances", json={"name": "."})).json()["instance"]["id"] == "_"
    gone = await hc.client.delete("/instances/%F0%9F%98%80")  # idempotent, as the existing wa-hub
    assert (gone.status_code, gone.json()["deleted"]) == (200, False)
    assert (await hc.client.get("/instances/_")).status_code == 200
    assert (await hc.client.get("/instances/%20")).status_code == 404
    assert (await hc.client.get("/instances/" + "a" * 5000)).status_code == 404
    assert (await hc.client.get("/instances/_")).status_code == 200
    # the existing wa-hub's lookup by a domain-like name still works
    await hc.client.post("/instances", json={"name": "WASP-shop.myshopify.com"})
    assert (await hc.client.get("/instances/WASP-shop.myshopify.com")).json()["instance"]["id"] == \
        "WASP-shop_myshopify_com"


@pytest.mark.parametrize("path", ["/instances/shop/outbox?offset=9223372036854775808",
                                  "/instances/shop/webhooks/deliveries?offset=99999999999999999999"])
async def test_huge_offsets_are_4xx(hc: HubClient, path: str) -> None:
    assert (await hc.client.get(path)).status_code in (400, 422)


async def test_a_secret_must_be_a_string(hc: HubClient) -> None:
    r = await hc.client.put("/instances/shop", json={"webhook": {"secret": ["x"]}})
    assert r.status_code == 400
    assert "webhook.secret" in r.json()["error"]


@pytest.mark.parametrize("body", [{"kind": "send_error", "count": "abc"}, {"kind": "slow_send", "latency_ms": None},
                                  {"kind": "temporary_ban", "expires_in_ms": []},
                                  {"kind": "send_error", "count": 10**9}])
async def test_bad_fault_parameters_are_400(hc: HubClient, body: dict[str, Any]) -> None:
    r = await hc.client.post("/sandbox/instances/shop/faults", json=body)
    assert r.status_code == 400, r.text


async def test_limits_given_at_creation_are_kept_and_bad_ones_create_nothing(hub_client: HubClient) -> None:
    c = hub_client.client
    bad = await c.post("/instances", json={"name": "slow", "limits": {"perMinute": 0}})
    assert bad.status_code == 400 and "limits.perMinute" in bad.json()["error"]
    assert (await c.get("/instances/slow")).status_code == 404  # nothing half-made
    unknown = await c.post("/instances", json={"name": "slow", "limits": {"perDay": 5}})
    assert unknown.status_code == 400 and "perDay" in unknown.json()["error"]
    r = await c.post("/instances", json={"name": "slow", "limits": {"perMinute": 2, "intervalMs": 1500}})
    assert r.status_code in (200, 201), r.text
    limits = (await c.get("/instances/slow/status")).json()["rateLimits"]
    assert (limits["sendsPerMinute"]["max"], limits["intervalMs"]) == (2, 1500), limits


async def test_sandbox_votes_are_what_whatsapp_could_deliver(hub_client: HubClient) -> None:
    c = hub_client.client
    await c.post("/instances", json={"name": "shop"})
    await link(hub_client, "shop")
    r = await c.post("/instances/shop/client/action/create-poll",
                     json={"chatId": "201000000001", "caption": "Confirm?", "options": ["Yes", "No"]})
    assert r.status_code == 202, r.text

    async def poll_id() -> str | None:
        sent = await deliveries(hub_client, "shop")
        return str(sent[0]["messageId"]) if sent else None
    pid = await until(poll_id)
    vote = {"pollMessageId": pid, "voter": "201000000001"}
    for extra, field in (({"selectedOptions": ["Maybe"]}, "selectedOptions"),
                         ({"selectedOptions": ["Yes", "No"]}, "single answer"),
                         ({"selectedOptions": ["Yes"], "timestamp": 2**63}, "timestamp"),
                         ({"selectedOptions": ["Yes"], "timestamp": -1}, "timestamp")):
        bad = await c.post("/sandbox/instances/shop/votes", json={**vote, **extra})
        assert bad.status_code == 400 and field in bad.json()["error"], (extra, bad.text)
    good = await c.post("/sandbox/instances/shop/votes", json={**vote, "selectedOptions": ["Yes"]})
    assert good.status_code == 200, good.text
    votes = (await c.get(f"/instances/shop/polls/{pid}/votes")).json()
    assert "Yes" in str(votes)


@pytest.mark.parametrize("url", ["http://a..b/h", "http://xn--/h", "http://1.2.3.999/h", "http://[v1.x]/h"])
async def test_a_webhook_url_no_client_can_dial_is_a_400_on_create_and_update(hub_client: HubClient,
                                                                              url: str) -> None:
    c = hub_client.client
    r = await c.post("/instances", json={"name": "u9", "webhook": {"url": url}})
    assert r.status_code == 400 and "webhook.url" in r.json()["error"], r.text
    assert (await c.get("/instances/u9")).status_code == 404
    await c.post("/instances", json={"name": "u1"})
    r = await c.put("/instances/u1", json={"webhook": {"url": url}})
    assert r.status_code == 400 and "webhook.url" in r.json()["error"], r.text
