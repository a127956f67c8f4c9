"""``GET /metrics`` after a scripted scenario: the key series carry the values the scenario implies.

Instance A is linked and sends five messages with four sends a minute allowed: the first, sent
alone, fails transiently once (one retry, then a ``backoff`` deferral), one recipient is not on WhatsApp (one
failure, not counted in the rate window), three are sent and the fifth waits for the minute window
(``minute_limit``). Then A's connection drops (one disconnect; the reconnect backoff is long, so A stays
``disconnected``). Instance B is never linked, gets one manual hard restart, and its webhooks go to
a receiver answering 404 (dead letters); A's receiver answers 200 (delivered).
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HubClient
from tests.support.polling import until
from tests.support.receiver import Receiver

pytestmark = pytest.mark.hub_settings(max_sends_per_minute=4, send_interval_ms=0, retry_base_backoff_ms=100,
                                      retry_max_backoff_ms=200, restart_backoff_ms=600_000,
                                      webhook_max_attempts=1)

UNREGISTERED = "201000000777"


class Scrape:
    """One parsed scrape: ``value(name, **labels)`` of a sample, None when absent."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def value(self, name: str, **labels: str) -> float | None:
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        return None

    def labels_of(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


async def scrape(hc: HubClient) -> Scrape:
    r = await hc.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return Scrape(r.text)




@pytest.mark.timeout(60)
async def test_key_series_after_a_scripted_scenario(hub_client: HubClient) -> None:
    c = hub_client.client
    with Receiver() as ok_receiver, Receiver(default_status=404) as gone_receiver:
        a = (await c.post("/instances", json={"name": "shop-a", "webhook": {"url": ok_receiver.url}})).json()
        b = (await c.post("/instances", json={"name": "shop-b", "webhook": {"url": gone_receiver.url}})).json()
        a_id, b_id = a["instance"]["id"], b["instance"]["id"]

        before = await scrape(hub_client)
        assert before.value("wahub_instance_state", instance=b_id, state="ready") == 0

        assert (await c.post(f"/sandbox/instances/{a_id}/scan", json={})).status_code == 200
        await until(lambda: _state_is(hub_client, a_id, "ready"))
        for fault in ({"kind": "send_error", "mode": "transient", "count": 1},
                      {"kind": "unregistered", "chatId": UNREGISTERED}):
            assert (await c.post(f"/sandbox/instances/{a_id}/faults", json=fault)).status_code == 200

        async def send(n: int, chat: str) -> None:
            r = await c.post(f"/instances/{a_id}/client/action/send-message",
                             json={"chatId": chat, "message": f"order {n} confirmed"})
            assert r.status_code == 202, r.text

        # Alone in the queue, the retried item makes the loop wait for its backoff.
        await send(0, "201000000001")
        await until(lambda: _sent_count(hub_client, a_id, 1))
        for n, chat in enumerate([UNREGISTERED, "201000000002", "201000000003", "201000000004"], start=1):
            await send(n, chat)

        async def drained() -> Scrape | None:
            s = await scrape(hub_client)
            done = (s.value("wahub_queue_items", instance=a_id, status="sent") == 3
                    and s.value("wahub_queue_items", instance=a_id, status="failed") == 1
                    and (s.value("wahub_send_deferrals_total", instance=a_id, reason="minute_limit") or 0) >= 1)
            return s if done else None

        s = await until(drained)
        assert s.value("wahub_sends_total", instance=a_id, outcome="sent") == 3
        assert s.value("wahub_sends_total", instance=a_id, outcome="failed") == 1
        assert s.value("wahub_sends_total", instance=a_id, outcome="retry") == 1
        assert s.value("wahub_send_deferrals_total", instance=a_id, reason="backoff") >= 1  # type: ignore[operator]
        assert s.value("wahub_queue_items", instance=a_id, status="queued") == 1
        assert s.value("wahub_queue_items", instance=a_id, status="sending") == 0
        assert s.value("wahub_uncertain_items", instance=a_id) == 0
        oldest = s.value("wahub_queue_oldest_age_seconds", instance=a_id)
        assert oldest is not None and 0 <= oldest < 60
        assert s.value("wahub_instance_state", instance=a_id, state="ready") == 1
        assert s.value("wahub_instance_state", instance=a_id, state="connecting") == 0

        # A's connection drops: one disconnect, and A stays disconnected (long reconnect backoff).
        assert (await c.post(f"/sandbox/instances/{a_id}/faults", json={"kind": "disconnect"})).status_code == 200
        await until(lambda: _state_is(hub_client, a_id, "disconnected"))
        # B: one manual hard restart.
        assert (await c.post(f"/instances/{b_id}/restart", json={"type": "hard"})).status_code == 200

        async def settled() -> Scrape | None:
            s = await scrape(hub_client)
            done = (s.value("wahub_restarts_total", instance=b_id, kind="hard") == 1
                    and (s.value("wahub_webhook_deliveries_total", instance=b_id, outcome="dead") or 0) >= 1
                    and (s.value("wahub_webhook_deliveries_total", instance=a_id, outcome="delivered") or 0) >= 1)
            return s if done else None

        s = await until(settled)
        assert s.value("wahub_disconnects_total", instance=a_id) == 1
        lead = s.value("wahub_send_claim_lead_ms")  # claims were made: the longest of them, under the cap
        assert lead is not None and 0 <= lead <= 500, lead
        assert s.value("wahub_instance_state", instance=a_id, state="disconnected") == 1
        assert s.value("wahub_instance_state", instance=a_id, state="ready") == 0
        assert s.value("wahub_webhook_deliveries_total", instance=b_id, outcome="delivered") is None
        assert s.value("wahub_webhook_deliveries_total", instance=a_id, outcome="dead") is None
        for iid in (a_id, b_id):
            attempts = sum(s.value("wahub_webhook_deliveries_total", instance=iid, outcome=o) or 0
                           for o in ("delivered", "retry", "dead"))
            assert s.value("wahub_webhook_delivery_seconds_count", instance=iid) == attempts

    # HTTP series are labelled by route template, never by the raw path.
    send_route = "/instances/{instance_id}/client/action/send-message"
    assert s.value("wahub_http_requests_total", method="POST", route=send_route, status="202") == 5
    assert s.value("wahub_http_request_seconds_count", method="POST", route=send_route) == 5
    routes = s.labels_of("wahub_http_requests_total", "route")
    assert "/instances/{instance_id}/restart" in routes
    assert not any(a_id in r or b_id in r for r in routes), routes


async def _sent_count(hc: HubClient, instance_id: str, n: int) -> bool:
    r = await hc.client.get(f"/instances/{instance_id}/status")
    return bool(r.json()["queue"]["byStatus"].get("sent", 0) == n)


async def _state_is(hc: HubClient, instance_id: str, state: str) -> bool:
    r = await hc.client.get(f"/instances/{instance_id}")
    return bool(r.json()["instance"]["state"] == state)


async def test_metrics_need_the_api_key(hub_client: HubClient) -> None:
    r = await hub_client.client.get("/metrics", headers={"authorization": "Bearer wrong-key-123"})
    assert r.status_code == 403
    r = await hub_client.client.get("/metrics", headers={"authorization": ""})
    assert r.status_code == 401


@pytest.mark.hub_settings(metrics_require_auth=False)
async def test_metrics_can_be_open(hub_client: HubClient) -> None:
    r = await hub_client.client.get("/metrics", headers={"authorization": ""})
    assert r.status_code == 200
    assert "wahub_http_requests_total" in r.text
