"""WaAPI client actions that read or manage without sending: chats, contacts, messages, groups.

One route per :data:`wahub.domain.directory.ACTIONS` entry, ``POST /instances/{id}/client/action/<name>``
with the body fields the official SDK sends. Each goes to the engine directly (with a timeout),
never through the outbox. Answers: ``{"status": "success", "data": {"status": "success",
"instanceId", <key>: value}}`` — the key per action is :data:`ANSWER_KEYS`, values in the
whatsapp-web.js shapes WaAPI clients read (ids as ``{server, user, _serialized}``, times in s).
Refusals: 400 (field), 404 (instance or the thing asked about), 409 (not ready; WhatsApp refused),
501 (the instance's engine cannot do it, with the reason), 503 (the engine failed or timed out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from wahub.api.auth import require_key
from wahub.api.waapi import body_of, hub_of
from wahub.domain import directory

router = APIRouter(dependencies=[Depends(require_key)], tags=["WaAPI-compatible: reads, chats, groups"])

ANSWER_KEYS: dict[str, str] = {
    "get-chats": "chats", "get-chat-by-id": "chat", "fetch-messages": "messages", "get-message-by-id": "message",
    "get-message-info-by-id": "info", "search-messages": "messages", "get-reactions": "reactions",
    "get-pinned-messages": "messages", "get-contacts": "contacts", "get-contact-by-id": "contact",
    "get-contact-about-info": "about", "get-common-groups": "groups", "get-blocked-contacts": "contacts",
    "get-profile-pic-url": "profilePicUrl", "get-number-id": "numberId", "get-lid": "lids",
    "get-group-info": "groupInfo", "get-group-participants": "participants",
    "get-group-member-requests": "requests", "get-invite-info": "inviteInfo", "get-invite-code": "invite",
    "revoke-invite": "invite", "get-disappearing-messages": "duration", "get-formatted-number": "formattedNumber",
    "get-country-code": "countryCode", "get-disappearing-durations": "durations", "create-group": "groupInfo",
    "add-group-participant": "groupInfo", "remove-group-participant": "groupInfo",
    "promote-group-participant": "groupInfo", "demote-group-participant": "groupInfo",
    "update-group-info": "groupInfo", "update-group-settings": "groupInfo", "accept-group-member-requests": "results",
    "deny-group-member-requests": "results", "accept-invite": "groupId", "accept-group-invite": "groupId",
    "upsert-contact": "contact",
}
"""The key each action's result is answered under (the others answer ``result``)."""

ACK_NUMBERS = {None: 0, "server": 1, "delivered": 2, "read": 3, "played": 4}


def wid(jid: str | None) -> dict[str, str] | None:
    """A whatsapp-web.js id object of a canonical id."""
    if not jid:
        return None
    user, _, server = jid.partition("@")
    return {"server": server, "user": user, "_serialized": jid}


def seconds(ms: int | None) -> int | None:
    """Epoch ms → epoch s (whatsapp-web.js times)."""
    return None if ms is None else ms // 1000 if ms >= 0 else ms


def chat_out(c: dict[str, Any]) -> dict[str, Any]:
    """A chat as whatsapp-web.js's ``Chat``."""
    muted = c.get("mutedUntil")
    return {"id": wid(c["id"]), "name": c.get("name"), "isGroup": c.get("isGroup", False),
            "isReadOnly": c.get("readOnly", False), "unreadCount": c.get("unreadCount", 0),
            "timestamp": seconds(c.get("timestamp")), "archived": c.get("archived", False),
            "pinned": c.get("pinned", False), "isMuted": muted is not None,
            "muteExpiration": seconds(muted) if muted is not None else 0}


def message_out(m: dict[str, Any]) -> dict[str, Any]:
    """A message as whatsapp-web.js's ``Message``."""
    from_me = bool(m.get("fromMe"))
    remote = m["chatId"]
    return {"id": {"fromMe": from_me, "remote": remote, "id": m["id"], "_serialized": f"{str(from_me).lower()}_"
                   f"{remote}_{m['id']}"},
            "body": m.get("body") or "", "type": m.get("type", "chat"), "timestamp": seconds(m.get("timestamp")),
            "from": m.get("from") or None, "to": remote if from_me else None,
            "fromMe": from_me, "hasMedia": bool(m.get("hasMedia")), "ack": ACK_NUMBERS.get(m.get("ack"), 0)}


def contact_out(c: dict[str, Any]) -> dict[str, Any]:
    """A contact as whatsapp-web.js's ``Contact``."""
    name = c.get("name")
    return {"id": wid(c["id"]), "number": c.get("number"), "name": name, "pushname": c.get("pushName"),
            "shortName": name.split()[0] if name else None, "isBusiness": c.get("isBusiness", False),
            "isEnterprise": False, "isMe": c.get("isMe", False), "isUser": True, "isGroup": False,
            "isWAContact": c.get("isWAContact", True), "isMyContact": c.get("isMyContact", False),
            "isBlocked": c.get("isBlocked", False), "lid": c.get("lid")}


def group_out(g: dict[str, Any]) -> dict[str, Any]:
    """A group as whatsapp-web.js's ``GroupChat`` metadata."""
    return {"id": wid(g["id"]), "name": g.get("subject"), "subject": g.get("subject"),
            "description": g.get("description") or "", "owner": wid(g.get("owner")),
            "creation": seconds(g.get("creation")), "announce": bool(g.get("announce")),
            "restrict": bool(g.get("locked")), "participants": [participant_out(p) for p in g.get("participants", [])]}


def participant_out(p: dict[str, Any]) -> dict[str, Any]:
    """A group participant."""
    return {"id": wid(p["id"]), "isAdmin": bool(p.get("isAdmin")), "isSuperAdmin": bool(p.get("isSuperAdmin"))}


def present(name: str, value: Any) -> Any:
    """The engine's neutral answer in the shape WaAPI clients read."""
    if name in ("get-chats",):
        return [chat_out(c) for c in value]
    if name == "get-chat-by-id":
        return chat_out(value)
    if name in ("fetch-messages", "search-messages", "get-pinned-messages"):
        return [message_out(m) for m in value]
    if name == "get-message-by-id":
        return message_out(value)
    if name in ("get-contacts",):
        return [contact_out(c) for c in value]
    if name in ("get-contact-by-id", "upsert-contact"):
        return contact_out(value)
    if name == "get-contact-about-info":
        return value.get("about") if isinstance(value, dict) else value
    if name in ("get-common-groups", "get-blocked-contacts"):
        return [wid(j) for j in value]
    if name == "get-number-id":
        return wid(value.get("jid"))
    if name == "get-lid":
        return [{"id": wid(x["id"]), "lid": x.get("lid"), "pn": x.get("phone")} for x in value]
    if name == "get-group-participants":
        return [participant_out(p) for p in value]
    if name == "get-group-member-requests":
        return [{"id": wid(r["id"])} for r in value]
    if ANSWER_KEYS.get(name) == "groupInfo" or name == "get-invite-info":
        return group_out(value)
    if name in ("accept-invite", "accept-group-invite"):
        return value.get("groupId")
    if name == "get-disappearing-messages":
        return value.get("duration", 0)
    return value


def _route(name: str) -> Callable[[Request, str], Awaitable[JSONResponse]]:
    async def run(request: Request, instance_id: str) -> JSONResponse:
        hub = hub_of(request)
        result = await hub.directory.run(instance_id, name, await body_of(request))
        rt = hub.get(instance_id)
        key = ANSWER_KEYS.get(name, "result")
        return JSONResponse({"status": "success", "data": {"status": "success", "instanceId": rt.id,
                                                           key: present(name, result)}})

    run.__name__ = name.replace("-", "_")
    return run


for _action in directory.ACTIONS.values():
    router.add_api_route(f"/instances/{{instance_id}}/client/action/{_action.name}", _route(_action.name),
                         methods=["POST"], summary=_action.summary, name=_action.name.replace("-", "_"))


def body_schema(action: directory.Action) -> dict[str, Any]:
    """The JSON schema of an action's body (for the OpenAPI document), as strict as the checks it passes."""
    text = {"type": "string", "maxLength": 4096}
    word = {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": r"\S"}
    ids = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": directory.MAX_LIST}
    types: dict[str, dict[str, Any]] = {
        "int": {"type": "integer", "minimum": 0, "maximum": 10**9}, "bool": {"type": "boolean"},
        "people": ids, "ids": ids, "text": text, "code": word, "message": word}
    props: dict[str, Any] = {}
    for f in action.fields:
        schema = dict(types.get(f.type, {"type": "string", "minLength": 1}))
        if f.api in ("options", "inviteData"):
            schema = {}  # free-form, passed on as given
        elif not f.required:
            schema["type"] = [schema["type"], "null"]
        props[f.api] = schema
    example = {f.api: _EXAMPLES.get(f.type, "x") for f in action.fields if f.required}
    return {"type": "object", "properties": props, "required": [f.api for f in action.fields if f.required],
            "examples": [example]}


_EXAMPLES: dict[str, Any] = {"chat": "201000000001@c.us", "person": "201000000001@c.us",
                             "group": "120363000000000001@g.us", "people": ["201000000001@c.us"],
                             "ids": ["201000000001@c.us"], "number": "201000000001", "text": "Orders",
                             "code": "AbCdEfGhIjK", "message": "3EB0C767D26A1D2E8F4B", "int": 3600, "bool": True}
