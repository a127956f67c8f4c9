"""Native routes: status, restart, queue, webhook deliveries, poll votes, metrics, health."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from wahub.api import legacy, schemas
from wahub.api.auth import require_key
from wahub.api.waapi import _dump, hub_of, ok
from wahub.domain.errors import InvalidInput, NotFound
from wahub.domain.outbox import ItemStatus, OutboxItem
from wahub.edge import presenters
from wahub.runtime.hub import Hub

router = APIRouter(dependencies=[Depends(require_key)], tags=["native"])
public = APIRouter(tags=["health"])
READY_STORE_TIMEOUT_S = 3.0  # /ready answers 503 when the store's ping takes longer than this


def item_json(item: OutboxItem) -> dict[str, Any]:
    """The API shape of an outbox item."""
    return {"queueId": item.queue_id, "instanceId": item.instance_id, "idempotencyKey": item.idempotency_key,
            "keySource": item.key_source, "kind": item.kind.value, "chatId": item.chat_id,
            "payload": public_payload(item.payload), "status": item.status.value, "attempts": item.attempts,
            "nextAttemptAt": item.next_attempt_at, "createdAt": item.created_at, "updatedAt": item.updated_at,
            "sentAt": item.sent_at, "messageId": item.message_id, "ack": item.ack, "lastError": item.last_error,
            "errorReason": item.error_reason}


def public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """An item's payload as shown: a media file's bytes (``data``) are left out, its ``size`` stays."""
    if "data" not in payload and "data" not in (payload.get("content") or {}):
        return payload
    out = {k: v for k, v in payload.items() if k != "data"}
    if isinstance(out.get("content"), dict):
        out["content"] = {k: v for k, v in out["content"].items() if k != "data"}
    return out


async def poll_votes_payload(hub: Hub, instance_id: str, message_id: str) -> dict[str, Any]:
    """The poll as sent plus every voter's latest vote."""
    rt = hub.get(instance_id)
    poll, votes = await hub.poll_votes(rt.id, message_id)
    if poll is None and not votes:
        raise NotFound(f"no poll {message_id} on instance {rt.id}")
    return {"pollMessageId": message_id,
            "poll": None if poll is None else {"chatId": poll.chat_id, "caption": poll.caption,
                                               "options": poll.options, "multipleAnswers": poll.multiple,
                                               "idempotencyKey": poll.idempotency_key, "queueId": poll.queue_id},
            "votes": [{"voter": v.voter, "selectedOptions": v.selected, "timestamp": v.timestamp,
                       "voterAlt": v.voter_alt} for v in votes]}


@public.get("/health", summary="Liveness (no auth)")
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "service": "wa-hub", "instanceCount": len(hub_of(request).instances),
                         **legacy.system_load()})


@public.get("/ready", summary="Readiness: the store answers and the hub has started (no auth)")
async def ready(request: Request) -> JSONResponse:
    hub = hub_of(request)
    try:  # a store that does not answer in time is as unready as one that refuses
        store_ok = await asyncio.wait_for(hub.store_reachable(), READY_STORE_TIMEOUT_S)
    except TimeoutError:
        store_ok = False
    started = hub.started
    code = 200 if store_ok and started else 503
    return JSONResponse({"status": "ok" if code == 200 else "unavailable", "store": store_ok,
                         "engines": started}, status_code=code)


@public.get("/metrics", summary="Prometheus metrics (API key unless METRICS_REQUIRE_AUTH=false)")
async def metrics(request: Request) -> Response:
    hub = hub_of(request)
    if hub.settings.metrics_require_auth:
        await require_key(request)
    await hub.refresh_gauges()
    return Response(hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/instances/{instance_id}/status", summary="Full status: state, queue, limits, budget, webhooks")
async def status(request: Request, instance_id: str) -> JSONResponse:
    hub = hub_of(request)
    return ok(legacy.old_status(hub, await presenters.status(hub, instance_id)))


@router.post("/instances/{instance_id}/restart", summary="Soft or hard restart; returns at once (200)")
async def restart(request: Request, instance_id: str, body: schemas.Restart | None = None) -> JSONResponse:
    kind = _dump(body).get("type", "soft")
    hub = hub_of(request)
    before = hub.get(instance_id)
    banned_until = before.restricted_until if before.state.value == "restricted" else None
    rt = await hub.restart(instance_id, kind)
    payload: dict[str, Any] = {"status": "success", "message": f"Restart initiated (type: {kind})",
                               "instanceId": rt.id, "currentState": rt.state.value}
    if banned_until is not None and banned_until > hub.clock.now_ms():
        payload["warning"] = ("the instance was restricted by WhatsApp until "
                              f"{banned_until}; sending before then risks a longer ban")
    return JSONResponse(payload)


@router.get("/instances/{instance_id}/outbox", summary="Outbox items of every status, paged (oldest first)")
async def outbox(request: Request, instance_id: str, status: str | None = None,
                limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000_000),
                idempotencyKey: str | None = None) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    if idempotencyKey is not None:
        return ok({"item": item_json(await hub.outbox.get_item_by_key(rt.id, idempotencyKey))})
    statuses = [s for s in status.split(",") if s] if status else None
    for s in statuses or []:
        if s not in {x.value for x in ItemStatus}:
            raise InvalidInput(f"status {s!r} is not one of {', '.join(x.value for x in ItemStatus)}")
    items, total = await hub.outbox.list_items(rt.id, statuses=statuses, limit=limit, offset=offset)
    stats = await hub.outbox.queue_stats(rt.id)
    return ok({"instanceId": rt.id, "depth": stats.depth, "byStatus": stats.by_status, "total": total,
               "limit": limit, "offset": offset, "items": [item_json(i) for i in items]})


@router.delete("/instances/{instance_id}/queue", summary="Cancel every queued item")
async def clear_queue(request: Request, instance_id: str) -> JSONResponse:
    n = await hub_of(request).outbox.clear_queue(instance_id)
    return ok({"message": f"Queue cleared for instance {instance_id}", "cleared": n, "queueDepth": 0,
               "droppedFromOutbound": n})


@router.get("/instances/{instance_id}/messages/{queue_id}", summary="One outbox item by queueId")
async def get_message(request: Request, instance_id: str, queue_id: str) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    item = await hub.outbox.get_item(rt.id, queue_id)
    out: dict[str, Any] = {"item": item_json(item)}
    if item.kind.value == "poll" and item.message_id:
        _, votes = await hub.poll_votes(rt.id, item.message_id)
        out["votes"] = [{"voter": v.voter, "selectedOptions": v.selected, "timestamp": v.timestamp,
                         "voterAlt": v.voter_alt} for v in votes]
    return ok(out)


@router.post("/instances/{instance_id}/messages/{queue_id}/{action}",
             summary="cancel (queued) · retry (failed/canceled) · resend or close (uncertain)")
async def item_action(request: Request, instance_id: str, queue_id: str, action: str) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    actions = {"cancel": hub.outbox.cancel_item, "retry": hub.outbox.retry_item, "resend": hub.outbox.resend_item,
               "close": hub.outbox.close_item}
    if action not in actions:
        raise NotFound(f"unknown action {action!r}; use cancel, retry, resend or close")
    item = await actions[action](rt.id, queue_id)
    return ok({"item": item_json(item)})


@router.get("/instances/{instance_id}/polls/{message_id}/votes", summary="Latest votes on a poll")
async def poll_votes(request: Request, instance_id: str, message_id: str) -> JSONResponse:
    return ok(await poll_votes_payload(hub_of(request), instance_id, message_id))


def _event_json(ev: Any) -> dict[str, Any]:
    return {"eventId": ev.event_id, "event": ev.event, "status": ev.status, "attempts": ev.attempts,
            "nextAttemptAt": ev.next_attempt_at, "createdAt": ev.created_at, "deliveredAt": ev.delivered_at,
            "lastError": ev.last_error, "lastStatusCode": ev.last_status_code}


@router.get("/instances/{instance_id}/webhooks/deliveries", summary="Webhook events, newest first")
async def deliveries(request: Request, instance_id: str, status: str | None = None,
                     limit: int = Query(50, ge=1, le=500),
                     offset: int = Query(0, ge=0, le=1_000_000_000)) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise InvalidInput("status must be pending, delivered or dead")
    events = await hub.list_events(rt.id, status=status, limit=limit, offset=offset)
    return ok({"instanceId": rt.id, "events": [_event_json(e) for e in events]})


@router.get("/instances/{instance_id}/webhooks/dead-letters", summary="Events that exhausted their retries")
async def dead_letters(request: Request, instance_id: str, limit: int = Query(50, ge=1, le=500)) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    events = await hub.list_events(rt.id, status="dead", limit=limit)
    return ok({"instanceId": rt.id, "events": [_event_json(e) for e in events]})


@router.post("/instances/{instance_id}/webhooks/replay", summary="Replay one dead letter (eventId) or all")
async def replay(request: Request, instance_id: str, body: schemas.Replay | None = None) -> JSONResponse:
    event_id = _dump(body).get("eventId")
    if event_id is not None and not isinstance(event_id, str):
        raise InvalidInput("eventId must be a string")
    n = await hub_of(request).replay_events(instance_id, event_id)
    return ok({"replayed": n})
