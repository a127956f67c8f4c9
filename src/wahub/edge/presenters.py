"""Presenters: the API's read models (status documents, list summaries, the QR as a PNG).

They shape what the runtime knows into the JSON the native API and the dashboard show; the
numbers come from persisted records through the hub's store and from the live runtime.
"""

from __future__ import annotations

from typing import Any

from wahub.domain import lifecycle, ratelimit, webhookurl
from wahub.runtime.events import qr_png_b64
from wahub.runtime.hub import Hub
from wahub.runtime.outbox import limits_for
from wahub.runtime.registry import InstanceRuntime

__all__ = ["qr_png_b64", "status", "summary"]


async def summary(hub: Hub, instance_id: str) -> dict[str, Any]:
    """The few figures a list of instances shows (cheaper than :func:`status`). Raises NotFound.

    Shape: ``{"depth", "uncertain", "sent1h", "lastError", "dead"}``.
    """
    rt = hub.get(instance_id)
    now = hub.clock.now_ms()
    stats = await hub.store.queue_stats(rt.id)
    sent1h = await hub.store.count_sent_since(rt.id, now - ratelimit.HOUR_MS)
    events = await hub.store.event_stats(rt.id)
    return {"depth": stats.depth, "uncertain": stats.by_status.get("uncertain", 0), "sent1h": sent1h,
            "lastError": rt.last_error, "dead": events["dead"]}

async def status(hub: Hub, instance_id: str) -> dict[str, Any]:
    """The native status document (DESIGN §5), counters derived from persisted records.

    ``degraded`` (zombie session) and ``storeFault`` (the store cannot write) are ``{since, reason}``
    or None.
    """
    rt = hub.get(instance_id)
    now = hub.clock.now_ms()
    store = hub.store
    stats = await store.queue_stats(rt.id)
    history = await store.send_history(rt.id, now - ratelimit.HOUR_MS)
    limits = limits_for(hub.settings, rt.record)
    per_min, per_hour = ratelimit.usage(history, now)
    nxt = ratelimit.next_allowed(history, now, limits)
    used, window = await rt.supervisor.budget()
    events = await store.event_stats(rt.id)
    transitions = await store.transitions(rt.id, 10)
    sent24 = await store.count_sent_since(rt.id, now - 86_400_000)
    failures1h = await store.count_failures_since(rt.id, now - ratelimit.HOUR_MS)
    disconnects1h = await store.count_transitions_to(rt.id, "disconnected", now - ratelimit.HOUR_MS)
    return {
        "instance": {"id": rt.id, "name": rt.record.name, "state": rt.state.value,
                     "status": lifecycle.external_status(rt.state, rt.qr is not None),
                     "since": rt.state_since, "reason": rt.state_reason, "createdAt": rt.record.created_at,
                     "terminal": rt.state in lifecycle.TERMINAL, "restrictedUntil": rt.restricted_until,
                     "owner": hub.owner_of(rt)},
        "client": {"phoneNumber": rt.phone, "displayName": rt.push_name, "engine": hub.engine_factory.name},
        "transitions": [{"at": tr.at, "from": tr.from_state, "to": tr.to_state, "reason": tr.reason}
                        for tr in transitions],
        "queue": {"depth": stats.depth, "byStatus": stats.by_status, "maxSize": hub.settings.max_queue_size,
                  "oldestQueuedAt": stats.oldest_queued_at,
                  "oldestAgeMs": now - stats.oldest_queued_at if stats.oldest_queued_at else None,
                  "uncertain": stats.by_status.get("uncertain", 0),
                  "sendLoopRunning": hub.outbox.send_loop_running(rt.id)},
        "rateLimits": {
            "sendsPerMinute": {"current": per_min, "max": limits.per_minute,
                               "limited": per_min >= limits.per_minute},
            "sendsPerHour": {"current": per_hour, "max": limits.per_hour, "limited": per_hour >= limits.per_hour},
            "intervalMs": limits.interval_ms, "nextAllowedAt": nxt.at_ms, "nextAllowedReason": nxt.reason},
        "counters": {"sent24h": sent24, "sent1h": per_hour, "failures1h": failures1h,
                     "disconnects1h": disconnects1h},
        "reconnection": {"restartsInWindow": len(used), "maxRestarts": hub.settings.max_restarts_per_window,
                         "windowMinutes": hub.settings.restart_window_minutes,
                         "budgetFreesAt": used[0] + window if used else None,
                         "consecutiveFailures": rt.supervisor.failures},
        "webhook": await _webhook_status(hub, rt, events, now),
        "lastError": rt.last_error,
        "degraded": rt.watch.state,
        "storeFault": hub.store_health.fault,
    }

async def _webhook_status(hub: Hub, rt: InstanceRuntime, stats: dict[str, Any], now: int) -> dict[str, Any]:
    """Delivery status: stored counts (backlog, dead) plus this process's lane health (epoch ms).

    ``lastError`` is the newest failed attempt seen by this process, else the newest error
    stored on an event; ``failing`` is true while the lane's latest attempts keep failing.
    """
    head = await hub.store.head_event(rt.id)
    health = hub.dispatcher.health(rt.id)
    out: dict[str, Any] = {"url": webhookurl.redact(rt.record.webhook_url), "events": rt.record.webhook_events,
                           "secretConfigured": bool(rt.record.webhook_secret or hub.settings.webhook_secret),
                           **stats}
    out.update({"oldestPendingAt": head.created_at if head else None,
                "oldestPendingAgeMs": now - head.created_at if head else None,
                "nextAttemptAt": head.next_attempt_at if head else None,
                "headAttempts": head.attempts if head else 0,
                "lastAttemptAt": None, "lastErrorAt": None, "lastStatusCode": None,
                "consecutiveFailures": 0, "failing": False})
    if health is not None:
        if health.last_success_at is not None:
            out["lastSuccessAt"] = max(out.get("lastSuccessAt") or 0, health.last_success_at)
        if health.last_error is not None:
            out.update(lastError=health.last_error, lastErrorAt=health.last_error_at,
                       lastStatusCode=health.last_status_code)
        out.update(lastAttemptAt=health.last_attempt_at, consecutiveFailures=health.consecutive_failures,
                   failing=health.consecutive_failures > 0)
    return out
