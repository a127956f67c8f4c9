"""The OpenAPI document: what every route answers, with which codes, and how to authenticate.

FastAPI derives paths, parameters and request bodies from the routes; this module adds what it
cannot know because the routes answer ``JSONResponse`` themselves: the success body of each route
(:mod:`wahub.api.answers`), the real error body (``{"error", "status"}``) under every code a route
can answer, and the two ways to present the API key. Request validation answers 400 (never 422), so
FastAPI's default 422 entry is dropped. ``tests/integration/test_openapi_schemathesis.py`` holds the
document to the server's real answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from wahub.api import answers as a
from wahub.api import readactions
from wahub.domain import directory

BEARER = "bearer"
API_KEY_HEADER = "apiKey"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API_KEY>`"},
    API_KEY_HEADER: {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: <API_KEY>`"},
}
WHY: dict[int, str] = {
    400: "Bad input: malformed JSON, a missing or invalid field (the message names it), or a state that "
         "refuses the action",
    401: "No API key", 403: "Wrong API key", 404: "No such instance (or item, poll, event)",
    409: "Conflicts with stored state: idempotency key reused for another payload, a final item without "
         "retry=true, a name taken by another instance, an instance in a state that cannot do this",
    413: "Request body larger than MAX_BODY_BYTES",
    422: "Well-formed but cannot be done as asked (an edit after 15 minutes, a forward of a message this hub "
         "did not send, a download above MEDIA_DOWNLOAD_MAX_BYTES)",
    429: "Too many failed API keys from this address, or the instance's queue is full (see Retry-After)",
    501: "The instance's engine cannot do this action (the message says why)",
    503: "The store is unreachable or wa-hub is shutting down (see Retry-After)",
}
AUTH = (401, 403, 429, 503)
ITEM = (400, 404, 409) + AUTH


@dataclass(frozen=True)
class Doc:
    """What one operation answers: its success code(s) and model(s), and its error codes."""

    ok: dict[int, type[BaseModel] | tuple[type[BaseModel], ...]]
    errors: tuple[int, ...] = AUTH
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(model: type[BaseModel] | tuple[type[BaseModel], ...], *errors: int, code: int = 200) -> Doc:
    return Doc({code: model}, tuple(sorted(set(errors) | set(AUTH))))


I = "/instances/{instance_id}"  # noqa: E741 - the prefix of nearly every path
ROUTES: dict[tuple[str, str], Doc] = {
    ("get", "/health"): Doc({200: a.Health}, ()),
    ("get", "/ready"): Doc({200: a.Ready, 503: a.Ready}, ()),
    ("get", "/metrics"): Doc({}, (401, 403, 429, 503)),
    ("get", "/instances"): _ok(a.InstanceBrief),
    ("post", "/instances"): _ok(a.InstanceAnswer, 400, 409, 413),
    ("get", I): _ok(a.InstanceAnswer, 404),
    ("put", I): _ok(a.InstanceAnswer, 400, 404, 409, 413),
    ("delete", I): _ok(a.Deleted, 400, 409),
    ("get", I + "/client/qr"): _ok(a.QrCode, 404, 409),
    ("get", I + "/client/status"): _ok(a.ClientStatus, 404),
    ("get", I + "/client/me"): _ok(a.ClientMe, 400, 404),
    ("post", I + "/client/action/send-message"): Doc({202: a.Enqueued, 200: a.Enqueued}, ITEM + (413,)),
    ("post", I + "/client/action/create-poll"): Doc({202: a.Enqueued, 200: a.Enqueued}, ITEM + (413,)),
    ("post", I + "/client/action/logout"): _ok(a.Deleted, 400, 404, 409),
    ("post", I + "/client/action/reboot"): _ok(a.DataAnswer, 400, 404, 409),
    ("post", I + "/client/action/request-pairing-code"): _ok(a.DataAnswer, 400, 404, 409, 413),
    ("post", I + "/client/action/is-registered-user"): _ok(a.DataAnswer, 400, 404, 409, 413),
    ("post", I + "/client/action/get-poll-votes"): _ok(a.DataAnswer, 400, 404, 413),
    **{("post", I + "/client/action/" + name): Doc({202: a.Enqueued, 200: a.Enqueued}, ITEM + (413, 422, 501))
       for name in ("send-media", "send-location", "send-vcard", "react-to-message", "edit-message",
                    "delete-message-by-id", "forward-message")},
    **{("post", I + "/client/action/" + name): _ok(a.ActionDone, 400, 404, 409, 413, 501)
       for name in ("send-seen", "send-typing", "send-stop-typing", "send-presence-available",
                    "send-presence-unavailable")},
    ("post", I + "/client/action/download-media"): _ok(a.MediaDownloaded, 400, 404, 409, 413, 422, 501),
    ("get", I + "/status"): _ok(a.StatusDocument, 404),
    ("post", I + "/restart"): _ok(a.Restarted, 400, 404, 409, 413),
    ("get", I + "/outbox"): _ok((a.OutboxPage, a.ItemAnswer), 400, 404),
    ("delete", I + "/queue"): _ok(a.QueueCleared, 404),
    ("get", I + "/messages/{queue_id}"): _ok(a.ItemAnswer, 404),
    ("post", I + "/messages/{queue_id}/{action}"): _ok(a.ItemAnswer, 400, 404, 409),
    ("get", I + "/polls/{message_id}/votes"): _ok(a.PollVotesAnswer, 404),
    ("get", I + "/webhooks/deliveries"): _ok(a.EventList, 400, 404),
    ("get", I + "/webhooks/dead-letters"): _ok(a.EventList, 400, 404),
    ("post", I + "/webhooks/replay"): _ok(a.Replayed, 400, 404, 413),
    ("post", I + "/queue/trigger"): _ok(a.Triggered, 404),
    ("post", I + "/retry"): _ok(a.RetryStarted, 400, 404, 409),
    ("get", I + "/diagnostics"): _ok(a.Diagnostics, 404),
    ("get", "/system/status"): _ok(a.SystemStatus),
    ("get", I + "/client/info-raw"): _ok(a.InfoRaw, 404),
    ("get", I + "/queue"): _ok((a.PendingQueue, a.ItemAnswer), 400, 404),
}
ROUTES.update({("post", I + "/client/action/" + name): Doc({200: a.ActionAnswer}, (400, 404, 409, 413, 501) + AUTH,
                                                         {"body": readactions.body_schema(action)})
               for name, action in directory.ACTIONS.items()})
_CHAT = {"type": "string", "minLength": 1, "examples": ["201000000001@c.us"]}
#: The sandbox routes read their bodies themselves (free-form fault parameters); documented here.
SANDBOX_BODIES: dict[str, dict[str, Any]] = {
    "/scan": {"type": "object", "properties": {"phone": {"type": ["string", "null"], "examples": ["201000000001"]},
                                               "pushName": {"type": ["string", "null"]}}, "examples": [{}]},
    "/messages": {"type": "object", "required": ["from"], "properties": {
        "from": _CHAT, "text": {"type": ["string", "null"], "description": "required for type chat"},
        "type": {"type": "string", "enum": ["chat", "image", "video", "audio", "ptt", "document", "sticker",
                                            "vcard", "multi_vcard", "location"]},
        "messageId": {"type": ["string", "null"]}, "fromAlt": {"type": ["string", "null"]},
        "chatId": {"type": ["string", "null"]}, "caption": {"type": ["string", "null"]},
        "mimetype": {"type": ["string", "null"]}, "filename": {"type": ["string", "null"]},
        "hasMedia": {"type": ["boolean", "null"]},
        "location": {"type": ["object", "null"], "required": ["latitude", "longitude"], "properties": {
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            "name": {"type": ["string", "null"]}, "address": {"type": ["string", "null"]}}},
        "vCards": {"type": ["array", "null"], "items": {"type": "string"}},
        "quotedMsgId": {"type": ["string", "null"]}, "quotedMsgBody": {"type": ["string", "null"]},
        "quotedParticipant": {"type": ["string", "null"]}},
        "examples": [{"from": "201000000001@c.us", "text": "Hello"}]},
    "/reactions": {"type": "object", "required": ["from", "messageId", "reaction"], "properties": {
        "from": _CHAT, "messageId": {"type": "string", "minLength": 1},
        "reaction": {"type": "string", "maxLength": 32, "description": '"" removes the reaction'},
        "chatId": {"type": ["string", "null"]}},
        "examples": [{"from": "201000000001@c.us", "messageId": "3EB0C767D26A1D2E8F4B", "reaction": "👍"}]},
    "/edits": {"type": "object", "required": ["from", "messageId", "text"], "properties": {
        "from": _CHAT, "messageId": {"type": "string", "minLength": 1}, "text": {"type": "string"},
        "chatId": {"type": ["string", "null"]}},
        "examples": [{"from": "201000000001@c.us", "messageId": "3EB0C767D26A1D2E8F4B", "text": "CANCEL my order"}]},
    "/revokes": {"type": "object", "required": ["from", "messageId"], "properties": {
        "from": _CHAT, "messageId": {"type": "string", "minLength": 1}, "chatId": {"type": ["string", "null"]}},
        "examples": [{"from": "201000000001@c.us", "messageId": "3EB0C767D26A1D2E8F4B"}]},
    "/votes": {"type": "object", "required": ["pollMessageId", "voter", "selectedOptions"], "properties": {
        "pollMessageId": {"type": "string", "minLength": 1}, "voter": _CHAT,
        "selectedOptions": {"type": "array", "items": {"type": "string"}},
        "timestamp": {"type": ["integer", "null"], "description": "epoch ms"},
        "voterAlt": {"type": ["string", "null"]}, "asHashes": {"type": "boolean"},
        "decryptFailed": {"type": "boolean", "description": "a vote whose choice cannot be read"}},
        "examples": [{"pollMessageId": "3EB0C767D26A1D2E8F4B", "voter": "201000000001@c.us",
                      "selectedOptions": ["Confirm"]}]},
    "/acks": {"type": "object", "required": ["messageIds", "ack"], "properties": {
        "messageIds": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "ack": {"type": "string", "enum": ["delivered", "read", "played"]}},
        "examples": [{"messageIds": ["3EB0C767D26A1D2E8F4B"], "ack": "read"}]},
    "/faults": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": [
        "disconnect", "auth_failure", "temporary_ban", "send_error", "slow_send", "drop_after_ready",
        "never_ready", "unregistered", "resolves_to", "clear"]}},
        "description": "kind plus its parameters (docs/sandbox)",
        "examples": [{"kind": "send_error", "mode": "transient", "count": 1}]},
}
ROUTES.update({("post", "/sandbox" + I + s): Doc({200: a.SandboxAnswer}, (400, 404, 409, 413) + AUTH,
                                                 {"body": body}) for s, body in SANDBOX_BODIES.items()})
ROUTES[("get", "/sandbox" + I + "/sent")] = _ok(a.SandboxAnswer, 404)
ROUTES[("get", "/instances")] = Doc({200: a.InstanceBrief}, AUTH, {"array": True})
ROUTES[("get", "/nodes")] = _ok(a.NodesAnswer, 400)
# Meta's calls to a cloud instance: no API key, signed with the app secret (403 when the signature
# or the verify token is wrong); the challenge answer is plain text.
ROUTES[("get", "/cloud/{instance_id}/webhook")] = Doc({}, (403, 404))
ROUTES[("post", "/cloud/{instance_id}/webhook")] = Doc({200: a.CloudReceived}, (400, 403, 404, 413))
PUBLIC = {("get", "/health"), ("get", "/ready"), ("get", "/cloud/{instance_id}/webhook"),
          ("post", "/cloud/{instance_id}/webhook")}


#: Path parameters: what a user would send (and what the routes accept).
PARAMETERS: dict[str, dict[str, Any]] = {
    "instance_id": {"examples": ["WASP-shop_myshopify_com"],
                    "description": "the instance id: its name with every character but A-Z a-z 0-9 _ - as _"},
    "action": {"enum": ["cancel", "retry", "resend", "close"]},
}
ENVELOPED: dict[tuple[str, str], type[BaseModel]] = {("post", I + "/client/action/send-message"): a.EnqueuedEnvelope,
             ("post", I + "/client/action/create-poll"): a.EnqueuedEnvelope,
             **{("post", I + "/client/action/" + name): a.EnqueuedEnvelope
                for name in ("send-media", "send-location", "send-vcard", "react-to-message", "edit-message",
                             "delete-message-by-id", "forward-message")},
             ("post", I + "/client/action/logout"): a.LoggedOutEnvelope}


def document(app: FastAPI, *, metrics_need_key: bool, waapi_envelope: bool) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (cached on it): answers, error codes and security added.

    The answers are this server's: with ``WAAPI_ENVELOPE=true`` the sends and logout are documented
    in the WaAPI shape, else (the default) in the existing wa-hub's; both shapes are named in the text.
    """
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                       webhooks=app.webhooks.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    models = {m for doc in ROUTES.values() for ms in doc.ok.values() for m in (ms if isinstance(ms, tuple) else (ms,))}
    models |= set(ENVELOPED.values())
    refs, defs = models_json_schema([(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)]
                                    + [(a.ErrorBody, "serialization")],
                                    ref_template="#/components/schemas/{model}")
    schemas.update(defs.get("$defs", {}))
    spec["components"]["securitySchemes"] = SECURITY_SCHEMES
    spec["security"] = [{BEARER: []}, {API_KEY_HEADER: []}]
    error_ref = refs[(a.ErrorBody, "serialization")]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            doc = ROUTES.get((method, path))
            if doc is None:
                continue
            for param in op.get("parameters", []):
                param["schema"].update(PARAMETERS.get(param["name"], {}))
            if waapi_envelope and (method, path) in ENVELOPED:
                doc = Doc({code: ENVELOPED[(method, path)] for code in doc.ok}, doc.errors, doc.extra)
            op["responses"] = _responses(doc, refs, error_ref, method, path)
            if "body" in doc.extra:
                op["requestBody"] = {"required": False, "content": {"application/json": {"schema": doc.extra["body"]}}}
            if (method, path) in PUBLIC or (path == "/metrics" and not metrics_need_key):
                op["security"] = []
    app.openapi_schema = spec
    return spec


def _responses(doc: Doc, refs: dict[Any, Any], error_ref: dict[str, Any], method: str,
               path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if path == "/metrics":
        out["200"] = {"description": "Prometheus text exposition",
                      "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}
    if (method, path) == ("get", "/cloud/{instance_id}/webhook"):
        out["200"] = {"description": "the hub.challenge, echoed (Meta's subscription handshake)",
                      "content": {"text/plain": {"schema": {"type": "string"}}}}
    for code, models in doc.ok.items():
        group = models if isinstance(models, tuple) else (models,)
        schemas = [refs[(m, "serialization")] for m in group]
        schema: dict[str, Any] = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if doc.extra.get("array"):
            schema = {"type": "array", "items": schema}
        out[str(code)] = {"description": (group[0].__doc__ or "").strip().splitlines()[0],
                          "content": {"application/json": {"schema": schema}}}
    for code in doc.errors:
        if str(code) not in out:
            out[str(code)] = {"description": WHY[code], "content": {"application/json": {"schema": error_ref}}}
            if code in (429, 503):
                out[str(code)]["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                                             "schema": {"type": "integer", "minimum": 1}}}
    return out
