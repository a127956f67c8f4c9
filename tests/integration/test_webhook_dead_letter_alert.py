"""The documented ``WaHubWebhookDeadLetters`` alert fires on real ``/metrics`` output.

A retryable failure (HTTP 503) on the last allowed attempt makes a dead letter; that attempt is
counted as ``outcome="dead"`` (it used to be counted as ``retry``, so the alert could never fire).
The alert expression is read from ``docs/dashboard.md`` and evaluated on two parsed scrapes the way
Prometheus would: per series, the increase between the scrapes, compared with the threshold.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HubClient
from tests.support.polling import until
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.hub_settings(webhook_max_attempts=2, webhook_retry_base_ms=10, webhook_retry_max_ms=20),
              pytest.mark.timeout(60)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"
Series = dict[tuple[tuple[str, str], ...], float]


def alert_expr(name: str) -> str:
    """The ``expr`` of alert ``name`` in the documented rules."""
    match = re.search(rf"- alert: {name}\b[^\n]*\n\s+expr: ([^\n]+)", DOCS.read_text())
    assert match, f"alert {name} is not documented"
    return match.group(1).strip()


def series(text: str, metric: str) -> Series:
    return {tuple(sorted(s.labels.items())): float(s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == metric}


def firing(expr: str, before: str, after: str) -> list[dict[str, str]]:
    """Series for which ``increase(metric{matchers}[window]) > threshold`` holds between two scrapes."""
    m = re.fullmatch(r'increase\((\w+)\{([^}]*)\}\[\w+\]\)\s*>\s*([\d.]+)', expr)
    assert m, f"unsupported alert expression {expr!r}"
    metric, matchers, threshold = m.group(1), m.group(2), float(m.group(3))
    wanted = [(k, op, v) for k, op, v in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]*)"', matchers)]
    old, new = series(before, metric), series(after, metric)
    out = []
    for labels, value in new.items():
        d = dict(labels)
        if all((d.get(k) == v) if op == "=" else re.fullmatch(v, d.get(k, "")) for k, op, v in wanted):
            if value - old.get(labels, 0.0) > threshold:  # a series absent before starts from 0
                out.append(d)
    return out


async def scrape(hc: HubClient) -> str:
    r = await hc.client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


async def test_dead_letters_after_retryable_failures_fire_the_documented_alert(hub_client: HubClient) -> None:
    c = hub_client.client
    expr = alert_expr("WaHubWebhookDeadLetters")
    before = await scrape(hub_client)
    with Receiver(default_status=503) as down, Receiver() as up:
        bad = (await c.post("/instances", json={"name": "down-shop", "webhook": {"url": down.url}})).json()
        good = (await c.post("/instances", json={"name": "up-shop", "webhook": {"url": up.url}})).json()
        bad_id, good_id = bad["instance"]["id"], good["instance"]["id"]

        async def settled() -> tuple[int, str] | None:
            # The attempt is counted before its outcome is stored: once the API shows the dead
            # letters and an empty backlog, the scrape has counted every one of them.
            status = (await c.get(f"/instances/{bad_id}/status")).json()["webhook"]
            if status["dead"] < 1 or status["backlog"] != 0:
                return None
            return status["dead"], await scrape(hub_client)

        dead_letters, after = await until(settled)
        counted = series(after, "wahub_webhook_deliveries_total").get((("instance", bad_id), ("outcome", "dead")))
        assert counted == dead_letters, (counted, dead_letters)
        assert down.requests, "the failing receiver was never called"

    fired = firing(expr, before, after)
    assert fired == [{"instance": bad_id, "outcome": "dead"}], fired
    attempts = series(after, "wahub_webhook_deliveries_total")
    # Two attempts per event: one retry, then the dead letter; nothing dead for the healthy receiver.
    assert attempts[(("instance", bad_id), ("outcome", "retry"))] == attempts[(("instance", bad_id),
                                                                               ("outcome", "dead"))]
    assert (("instance", good_id), ("outcome", "dead")) not in attempts
    assert firing(expr, after, after) == []  # no new dead letter, no alert
