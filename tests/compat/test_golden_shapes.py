"""Every old route and webhook event answers in the existing wa-hub's golden shape by default.

The hub runs in process with the sandbox engine and its default settings (no WAAPI_ENVELOPE);
each old route is called in the situation its golden case names, every webhook event is caught
on a loopback receiver, and the answers are compared field by field with ``golden.py``. The only
differences allowed are the ones tagged ``compat:<case> <field>`` in docs/compatibility.md.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat import checker, golden
from tests.conftest import HubClient
from tests.integration.outbox_helpers import link, wait_state
from tests.integration.webhook_helpers import of_event, received
from tests.support.polling import until
from tests.support.receiver import Receiver

SHOP = "compat-shop"
CHAT = "201000000001"


class Answers:
    """Collects (case → status, body) while the walk runs."""

    def __init__(self) -> None:
        self.got: dict[str, tuple[int, Any]] = {}

    async def call(self, case: str, client: httpx.AsyncClient, path: str, **kwargs: Any) -> Any:
        method = golden.ROUTES[case][0]
        r = await client.request(method, path, **kwargs)
        self.got[case] = (r.status_code, r.json())
        return r.json()


def differences(got: dict[str, tuple[int, Any]]) -> list[str]:
    """Undocumented differences of every case, as ``<case> <field>: <what>``."""
    out = []
    for case, (_method, _route, code, shape) in golden.ROUTES.items():
        if case not in got:
            out.append(f"{case}: never called")
            continue
        status, body = got[case]
        found = checker.diff(shape, body)
        if status != code:
            found.insert(0, f"(http status): expected {code}, got {status}")
        out.extend(f"{case} {d}" for d in checker.undocumented(case, found))
    return out


@pytest.mark.hub_settings(ready_probe_timeout_ms=400, send_interval_ms=0, restore_stagger_ms=0)
@pytest.mark.timeout(60)
async def test_every_old_route_answers_in_its_golden_shape(hub_client: HubClient) -> None:
    c = hub_client.client
    a = Answers()
    with Receiver() as rx:
        hook = {"url": rx.url, "events": []}
        await a.call("create", c, "/instances", json={"name": SHOP, "webhook": hook})
        await a.call("create without webhook.url", c, "/instances", json={"name": "nohook", "webhook": {}})
        await until(lambda: _qr_shown(c, SHOP))
        await a.call("qr", c, f"/instances/{SHOP}/client/qr")
        await a.call("me (not ready)", c, f"/instances/{SHOP}/client/me")
        await link(hub_client, SHOP)
        await a.call("create existing (ready)", c, "/instances", json={"name": SHOP, "webhook": hook})
        await a.call("list instances", c, "/instances")
        await a.call("update", c, f"/instances/{SHOP}", json={"name": SHOP, "webhook": hook})
        await a.call("update unknown", c, "/instances/nobody", json={"name": "x"})
        await a.call("client status", c, f"/instances/{SHOP}/client/status")
        await a.call("client info-raw", c, f"/instances/{SHOP}/client/info-raw")
        await a.call("me (ready)", c, f"/instances/{SHOP}/client/me")
        await c.post(f"/sandbox/instances/{SHOP}/faults", json={"kind": "slow_send", "latency_ms": 60_000})
        await a.call("send-message", c, f"/instances/{SHOP}/client/action/send-message",
                     json={"chatId": CHAT, "message": "hello"})
        await a.call("create-poll", c, f"/instances/{SHOP}/client/action/create-poll",
                     json={"chatId": CHAT, "caption": "Confirm?", "options": ["Yes", "No"]})
        await a.call("send-message unknown instance", c, "/instances/nobody/client/action/send-message",
                     json={"chatId": CHAT, "message": "hello"})
        await a.call("queue", c, f"/instances/{SHOP}/queue")
        await a.call("queue trigger", c, f"/instances/{SHOP}/queue/trigger")
        await a.call("diagnostics", c, f"/instances/{SHOP}/diagnostics")
        await a.call("status", c, f"/instances/{SHOP}/status")
        await a.call("system status", c, "/system/status")
        await a.call("clear queue", c, f"/instances/{SHOP}/queue")
        await a.call("restart bad type", c, f"/instances/{SHOP}/restart", json={"type": "warm"})
        await a.call("restart", c, f"/instances/{SHOP}/restart", json={"type": "soft"})
        await a.call("no key", c, "/instances", headers={"authorization": ""})
        await a.call("wrong key", c, "/instances", headers={"authorization": "Bearer wrong-key-0000"})
        await a.call("unknown instance", c, "/instances/nobody/status")
        await a.call("unknown route", c, "/no-such-route")
        await a.call("health", c, "/health")
        await a.call("delete unknown", c, "/instances/nobody")
        await a.call("delete", c, "/instances/nohook")

        other = "compat-relink"
        await c.post("/instances", json={"name": other, "webhook": hook})
        await link(hub_client, other)
        await a.call("logout", c, f"/instances/{other}/client/action/logout")
        await a.call("create existing (after logout)", c, "/instances", json={"name": other, "webhook": hook})
        await link(hub_client, other)
        await c.post(f"/sandbox/instances/{other}/faults", json={"kind": "auth_failure"})
        await wait_state(hub_client, other, "logged_out")
        await a.call("retry", c, f"/instances/{other}/retry")
    assert differences(a.got) == []
    # arrays were checked element by element: make sure there were elements to check
    assert len(a.got["queue"][1]["items"]) == 2 and a.got["queue"][1]["depth"] == 2
    assert a.got["system status"][1]["instances"] and a.got["list instances"][1]


async def _qr_shown(c: httpx.AsyncClient, iid: str) -> bool:
    return (await c.get(f"/instances/{iid}/client/qr")).status_code == 200


@pytest.mark.hub_settings(ready_probe_timeout_ms=400, send_interval_ms=0, restore_stagger_ms=0)
@pytest.mark.timeout(60)
async def test_every_old_event_arrives_in_its_golden_shape(hub_client: HubClient) -> None:
    c = hub_client.client
    with Receiver() as rx:
        hook = {"url": rx.url, "events": []}
        await c.post("/instances", json={"name": SHOP, "webhook": hook})
        await link(hub_client, SHOP)
        poll = (await c.post(f"/instances/{SHOP}/client/action/create-poll",
                             json={"chatId": CHAT, "caption": "Confirm?", "options": ["Yes", "No"]})).json()
        sent = await until(lambda: _sent(c, poll["queueId"]))
        await c.post(f"/sandbox/instances/{SHOP}/votes", json={"pollMessageId": sent, "voter": CHAT,
                                                                "selectedOptions": ["Yes"]})
        await c.post(f"/sandbox/instances/{SHOP}/messages", json={"from": CHAT, "text": "hi"})
        await received(rx, lambda got: bool(of_event(got, "vote_update")) and bool(of_event(got, "message")))
        await c.post(f"/sandbox/instances/{SHOP}/faults", json={"kind": "disconnect"})
        await received(rx, lambda got: bool(of_event(got, "disconnected")))
        await wait_state(hub_client, SHOP, "ready")
        await c.post(f"/sandbox/instances/{SHOP}/faults", json={"kind": "temporary_ban"})
        await received(rx, lambda got: bool(of_event(got, "restricted")))

        slow = "compat-never-ready"
        await c.post("/instances", json={"name": slow, "webhook": hook})
        await c.post(f"/sandbox/instances/{slow}/faults", json={"kind": "never_ready"})
        await until(lambda: _scan(c, slow))
        await received(rx, lambda got: any(r.json["data"].get("reason") == "ready_timeout"
                                           or r.json["event"] == "ready_timeout" for r in got))
        other = "compat-logged-out"
        await c.post("/instances", json={"name": other, "webhook": hook})
        await link(hub_client, other)
        await c.post(f"/sandbox/instances/{other}/faults", json={"kind": "auth_failure"})
        got = await received(rx, lambda got: bool(of_event(got, "auth_failure")))

    problems = []
    for event, shape in golden.EVENTS.items():
        bodies = [r.json for r in of_event(got, event)]
        if not bodies:
            problems.extend(checker.undocumented(f"event {event}", ["(event): never sent"]))
            continue
        for body in bodies:
            found = checker.diff(golden.EVENT_ENVELOPE, body) + checker.diff(shape, body["data"], "data")
            problems.extend(f"{event} {d}" for d in checker.undocumented(f"event {event}", found))
    assert sorted(set(problems)) == [], "\n".join(sorted(set(problems)))


async def _sent(c: httpx.AsyncClient, queue_id: str) -> str | None:
    item = (await c.get(f"/instances/{SHOP}/messages/{queue_id}")).json()["item"]
    return item["messageId"] if item["status"] == "sent" else None


async def _scan(c: httpx.AsyncClient, iid: str) -> bool:
    return (await c.post(f"/sandbox/instances/{iid}/scan")).status_code == 200


async def test_out_of_scope_routes_are_listed_in_the_docs_and_answer_404_in_the_old_shape(
        hub_client: HubClient) -> None:
    text = checker.DOC.read_text(encoding="utf-8")
    assert [r for r in golden.OUT_OF_SCOPE if f"`{r}`" not in text] == []
    for route in golden.OUT_OF_SCOPE:
        method, path = route.split(" ", 1)
        r = await hub_client.client.request(method, path.replace(":id", "shop"))
        assert (r.status_code, checker.diff(golden.error(404), r.json())) == (404, []), route


@pytest.mark.parametrize(("shape", "value", "expected"), [
    ({"a": "int"}, {"a": 1, "b": 2}, []),
    ({"a": "int"}, {}, ["a: missing"]),
    ({"a": "int"}, {"a": True}, ["a: expected int, got true"]),
    ({"a": "iso|null"}, {"a": 1796032800000}, ["a: expected iso|null, got 1796032800000"]),
    ({"s": "=success"}, {"s": "queued"}, ['s: expected =success, got "queued"']),
    ({"s": "=403"}, {"s": "403"}, ['s: expected =403, got "403"']),
    ({"i": [{"id": "str"}]}, {"i": [{"id": "x"}, {"queueId": "y"}]}, ["i[1].id: missing"]),
])
def test_the_checker_finds_each_kind_of_difference(shape: Any, value: Any, expected: list[str]) -> None:
    assert checker.diff(shape, value) == expected
