"""What the dashboard pages show: template rendering and the view models built from Hub calls."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from wahub import __version__
from wahub.domain import lifecycle, webhookurl
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemStatus, OutboxItem
from wahub.edge import presenters
from wahub.runtime.events import WEBHOOK_EVENTS
from wahub.runtime.hub import Hub

QUEUE_PAGE = 100
RECENT_EVENTS = 20
DEAD_LETTERS_PAGE = 10
FLEET_PAGE = 50
STATUS_FILTERS = tuple(s.value for s in ItemStatus)
STATES = tuple(s.value for s in State)

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
    "webhook_saved": "Webhook settings saved.",
    "test_message": "Test message queued; it is sent when the instance is ready (see the queue below).",
    "test_poll": "Test poll queued; it is sent when the instance is ready (see the queue below).",
    "scanned": "Sandbox QR code scanned; the instance links and turns ready.",
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


def page_number(value: str | None) -> int:
    """A 1-based page number from a query value (anything else is page 1)."""
    return int(value) if value and value.isdigit() and 0 < int(value) < 1_000_000 else 1


def display_url(url: str | None) -> str | None:
    """A webhook URL as shown: credentials embedded in it (``user:pass@``) are masked."""
    return webhookurl.redact(url)


def condition(value: Any) -> str:
    """The text of an optional status condition (``degraded``, ``storeFault``): its reason or error, if any."""
    if isinstance(value, Mapping):
        parts = [str(value[k]) for k in ("reason", "error", "message", "detail") if value.get(k)]
        return " · ".join(parts)
    return value if isinstance(value, str) else ""


_env.filters["condition"] = condition


async def fleet_context(hub: Hub, q: str | None, state: str | None, page: str | None) -> dict[str, Any]:
    """One page of the instances list, searched by name or id and filtered by state.

    The search and the state counts run on the hub's in-memory instances; the figures of the
    ``FLEET_PAGE`` rows shown come from one aggregate store read, whatever the fleet's size.
    """
    runtimes = sorted(hub.instances.values(), key=lambda rt: rt.id.lower())
    needle = (q or "").strip().lower()
    wanted = state if state in STATES else ""
    matching = [rt for rt in runtimes
                if (not needle or needle in rt.id.lower() or needle in rt.record.name.lower())
                and (not wanted or rt.state.value == wanted)]
    pages = max(1, -(-len(matching) // FLEET_PAGE))
    current = min(page_number(page), pages)
    shown = matching[(current - 1) * FLEET_PAGE:current * FLEET_PAGE]
    figures = await hub.fleet_summaries([rt.id for rt in shown]) if shown else {}
    rows = []
    for rt in shown:
        f = figures.get(rt.id)
        if f is None:  # deleted while listing
            continue
        rows.append({"id": rt.id, "name": rt.record.name, "badge": badge(rt.state.value, rt.qr is not None),
                     "phone": rt.phone, "depth": f["depth"], "uncertain": f["uncertain"], "sent1h": f["sent1h"],
                     "last_error": f["lastError"], "dead": f["deadLetters"], "failing": f["webhookFailing"],
                     "backlog": f["webhookBacklog"], "degraded": f.get("degraded"), "node": hub.owner_of(rt)})
    counts = Counter(rt.state.value for rt in runtimes)

    def link(**changes: Any) -> str:
        query = {"q": q or "", "state": wanted, "page": str(current), **changes}
        return "?" + urlencode({k: v for k, v in query.items() if v and v != "1"})

    return {"rows": rows, "q": q or "", "state": wanted, "page": current, "pages": pages,
            "nodes": hub.placement is not None,  # several nodes: a column names the one running each instance
            "total": len(runtimes), "matching": len(matching), "first": (current - 1) * FLEET_PAGE + 1,
            "states": [(s, STATE_LABELS.get(s, s), counts[s]) for s in STATES if counts[s]],
            "self_query": link(), "prev_query": link(page=str(current - 1)) if current > 1 else None,
            "next_query": link(page=str(current + 1)) if current < pages else None,
            "state_query": {s: link(state=s, page="1") for s in STATES}, "all_query": link(state="", page="1")}


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
    elif item.kind.value == "text":
        text = str(payload.get("message", ""))
    else:  # media, location, vcard, reaction, edit, revoke, forward: the kind and its most telling field
        detail = next((str(payload[k]) for k in ("caption", "message", "name", "displayName", "reaction",
                                                 "messageId") if payload.get(k)), "")
        text = f"[{payload.get('mediaType') or item.kind.value}] {detail}".strip()
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


def _event_row(ev: Any) -> dict[str, Any]:
    return {"event_id": ev.event_id, "event": ev.event, "status": ev.status, "attempts": ev.attempts,
            "created_at": ev.created_at, "delivered_at": ev.delivered_at, "error": ev.last_error,
            "code": ev.last_status_code, "next_attempt_at": ev.next_attempt_at}


async def webhooks_context(hub: Hub, instance_id: str, dead_page: str | None = None) -> dict[str, Any]:
    """Recent webhook deliveries (newest first) and one page of the dead letters that can be replayed."""
    rt = hub.get(instance_id)
    recent = await hub.list_events(rt.id, limit=RECENT_EVENTS)
    figures = (await hub.fleet_summaries([rt.id])).get(rt.id, {})
    dead_total = int(figures.get("deadLetters", 0))
    pages = max(1, -(-dead_total // DEAD_LETTERS_PAGE))
    current = min(page_number(dead_page), pages)
    dead = await hub.list_events(rt.id, status="dead", limit=DEAD_LETTERS_PAGE,
                                 offset=(current - 1) * DEAD_LETTERS_PAGE)
    return {"instance_id": rt.id, "recent": [_event_row(e) for e in recent], "dead": [_event_row(e) for e in dead],
            "dead_total": dead_total, "dead_page": current, "dead_pages": pages,
            "webhook_url": display_url(rt.record.webhook_url)}


async def delivery_context(hub: Hub, instance_id: str, event_id: str) -> dict[str, Any]:
    """One webhook event: the exact payload sent (pretty-printed) and how the receiver last answered."""
    rt = hub.get(instance_id)
    ev = await hub.get_event(rt.id, event_id)
    try:
        payload = json.dumps(json.loads(ev.body), indent=2, ensure_ascii=False)
    except ValueError:
        payload = ev.body
    return {"instance_id": rt.id, "name": rt.record.name, "ev": _event_row(ev), "payload": payload,
            "webhook_url": display_url(rt.record.webhook_url)}


async def instance_context(hub: Hub, instance_id: str, status: str | None,
                           dead_page: str | None = None) -> dict[str, Any]:
    """Everything the instance page shows on first render."""
    live = await live_context(hub, instance_id)
    queue = await queue_context(hub, instance_id, status)
    hooks = await webhooks_context(hub, instance_id, dead_page)
    rec = hub.get(instance_id).record
    return {**live, **queue, **hooks, "events_filter": rec.webhook_events, "pairing_code": None, "phone": "",
            "sandbox": hub.sandbox is not None, "all_events": WEBHOOK_EVENTS, "own_secret": bool(rec.webhook_secret),
            "hub_secret": bool(hub.settings.webhook_secret)}
