"""``Metrics.render`` writes the fleet gauges itself: the result must parse to exactly the samples
prometheus_client's own formatter writes for the same values (escaping included)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wahub.observability import Metrics

STATES = ["initializing", "connecting", "ready", "error"]
STATUSES = ["queued", "sending", "sent", "uncertain"]
FLEET = {"shop-a": ("ready", {"queued": 2, "sent": 7}, 12.5),
         'odd"id\\with\nnewline': ("error", {"uncertain": 1}, 0.0)}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def reference() -> str:
    r = CollectorRegistry()
    state = Gauge("wahub_instance_state", "state", ["instance", "state"], registry=r)
    items = Gauge("wahub_queue_items", "items", ["instance", "status"], registry=r)
    oldest = Gauge("wahub_queue_oldest_age_seconds", "oldest", ["instance"], registry=r)
    uncertain = Gauge("wahub_uncertain_items", "uncertain", ["instance"], registry=r)
    for iid, (current, by_status, age) in FLEET.items():
        for s in STATES:
            state.labels(iid, s).set(1 if s == current else 0)
        for s in STATUSES:
            items.labels(iid, s).set(by_status.get(s, 0))
        oldest.labels(iid).set(age)
        uncertain.labels(iid).set(by_status.get("uncertain", 0))
    return generate_latest(r).decode()


def test_fleet_gauges_render_like_the_client_library() -> None:
    m = Metrics()
    for iid, (current, by_status, age) in FLEET.items():
        m.set_state(iid, current, STATES)
        m.set_queue(iid, by_status, STATUSES, age)
    m.send_outcome("shop-a", "sent")
    got = samples(m.render().decode())
    assert got[("wahub_sends_total", (("instance", "shop-a"), ("outcome", "sent")))] == 1
    fleet = {k: v for k, v in got.items()
             if not k[0].startswith(("wahub_send", "wahub_store_", "wahub_engine_events"))}  # hub-wide series
    assert fleet == samples(reference())
    assert len(fleet) == 2 * (len(STATES) + len(STATUSES) + 2)


def test_a_forgotten_instance_leaves_no_series() -> None:
    m = Metrics()
    m.set_state("gone", "ready", STATES)
    m.set_queue("gone", {"queued": 1}, STATUSES, 3.0)
    m.webhook_attempt("gone", "dead", 0.1)
    m.forget("gone")
    assert "gone" not in m.render().decode()
