"""Golden shapes of the existing (Node) wa-hub's answers and webhook events.

Derived by reading what the old router, instance manager and utils build (``createSuccessResponse``
spreads the payload and adds ``status: "success"``; ``createErrorResponse`` is ``{error, status:
<code>}``), written in a small shape language rather than copied:

* ``"str"``, ``"int"``, ``"num"``, ``"bool"``, ``"null"``, ``"list"``, ``"obj"``, ``"any"``, ``"iso"``
  (an ISO-8601 string as Node's ``toISOString``), unions with ``|`` (``"iso|null"``);
* ``"=value"``: exactly that JSON value (``"=success"``, ``"=403"`` is the number 403);
* a dict: an object holding at least these keys with these shapes (extra keys are additive and fine);
* a one-element list ``[shape]``: an array whose every element has ``shape``.

``ROUTES`` keys are ``"<case>"``; each names the old route and the situation it is checked in.
"""

from __future__ import annotations

from typing import Any

SUCCESS = "=success"
ERROR = {"error": "str", "status": "int"}


def error(code: int) -> dict[str, Any]:
    """The old error body with a given HTTP status."""
    return {"error": "str", "status": f"={code}"}


INSTANCE_BRIEF = {"id": "str", "name": "str", "status": "str"}
LISTED_INSTANCE = {"id": "str", "name": "str", "status": "str", "webhookUrl": "str|null", "webhookEvents": "list"}
SEND_ANSWER = {"status": SUCCESS, "instanceState": "str", "queueDepth": "int", "queueId": "str", "message": "str"}
DELETED = {"message": "str", "deleted": "bool", "purged": "bool", "purgedPaths": ["str"], "status": SUCCESS}

# case → (method, old route, expected HTTP status, body shape)
ROUTES: dict[str, tuple[str, str, int, Any]] = {
    "health": ("GET", "/health", 200, {
        "status": "=ok", "service": "str", "instanceCount": "int", "cpuPercent": "num", "loadavg": ["num"],
        "memoryUsedMB": "num", "memoryTotalMB": "num", "memoryPercent": "num", "processRssMB": "num"}),
    "list instances": ("GET", "/instances", 200, [LISTED_INSTANCE]),
    "create": ("POST", "/instances", 200, {"instance": INSTANCE_BRIEF, "status": SUCCESS}),
    "create existing (ready)": ("POST", "/instances", 200,
                                {"instance": INSTANCE_BRIEF, "message": "str", "status": SUCCESS}),
    "create existing (after logout)": ("POST", "/instances", 200, {"instance": INSTANCE_BRIEF, "status": SUCCESS}),
    "create without webhook.url": ("POST", "/instances", 400, error(400)),
    "update": ("PUT", "/instances/:id", 200, {"instance": INSTANCE_BRIEF, "status": SUCCESS}),
    "update unknown": ("PUT", "/instances/:id", 404, error(404)),
    "qr": ("GET", "/instances/:id/client/qr", 200, {"qrCode": {"data": {"qr_code": "str"}}, "status": SUCCESS}),
    "client status": ("GET", "/instances/:id/client/status", 200, {"clientStatus": {
        "instanceStatus": "str", "instanceId": "str", "data": "obj", "lastEvent": "str|null",
        "lastDisconnectReason": "str|null", "restartAttempts": "int", "readyWatchdogMs": "int|null",
        "readyWatchdogStartAt": "any", "authenticatedAt": "any", "readySource": "str|null", "readyAt": "any",
        "authenticatedToReadyMs": "int|null", "readyPollAttempts": "int", "lastReadyPollError": "str|null"},
        "status": SUCCESS}),
    "client info-raw": ("GET", "/instances/:id/client/info-raw", 200, {"status": SUCCESS}),
    "me (ready)": ("GET", "/instances/:id/client/me", 200, {"me": {"data": {
        "displayName": "str|null", "contactId": "str", "formattedNumber": "str", "profilePicUrl": "str|null"}},
        "status": SUCCESS}),
    "me (not ready)": ("GET", "/instances/:id/client/me", 400, error(400)),
    "send-message": ("POST", "/instances/:id/client/action/send-message", 202, SEND_ANSWER),
    "send-message unknown instance": ("POST", "/instances/:id/client/action/send-message", 404, error(404)),
    "create-poll": ("POST", "/instances/:id/client/action/create-poll", 202, SEND_ANSWER),
    "queue": ("GET", "/instances/:id/queue", 200, {
        "depth": "int", "sendLoopRunning": "bool", "instanceState": "str", "eligibleCount": "int",
        "items": [{"id": "str", "type": "str", "attemptCount": "int", "age": "int", "nextAttemptIn": "int",
                   "isEligible": "bool"}], "status": SUCCESS}),
    "clear queue": ("DELETE", "/instances/:id/queue", 200, {
        "message": "str", "cleared": "int", "queueDepth": "int", "droppedFromOutbound": "int", "status": SUCCESS}),
    "queue trigger": ("POST", "/instances/:id/queue/trigger", 200, {"success": "bool", "status": SUCCESS}),
    "diagnostics": ("GET", "/instances/:id/diagnostics", 200, {"process": {
        "memoryUsage": {"rss": "int"}, "uptimeSeconds": "int", "eventLoopLagMs": "num"}, "status": SUCCESS}),
    "status": ("GET", "/instances/:id/status", 200, {
        "instance": {"id": "str", "name": "str", "state": "str", "status": "str", "createdAt": "iso|null"},
        "client": {"phoneNumber": "str|null", "displayName": "str|null", "lastReadyAt": "iso|null",
                   "lastDisconnectAt": "iso|null", "lastDisconnectReason": "str|null",
                   "lastAuthFailureAt": "iso|null", "lastEvent": "str|null"},
        "queue": {"depth": "int", "sendLoopRunning": "bool", "maxSize": "int"},
        "reconnection": {"restartAttempts": "int", "lastRestartAt": "iso|null", "restartHistoryLength": "int",
                         "rateLimitExceeded": "bool"},
        "rateLimits": {"sendsPerMinute": {"current": "int", "max": "int", "limited": "bool"},
                       "sendsPerHour": {"current": "int", "max": "int", "limited": "bool"}},
        "counters": {"sent24h": "int", "sent1h": "int", "failures1h": "int", "disconnects1h": "int",
                     "newChats24h": "int"},
        "webhook": {"url": "str|null", "events": "list"}, "status": SUCCESS}),
    "restart": ("POST", "/instances/:id/restart", 200, {
        "message": "str", "instanceId": "str", "currentState": "str", "status": SUCCESS}),
    "restart bad type": ("POST", "/instances/:id/restart", 400, error(400)),
    "retry": ("POST", "/instances/:id/retry", 200, {"message": "str", "instanceId": "str", "status": SUCCESS}),
    "system status": ("GET", "/system/status", 200, {
        "mode": "str", "queuedOutboundCount": "int", "queuedOutboundByInstance": "obj", "inboundBufferCount": "int",
        "instances": [{"id": "str", "state": "str", "lastError": "str|null", "lastStateChangeAt": "iso|null",
                       "needsQrSince": "iso|null", "lastQrAt": "iso|null", "qrRecoveryAttempts": "int",
                       "restoreAttempts": "int"}], "perInstanceStates": "list", "status": SUCCESS}),
    "logout": ("POST", "/instances/:id/client/action/logout", 200, DELETED),
    "delete": ("DELETE", "/instances/:id", 200, DELETED),
    "delete unknown": ("DELETE", "/instances/:id", 200, {**DELETED, "deleted": "=False"}),
    "no key": ("GET", "/instances", 401, error(401)),
    "wrong key": ("GET", "/instances", 403, {"error": "=Invalid API key", "status": "=403"}),
    "unknown instance": ("GET", "/instances/:id/status", 404, error(404)),
    "unknown route": ("GET", "/no-such-route", 404, error(404)),
}

# Old routes deliberately not served; each must be named in docs/compatibility.md.
OUT_OF_SCOPE = ("GET /internal/test-sentry", "POST /instances/:id/view-session", "POST /view-session/revoke",
                "GET /view-session/screenshot", "POST /view-session/click", "POST /view-session/scroll",
                "GET /__debug/system", "GET /__debug/env", "POST /__debug/instances/:id/retry",
                "POST /system/force-normal", "POST /onboard", "GET /status/:id", "POST /admin/launchpad/warm",
                "POST /admin/launchpad/stop")

# Webhook bodies: {event, instanceId, data}; data shape per event.
EVENT_ENVELOPE = {"event": "str", "instanceId": "str", "data": "obj"}
OLD_WA_STATES = ("CONFLICT", "CONNECTED", "DEPRECATED_VERSION", "OPENING", "PAIRING", "PROXYBLOCK",
                 "SMB_TOS_BLOCK", "TIMEOUT", "TOS_BLOCK", "UNLAUNCHED", "UNPAIRED", "UNPAIRED_IDLE")
EVENTS: dict[str, Any] = {
    "qr": {"qr": "str"},
    "authenticated": {},
    "ready": {"status": "=ready"},
    "auth_failure": {"message": "str"},
    "disconnected": {"reason": "str"},
    "restricted": {"reason": "str", "restrictedUntil": "iso|null", "message": "str"},
    "change_state": {"status": "|".join("=" + s for s in OLD_WA_STATES)},
    "message": {"message": {"from": "str", "body": "str", "text": "str", "type": "str", "timestamp": "int",
                            "id": "str"}},
    "vote_update": {"vote": {"voter": "str", "selectedOptions": ["str"], "timestamp": "int",
                             "pollMessageId": "str"}},
    "ready_timeout": {"elapsedMs": "int", "authenticatedAt": "any", "state": "str"},
}
