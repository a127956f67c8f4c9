"""What the dashboard pages show: template rendering and the view models built from Hub calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from wahub import __version__
from wahub.api import presenters
from wahub.domain import lifecycle
from wahub.domain.errors import ApiError
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemStatus, OutboxItem
from wahub.runtime.hub import Hub

QUEUE_PAGE = 100
RECENT_EVENTS = 20
DEAD_LETTERS = 50
STATUS_FILTERS = tuple(s.value for s in ItemStatus)

# The pages load nothing but their own static files; inline scripts and styles are not allowed,
# so even markup that slipped past escaping could not run. htmx runs with eval disabled.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NOTICES = {
    "created": "Instance created. Scan the QR code with WhatsApp (Settings → Linked devices), or link it "
               "with a pairing code.",
    "canceled": "Item canceled.",
    "retried": "Item queued again.",
    "resent": "Uncertain item queued again; the recipient may receive it twice.",
    "closed": "Uncertain item closed without sending it again.",
    "replayed": "Dead letters queued for delivery again.",
    "restarted": "Restart requested.",
    "logged_out": "WhatsApp session ended; the instance and its queue are kept.",
    "deleted": "Instance deleted.",
}

STATE_LABELS = {"needs_qr": "needs QR", "logged_out": "logged out"}


def _ts(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(ms: int | None) -> str:
    if ms is None:
        return "–"
    s = max(0, ms // 1000)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


_env = Environment(loader=PackageLoader("wahub.dashboard", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters["ts"] = _ts
_env.filters["duration"] = _duration
_env.globals.update(version=__version__, static="/dashboard/static", prefix="/dashboard",
                    state_labels=STATE_LABELS)


def render(template: str, **context: Any) -> str:
    """Render a template (autoescaped); ``csrf`` is None on pages shown before login."""
    context.setdefault("notice", None)
    context.setdefault("error", None)
    return _env.get_template(template).render(**context)


def notice(code: str | None) -> str | None:
    """The fixed message for a ``?done=`` code (free text is never reflected from the URL)."""
    return NOTICES.get(code or "")


def status_filter(value: str | None) -> str | None:
    """A known item status, or None for all."""
    return value if value in STATUS_FILTERS else None


def badge(state: str, has_qr: bool) -> dict[str, str]:
    """How a state badge looks: ``state`` (CSS class and test hook) and its label."""
    label = STATE_LABELS.get(state, state)
    if has_qr and lifecycle.external_status(State(state), True) == "qr":
        label = "scan QR"
    return {"state": state, "label": label}


async def instance_rows(hub: Hub) -> list[dict[str, Any]]:
    """One row per instance for the list page (state, phone, queue depth, sent in 1 h, last error)."""
    rows = []
    for rt in list(hub.instances.values()):
        try:
            st = await presenters.summary(hub, rt.id)
        except ApiError:  # deleted while listing
            continue
        rows.append({"id": rt.id, "name": rt.record.name, "badge": badge(rt.state.value, rt.qr is not None),
                     "phone": rt.phone, "depth": st["depth"], "uncertain": st["uncertain"],
                     "sent1h": st["sent1h"], "last_error": st["lastError"], "dead": st["dead"]})
    return sorted(rows, key=lambda r: r["id"].lower())


async def live_context(hub: Hub, instance_id: str) -> dict[str, Any]:
    """The polled part of the instance page: state, QR, gauges, restart budget, state history."""
    rt = hub.get(instance_id)
    st = await presenters.status(hub, rt.id)
    now = hub.clock.now_ms()
    ready = rt.state == State.READY
    qr_png = presenters.qr_png_b64(rt.qr) if rt.qr is not None and not ready else None
    limits = st["rateLimits"]
    budget = st["reconnection"]
    nxt = limits["nextAllowedAt"]
    return {"instance_id": rt.id, "name": rt.record.name, "st": st, "ready": ready, "now": now,
            "badge": badge(rt.state.value, rt.qr is not None), "qr_png": qr_png,
            "state_age_ms": now - rt.state_since, "poll_seconds": 5 if ready else 2,
            "next_allowed_in_ms": nxt - now if nxt is not None and nxt > now else None,
            "budget_left": max(0, budget["maxRestarts"] - budget["restartsInWindow"]),
            "minute": limits["sendsPerMinute"], "hour": limits["sendsPerHour"]}


def _preview(item: OutboxItem) -> str:
    payload = item.payload
    if item.kind.value == "poll":
        text = f"{payload.get('caption', '')} [{' / '.join(payload.get('options', []))}]"
    else:
        text = str(payload.get("message", ""))
    return text if len(text) <= 160 else text[:157] + "…"


async def queue_context(hub: Hub, instance_id: str, status: str | None) -> dict[str, Any]:
    """The newest ``QUEUE_PAGE`` items (newest first), optionally of one status, with their actions."""
    rt = hub.get(instance_id)
    wanted = status_filter(status)
    statuses = [wanted] if wanted else None
    items, total = await hub.outbox.list_items(rt.id, statuses, limit=QUEUE_PAGE)
    if total > QUEUE_PAGE:
        items, total = await hub.outbox.list_items(rt.id, statuses, limit=QUEUE_PAGE, offset=total - QUEUE_PAGE)
    rows = [{"queue_id": i.queue_id, "key": i.idempotency_key, "kind": i.kind.value, "chat": i.chat_id,
             "preview": _preview(i), "status": i.status.value, "attempts": i.attempts, "error": i.last_error,
             "created_at": i.created_at, "sent_at": i.sent_at, "message_id": i.message_id,
             "next_attempt_at": i.next_attempt_at} for i in reversed(items)]
    return {"instance_id": rt.id, "items": rows, "total": total, "status": wanted or "",
            "filters": STATUS_FILTERS, "now": hub.clock.now_ms()}


def _event_name(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("event") if isinstance(data, dict) else None


async def webhooks_context(hub: Hub, instance_id: str) -> dict[str, Any]:
    """Recent webhook deliveries (newest first) and the dead letters that can be replayed."""
    rt = hub.get(instance_id)
    recent = await hub.list_events(rt.id, limit=RECENT_EVENTS)
    dead = await hub.list_events(rt.id, status="dead", limit=DEAD_LETTERS)

    def row(ev: Any) -> dict[str, Any]:
        return {"event_id": ev.event_id, "event": ev.event, "status": ev.status, "attempts": ev.attempts,
                "created_at": ev.created_at, "delivered_at": ev.delivered_at, "error": ev.last_error,
                "code": ev.last_status_code, "next_attempt_at": ev.next_attempt_at}

    return {"instance_id": rt.id, "recent": [row(e) for e in recent], "dead": [row(e) for e in dead],
            "webhook_url": rt.record.webhook_url}


async def instance_context(hub: Hub, instance_id: str, status: str | None) -> dict[str, Any]:
    """Everything the instance page shows on first render."""
    live = await live_context(hub, instance_id)
    queue = await queue_context(hub, instance_id, status)
    hooks = await webhooks_context(hub, instance_id)
    return {**live, **queue, **hooks, "events_filter": hub.get(instance_id).record.webhook_events,
            "pairing_code": None, "phone": ""}

