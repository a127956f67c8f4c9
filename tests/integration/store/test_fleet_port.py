"""``fleet_figures`` and ``get_event`` on every store implementation (memory, SQLite, PostgreSQL).

The fleet figures feed the dashboard list and the metrics scrape: they must agree with the
per-instance reads (``queue_stats``, ``count_sent_since``, ``event_stats``) they replace.
"""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft, enqueue, send
from wahub.store.base import Store

pytestmark = [pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True), pytest.mark.timeout(60)]


async def test_fleet_figures_match_the_per_instance_reads(store: Store) -> None:
    sent_item, _, _ = await enqueue(store, "k1", now=T0)
    await enqueue(store, "k2", now=T0 + 5)
    await enqueue(store, "k3", now=T0 + 9)
    claimed = await store.claim_next("a", T0 + 10)
    assert claimed is not None and claimed.queue_id == sent_item.queue_id
    await send(store, claimed, "wamid.1", T0 + 10)
    await enqueue(store, "kb", instance="b", now=T0 + 20)
    e1, e2, e3 = draft("a"), draft("a"), draft("b")
    await store.add_events([e1, e2, e3], T0)
    head = await store.head_event("a")
    assert head is not None
    await store.event_failed(head.seq, now=T0 + 1, next_attempt_at=None, error="HTTP 404", status_code=404)

    figures = await store.fleet_figures(None, sent_since=T0)
    a, b = figures["a"], figures["b"]
    stats_a = await store.queue_stats("a")
    assert a.by_status == stats_a.by_status == {"sent": 1, "queued": 2}
    assert a.depth == stats_a.depth == 2
    assert a.oldest_open_at == stats_a.oldest_queued_at == T0 + 5
    assert a.sent == await store.count_sent_since("a", T0) == 1
    events_a = await store.event_stats("a")
    assert (a.events_dead, a.events_pending) == (events_a["dead"], events_a["backlog"]) == (1, 1)
    assert (b.by_status, b.sent, b.events_pending, b.events_dead) == ({"queued": 1}, 0, 1, 0)
    assert (await store.fleet_figures(None, sent_since=T0 + 10))["a"].sent == 0  # only sends after sent_since

    only_b = await store.fleet_figures(["b"], sent_since=T0)
    assert set(only_b) == {"b"}
    assert await store.fleet_figures(["nobody"], sent_since=T0) == {}


async def test_get_event_returns_payload_and_last_answer_of_that_instance_only(store: Store) -> None:
    ev = draft("a", event="message", body='{"event":"message","instanceId":"a","data":{}}')
    await store.add_events([ev], T0)
    head = await store.head_event("a")
    assert head is not None
    await store.event_failed(head.seq, now=T0 + 1, next_attempt_at=T0 + 100, error="HTTP 500", status_code=500)
    got = await store.get_event("a", ev.event_id)
    assert got is not None
    assert (got.body, got.attempts, got.last_status_code, got.last_error) == (ev.body, 1, 500, "HTTP 500")
    assert await store.get_event("b", ev.event_id) is None
    assert await store.get_event("a", "evt_missing") is None
