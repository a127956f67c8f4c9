"""Routes and answer shapes kept from the existing (Node) wa-hub, mapped onto this hub.

Old routes with no native twin: ``POST /instances/{id}/queue/trigger``, ``POST /instances/{id}/retry``,
``GET /instances/{id}/diagnostics``, ``GET /system/status``, ``GET /instances/{id}/client/info-raw``,
plus the old shapes of the queue listing, delete/logout and the debug fields of the status answers.
Every remaining difference is listed in ``docs/compatibility.md``.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from wahub.api.auth import require_key
from wahub.domain import lifecycle, sendsettings, webhookurl
from wahub.domain.errors import InvalidInput, NotFound
from wahub.domain.lifecycle import State
from wahub.edge import presenters
from wahub.runtime.events import iso
from wahub.runtime.hub import Hub
from wahub.runtime.registry import InstanceRuntime

__all__ = ["iso", "router"]

router = APIRouter(dependencies=[Depends(require_key)], tags=["existing wa-hub"])
_STARTED = time.monotonic()
_PENDING = ("queued", "sending")
# POST /instances on an existing id: what the existing wa-hub did, by our state.
_RELINK = frozenset({State.LOGGED_OUT, State.ERROR, State.STOPPED, State.NEEDS_QR})


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _ok(payload: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse({**payload, "status": "success"}, status_code=status_code)


def _brief(rt: InstanceRuntime) -> dict[str, Any]:
    """The ``instance`` object of a re-create answer; credentials in the webhook URL are masked."""
    return {"id": rt.id, "name": rt.record.name,
            "status": lifecycle.external_status(rt.state, rt.qr is not None), "state": rt.state.value,
            "phoneNumber": rt.phone, "webhookUrl": webhookurl.redact(rt.record.webhook_url),
            "webhookEvents": rt.record.webhook_events, "lastError": rt.last_error}


async def recreate(hub: Hub, rt: InstanceRuntime, webhook: dict[str, Any],
                   settings: dict[str, Any] | None = None) -> JSONResponse:
    """``POST /instances`` for an id that exists: 200, and reconnect or relink as the existing wa-hub did.

    A given ``webhook`` replaces the stored one first, given send ``settings`` (API names) too.
    ``ready`` → "already connected"; ``disconnected`` → soft restart;
    ``logged_out``/``error``/``stopped``/``needs_qr`` → hard restart (a fresh QR); any other state
    (connecting, restricted…) is left alone and named.
    """
    kwargs: dict[str, Any] = {"settings": sendsettings.pick(settings or {})}
    if webhook.get("url"):
        kwargs["webhook_url"] = webhook["url"]
        if "events" in webhook:
            kwargs["events"] = webhook["events"] if webhook["events"] is not None else []
        if "secret" in webhook:  # validated like any update (a string of at most 512 characters)
            kwargs["webhook_secret"] = webhook["secret"]
    if webhook.get("url") or kwargs["settings"]:
        await hub.update_instance(rt.id, **kwargs)
    state = rt.state
    if state == State.READY:
        message = "Instance already connected"
    elif state == State.DISCONNECTED:
        await hub.restart(rt.id, "soft")
        message = "Reconnection initiated"
    elif state in _RELINK:
        await hub.restart(rt.id, "hard")
        message = "Reconnection initiated: scan the new QR code to link"
    else:
        message = f"Instance exists with status: {state.value}"
    return _ok({"instance": _brief(hub.get(rt.id)), "message": message})


async def delete(hub: Hub, instance_id: str) -> dict[str, Any]:
    """Delete (idempotent) in the existing wa-hub's shape plus ``droppedFromOutbound``.

    ``{message, deleted, purged, purgedPaths, droppedFromOutbound}``: ``droppedFromOutbound`` counts
    the open (queued or sending) items the deletion removed (counted by the deletion itself), so
    nothing is dropped silently.
    """
    try:
        rt: InstanceRuntime | None = hub.get(instance_id)
    except NotFound:
        rt = None
    session: Path | None = None
    if rt is not None:
        sessions_dir = getattr(hub.engine_factory, "sessions_dir", None)
        if isinstance(sessions_dir, Path) and (sessions_dir / rt.id).exists():
            session = sessions_dir / rt.id
    dropped = await hub.delete_instance(instance_id)
    deleted = dropped is not None
    purged_paths = [str(session)] if session is not None and not session.exists() else []
    name = rt.id if rt is not None else instance_id
    return {"message": f"Instance {name} deleted successfully" if deleted else f"Instance {name} not found",
            "deleted": deleted, "purged": deleted, "purgedPaths": purged_paths, "droppedFromOutbound": dropped or 0}


def _last(transitions: list[dict[str, Any]], to: str) -> dict[str, Any] | None:
    return next((t for t in transitions if t["to"] == to), None)  # newest first


def debug_fields(hub: Hub, status: dict[str, Any]) -> dict[str, Any]:
    """The existing wa-hub's ``clientStatus`` debug fields, from the recorded transitions (ISO times)."""
    transitions = status["transitions"]
    ready = _last(transitions, "ready")
    disconnect = _last(transitions, "disconnected")
    return {"lastEvent": transitions[0]["to"] if transitions else None,
            "lastDisconnectReason": disconnect["reason"] if disconnect else None,
            "restartAttempts": status["reconnection"]["restartsInWindow"],
            "readyWatchdogMs": hub.settings.ready_probe_timeout_ms, "readyWatchdogStartAt": None,
            "authenticatedAt": None, "readySource": "event" if ready else None,
            "readyAt": iso(ready["at"]) if ready else None, "authenticatedToReadyMs": None,
            "readyPollAttempts": 0, "lastReadyPollError": None}


def old_status(hub: Hub, status: dict[str, Any]) -> dict[str, Any]:
    """The native status document with the existing wa-hub's fields added (``createdAt`` ISO)."""
    transitions = status["transitions"]
    ready = _last(transitions, "ready")
    disconnect = _last(transitions, "disconnected")
    logged_out = _last(transitions, "logged_out")
    restart = _last(transitions, "initializing")
    out = {**status}
    out["instance"] = {**status["instance"], "createdAt": iso(status["instance"]["createdAt"]),
                       "createdAtMs": status["instance"]["createdAt"]}
    out["client"] = {**status["client"], "lastReadyAt": iso(ready["at"]) if ready else None,
                     "lastDisconnectAt": iso(disconnect["at"]) if disconnect else None,
                     "lastDisconnectReason": disconnect["reason"] if disconnect else None,
                     "lastAuthFailureAt": iso(logged_out["at"]) if logged_out else None,
                     "lastEvent": transitions[0]["to"] if transitions else None}
    rec = status["reconnection"]
    out["reconnection"] = {**rec, "restartAttempts": rec["restartsInWindow"],
                           "lastRestartAt": iso(restart["at"]) if restart else None,
                           "restartHistoryLength": rec["restartsInWindow"],
                           "rateLimitExceeded": rec["restartsInWindow"] >= rec["maxRestarts"]}
    out["counters"] = {**status["counters"], "newChats24h": 0}
    return out


def system_load() -> dict[str, Any]:
    """The existing wa-hub's ``/health`` resource fields (Linux ``/proc``; None where unreadable)."""
    load = os.getloadavg()
    total_mb = used_mb = None
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total_kb = int(info["MemTotal"].split()[0])
        avail_kb = int(info["MemAvailable"].split()[0])
        total_mb, used_mb = round(total_kb / 1024), round((total_kb - avail_kb) / 1024)
    except (OSError, KeyError, ValueError):
        pass
    cpus = os.cpu_count() or 1
    return {"cpuPercent": round(min(100.0, load[0] / cpus * 100), 1), "loadavg": [round(x, 2) for x in load],
            "memoryUsedMB": used_mb, "memoryTotalMB": total_mb,
            "memoryPercent": round(used_mb / total_mb * 100, 1) if used_mb is not None and total_mb else None,
            "processRssMB": round(rss_bytes() / 1_048_576)}


def rss_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``), else its peak (``ru_maxrss``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@router.post("/instances/{instance_id}/queue/trigger", summary="Wake the send loop (existing wa-hub route)")
async def trigger(request: Request, instance_id: str) -> JSONResponse:
    hub = _hub(request)
    rt = hub.get(instance_id)
    hub.outbox.trigger_send(rt.id)
    depth = (await hub.outbox.queue_stats(rt.id)).depth
    return _ok({"success": True, "message": "Send loop triggered", "instanceId": rt.id,
                "instanceState": rt.state.value, "queueDepth": depth})


@router.post("/instances/{instance_id}/retry", summary="Start a stopped or failed instance again (hard restart)")
async def retry(request: Request, instance_id: str) -> JSONResponse:
    hub = _hub(request)
    rt = hub.get(instance_id)
    if rt.state not in lifecycle.TERMINAL and rt.state != State.DISCONNECTED:
        raise InvalidInput(f"Instance is {rt.state.value}: nothing to retry")
    await hub.restart(rt.id, "hard")
    return _ok({"message": "Retry initiated", "instanceId": rt.id})


@router.get("/instances/{instance_id}/diagnostics", summary="Instance diagnostics and process resources")
async def diagnostics(request: Request, instance_id: str) -> JSONResponse:
    hub = _hub(request)
    rt = hub.get(instance_id)
    status = await presenters.status(hub, rt.id)
    return _ok({"instanceId": rt.id, "state": rt.state.value, "lastError": rt.last_error,
                "stateSince": iso(rt.state_since), "stateReason": rt.state_reason,
                "queueDepth": status["queue"]["depth"], "transitions": status["transitions"],
                "webhook": status["webhook"],
                "process": {"memoryUsage": {"rss": rss_bytes(), "heapTotal": None, "heapUsed": None,
                                            "external": None},
                            "uptimeSeconds": int(time.monotonic() - _STARTED), "eventLoopLagMs": 0}})


@router.get("/system/status", summary="Hub-wide status for the existing wa-hub dashboard")
async def system_status(request: Request) -> JSONResponse:
    hub = _hub(request)
    instances = []
    queued: dict[str, int] = {}
    for rt in list(hub.instances.values()):
        queued[rt.id] = (await hub.outbox.queue_stats(rt.id)).depth
        instances.append({"id": rt.id, "state": rt.state.value, "lastError": rt.last_error,
                          "lastStateChangeAt": iso(rt.state_since),
                          "needsQrSince": iso(rt.state_since) if rt.state == State.NEEDS_QR else None,
                          "lastQrAt": iso(rt.qr_at), "qrRecoveryAttempts": 0, "restoreAttempts": 0,
                          "qrAgeSeconds": round((hub.clock.now_ms() - rt.qr_at) / 1000) if rt.qr_at else None,
                          "needsQrAgeSeconds": None})
    return _ok({"mode": "normal", "since": None, "syncingInstanceId": None,
                "queuedOutboundCount": sum(queued.values()), "queuedOutboundByInstance": queued,
                "inboundBufferCount": 0, "restoreQueue": None, "instances": instances,
                "perInstanceStates": instances})


@router.get("/instances/{instance_id}/client/info-raw", summary="Raw client facts (what this engine knows)")
async def info_raw(request: Request, instance_id: str) -> JSONResponse:
    hub = _hub(request)
    rt = hub.get(instance_id)
    return _ok({"instanceId": rt.id, "state": rt.state.value, "engine": hub.engine_factory.name,
                "info": {"wid": f"{rt.phone}@c.us" if rt.phone else None, "pushname": rt.push_name,
                         "phoneNumber": rt.phone} if rt.state == State.READY else None})


@router.get("/instances/{instance_id}/queue", summary="Pending items in the existing wa-hub's shape")
async def queue(request: Request, instance_id: str, idempotencyKey: str | None = None) -> JSONResponse:
    """``{depth, sendLoopRunning, instanceState, eligibleCount, items[]}`` of pending (queued/sending) items.

    ``age`` and ``nextAttemptIn`` are ms. The richer listing of every status is ``GET
    /instances/{id}/outbox``; ``?idempotencyKey=`` still looks one item up (native shape).
    """
    hub = _hub(request)
    rt = hub.get(instance_id)
    if idempotencyKey is not None:
        from wahub.api.native import item_json

        return _ok({"item": item_json(await hub.outbox.get_item_by_key(rt.id, idempotencyKey))})
    items, _total = await hub.outbox.list_items(rt.id, statuses=list(_PENDING), limit=500, offset=0)
    now = hub.clock.now_ms()
    ready = rt.state == State.READY
    rows = [{"id": i.queue_id, "type": "message" if i.kind.value == "text" else i.kind.value,
             "attemptCount": i.attempts, "age": now - i.created_at,
             "nextAttemptIn": max(0, i.next_attempt_at - now), "isEligible": ready and i.next_attempt_at <= now,
             "status": i.status.value, "chatId": i.chat_id, "idempotencyKey": i.idempotency_key}
            for i in items]
    depth = (await hub.outbox.queue_stats(rt.id)).depth  # all open items, even beyond the 500 listed
    return _ok({"depth": depth, "sendLoopRunning": hub.outbox.send_loop_running(rt.id),
                "instanceState": rt.state.value,
                "eligibleCount": sum(1 for r in rows if r["isEligible"]), "items": rows})
